"""The feedback store on SQLite and PostgreSQL: card memory, feedback, suppression, retention,
migrations and the hook path's bounded waits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from msgspec.structs import replace  # cards are msgspec Structs

from cds.db import migrations
from cds.db.migrations import SchemaError
from cds.feedback.records import CardRecord, FeedbackRequest
from cds.feedback.store import FeedbackStore, open_store, to_ms
from cds.feedback.validate import FeedbackEntry, FeedbackError
from cds.hooks.cards import OVERRIDE_SYSTEM, Card, override_reason
from cds.runtime.privacy import patient_key
from cds.runtime.settings import Settings, SettingsError

from .helpers import PATIENT_ID, SERVICE, T0, a_card, accepted, overridden, send

pytestmark = pytest.mark.anyio


async def test_cards_are_remembered(store: FeedbackStore) -> None:
    cards = [a_card(), a_card(kind="renal:metformin")]
    shown = await store.filter_and_record(SERVICE, "pk1", cards, T0)
    assert shown == cards
    assert await store.flush()
    assert await store.counts() == (2, 0)


async def test_feedback_for_a_card_issued_a_moment_ago(store: FeedbackStore) -> None:
    card = a_card()
    await store.filter_and_record(SERVICE, "pk1", [card], T0)
    # no flush: the feedback path must wait for the pending card write itself
    assert await send(store, accepted(card)) == 1
    assert await store.counts() == (1, 1)


async def test_same_feedback_twice_is_stored_once(store: FeedbackStore) -> None:
    card = a_card()
    await store.filter_and_record(SERVICE, "pk1", [card], T0)
    assert await send(store, accepted(card), overridden(card)) == 2
    assert await send(store, accepted(card), overridden(card)) == 0
    assert await send(store, accepted(card, when="2026-03-01T12:06:00Z")) == 1  # a new event
    assert await store.counts() == (1, 3)


async def test_rejected_request_stores_nothing(store: FeedbackStore) -> None:
    card = a_card()
    await store.filter_and_record(SERVICE, "pk1", [card], T0)
    unknown = a_card()
    with pytest.raises(
        FeedbackError, match=r"feedback\[1\].card: .* not a card issued by the medication-risk"
    ):
        await send(store, accepted(card), overridden(unknown))
    foreign = a_card()
    foreign_suggestion = dict(accepted(card), acceptedSuggestions=[{"id": foreign.suggestions[0].uuid}])
    with pytest.raises(FeedbackError, match=r"feedback\[1\].acceptedSuggestions\[0\].id"):
        await send(store, overridden(card), foreign_suggestion)
    assert await store.counts() == (1, 0)


async def test_card_of_another_service_is_unknown(store: FeedbackStore) -> None:
    card = a_card()
    await store.filter_and_record("care-gaps", "pk1", [card], T0)
    with pytest.raises(FeedbackError) as err:
        await send(store, accepted(card))
    assert err.value.status == 400
    assert await send(store, accepted(card), service="care-gaps") == 1


async def test_repeat_alerts_are_suppressed(store: FeedbackStore) -> None:
    first = await store.filter_and_record(SERVICE, "pk1", [a_card()], T0)
    assert len(first) == 1
    # the first card may still be in the write queue: suppression must see it anyway
    again = await store.filter_and_record(SERVICE, "pk1", [a_card()], T0 + timedelta(minutes=5))
    assert again == []
    other_patient = await store.filter_and_record(SERVICE, "pk2", [a_card()], T0 + timedelta(minutes=5))
    assert len(other_patient) == 1
    worse = await store.filter_and_record(
        SERVICE, "pk1", [a_card(indicator="critical")], T0 + timedelta(minutes=6)
    )
    assert len(worse) == 1
    await store.flush()
    later = await store.filter_and_record(SERVICE, "pk1", [a_card()], T0 + timedelta(minutes=70))
    assert len(later) == 1
    await store.flush()
    assert await store.counts() == (4, 0)  # suppressed cards are not remembered


async def test_overridden_cards_stay_quiet_longer(store: FeedbackStore) -> None:
    quiet, loud = a_card(), a_card()
    await store.filter_and_record(SERVICE, "pk-over", [quiet], T0)
    await store.filter_and_record(SERVICE, "pk-acc", [loud], T0)
    await send(store, overridden(quiet), accepted(loud))
    at = T0 + timedelta(hours=3)
    assert await store.filter_and_record(SERVICE, "pk-over", [a_card()], at) == []
    assert len(await store.filter_and_record(SERVICE, "pk-acc", [a_card()], at)) == 1
    assert len(await store.filter_and_record(SERVICE, "pk-over", [a_card()], T0 + timedelta(hours=25))) == 1


async def test_services_without_suppression_show_every_card(store: FeedbackStore) -> None:
    for minute in range(3):
        shown = await store.filter_and_record("care-gaps", "pk1", [a_card()], T0 + timedelta(minutes=minute))
        assert len(shown) == 1


async def test_slow_database_does_not_hold_the_hook(
    store: FeedbackStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def stalled(*args: object) -> list:
        await asyncio.sleep(60)  # far longer than the read timeout plus any scheduling delay
        return []

    monkeypatch.setattr(store.backend, "recent_cards", stalled)
    cards = [a_card()]
    started = time.perf_counter()
    with caplog.at_level(logging.ERROR, logger="cds.feedback"):
        shown = await store.filter_and_record(SERVICE, "pk1", cards, T0)
    elapsed = time.perf_counter() - started
    assert shown == cards
    assert elapsed < store.settings.db_write_timeout_seconds + 5  # slack for a loaded CI runner
    assert "suppression skipped" in caplog.text


async def test_database_error_degrades_to_unchanged_cards(
    store: FeedbackStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object) -> list:
        raise ConnectionError("database is down")

    monkeypatch.setattr(store.backend, "recent_cards", broken)
    cards = [a_card()]
    with caplog.at_level(logging.ERROR, logger="cds.feedback"):
        assert await store.filter_and_record(SERVICE, "pk1", cards, T0) == cards
    assert "database is down" in caplog.text


async def test_card_writes_survive_a_database_outage(
    store: FeedbackStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store.backend.write_cards
    failures = 2

    released = asyncio.Event()

    async def flaky(rows: list) -> None:
        nonlocal failures
        await released.wait()  # the write cannot finish until the hook has returned
        if failures:
            failures -= 1
            raise ConnectionError("database is down")
        await real(rows)

    monkeypatch.setattr(store.backend, "write_cards", flaky)
    # the hook never waits for the write: it returns while every write is still held back
    await asyncio.wait_for(store.filter_and_record("care-gaps", "pk1", [a_card(), a_card()], T0), 30)
    released.set()
    assert await store.flush(timeout=10)
    assert failures == 0
    assert await store.counts() == (2, 0)


async def test_feedback_during_a_database_outage_is_a_503(
    store: FeedbackStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = a_card()
    await store.filter_and_record(SERVICE, "pk1", [card], T0)
    await store.flush()

    async def broken(*args: object) -> int:
        raise ConnectionError("database is down")

    monkeypatch.setattr(store.backend, "store_feedback", broken)
    with pytest.raises(FeedbackError) as err:
        await send(store, accepted(card))
    assert err.value.status == 503


async def test_retention_deletes_cards_and_their_feedback(make_settings: Callable[..., Settings]) -> None:
    store = await open_store(make_settings(retention_days=365), background=False)  # no background purge
    try:
        old, recent = a_card(), a_card()
        await store.backend.write_cards(
            [card_record(old, T0 - timedelta(days=400)), card_record(recent, T0 - timedelta(days=300))]
        )
        await send(store, accepted(old), accepted(recent), service="care-gaps")
        assert await store.purge_expired(now=T0) == 1  # retention_days = 365
        assert await store.counts() == (1, 1)
        with pytest.raises(FeedbackError):
            await send(store, overridden(old), service="care-gaps")
    finally:
        await store.close()


def card_record(card: Card, when: datetime) -> CardRecord:
    return CardRecord(card.uuid, "care-gaps", card.kind, card.indicator, to_ms(when), "pk1",
                      suggestions=card.suggestion_uuids())  # fmt: skip


async def test_close_writes_pending_cards(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    store = await open_store(settings)
    await store.filter_and_record("care-gaps", "pk1", [a_card() for _ in range(50)], T0)
    await store.close()
    again = await open_store(settings, background=False)
    try:
        assert await again.counts() == (50, 0)
    finally:
        await again.close()


async def test_migrations_run_once_and_refuse_a_newer_schema(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    for _ in range(2):
        store = await open_store(settings, background=False)
        assert await store.backend.migrate(0) == migrations.LATEST
        await store.close()
    store = await open_store(settings, background=False)
    newer = migrations.Migration(migrations.LATEST + 1, "from the future", ("SELECT 1",), ("SELECT 1",))
    try:
        original = migrations.MIGRATIONS
        migrations.MIGRATIONS = (*original, newer)
        migrations.LATEST += 1
        await store.backend.migrate(0)
    finally:
        migrations.MIGRATIONS = original
        migrations.LATEST -= 1
    await store.close()
    with pytest.raises(SchemaError, match="newer"):
        await open_store(settings, background=False)


async def test_invalid_settings_stop_start_up(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(SettingsError, match=r"services\.care-gaps: suppress_minutes"):
        await open_store(make_settings(services={"care-gaps": {"suppress_minutes": "soon"}}))
    with pytest.raises(SettingsError, match="retention_days"):
        await open_store(make_settings(retention_days=0))


async def test_nothing_identifying_is_stored(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings()
    store = await open_store(settings)
    card = a_card()
    key = patient_key(settings, PATIENT_ID)
    await store.filter_and_record(SERVICE, key, [card], T0)
    await send(store, overridden(card))
    await store.close()
    assert PATIENT_ID not in key and len(key) == 64
    if settings.database_url and settings.database_url.startswith("sqlite"):
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("feedback.sqlite3*"))
        assert key.encode() in raw
        for secret in (PATIENT_ID, "Jane Doe", "123456", "INR 2.1"):
            assert secret.encode() not in raw
    else:
        import psycopg

        with psycopg.connect(settings.database_url) as conn:
            dump = repr(conn.execute("SELECT * FROM cds_card").fetchall())
            dump += repr(conn.execute("SELECT * FROM cds_feedback").fetchall())
        assert key in dump
        for secret in (PATIENT_ID, "Jane Doe", "123456", "INR 2.1"):
            assert secret not in dump


async def test_concurrent_requests_commit_together_but_fail_alone(store: FeedbackStore) -> None:
    cards = [a_card() for _ in range(20)]
    await store.filter_and_record(SERVICE, "pk1", cards, T0)
    await store.flush()
    good = [send(store, accepted(c)) for c in cards]
    bad = [send(store, accepted(c), overridden(a_card())) for c in cards[:5]]  # second entry: unknown card
    results = await asyncio.gather(*good, *bad, return_exceptions=True)
    assert results[:20] == [1] * 20
    assert all(isinstance(r, FeedbackError) and r.status == 400 for r in results[20:])
    assert await store.counts() == (20, 20)


async def test_a_value_the_database_refuses_fails_only_its_request(store: FeedbackStore) -> None:
    """One multi-row INSERT stores a batch; if the database refuses a value, each request is tried
    alone, so only the one carrying it is refused (PostgreSQL text cannot hold NUL; SQLite can)."""
    cards = [a_card() for _ in range(3)]
    # only codes a card offered are stored: this card offers one PostgreSQL cannot store
    cards[1] = replace(cards[1], override_reasons=(override_reason("nul\x00byte", "unstorable"),))
    await store.filter_and_record(SERVICE, "pk1", cards, T0)
    await store.flush()

    def request(card: Card, code: str) -> FeedbackRequest:
        entry = FeedbackEntry(
            0, card.uuid, "overridden", to_ms(T0), reason_system=OVERRIDE_SYSTEM, reason_code=code
        )
        return FeedbackRequest(SERVICE, (entry,), to_ms(T0))

    batch = [request(cards[0], "benefit"), request(cards[1], "nul\x00byte"), request(cards[2], "benefit")]
    results = await store.backend.store_feedback(batch)
    assert results[0] == 1 and results[2] == 1
    if store.backend.dialect == "postgresql":
        assert isinstance(results[1], FeedbackError) and "cannot be stored" in results[1].message
        assert await store.counts() == (3, 2)
    else:
        assert results[1] == 1
        assert await store.counts() == (3, 3)
    assert await store.backend.store_feedback(batch[:1]) == [0]  # idempotent, by the same path
