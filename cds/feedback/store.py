"""The feedback store: remembers issued cards, stores feedback, suppresses repeat alerts.

`open_store(settings)` picks the backend from `settings.database_url` (`sqlite:///PATH`, WAL, the
default under the data directory; or `postgresql://...` for several instances), runs the schema
migrations and starts three background tasks: the card writer, the feedback writer (group
commit) and maintenance (the retention purge; first the migrations when the database was down).

The hook path never waits on the database for more than `settings.db_write_timeout_seconds`:
issued cards go into a bounded in-memory queue that a background task writes in batches (a full
queue drops the record and logs an error rather than slow a hook), and the suppression read is
abandoned after that time (the cards are then shown unchanged, and an error is logged).
Feedback, by contrast, is answered 200 only once its transaction has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cds.db.urls import database_url, is_postgres, sqlite_path
from cds.feedback.backend import Backend, SummaryRows
from cds.feedback.records import CardRecord, FeedbackRequest, RecentCard
from cds.feedback.retention import cancelled, retention_loop
from cds.feedback.suppression import SuppressionPolicy
from cds.feedback.validate import FeedbackEntry, FeedbackError
from cds.hooks.cards import Card
from cds.runtime.settings import Settings, SettingsError

log = logging.getLogger("cds.feedback")

QUEUE_SIZE = 20_000  # issued cards waiting to be written; beyond this they are dropped (logged)
BATCH_SIZE = 500
# The card writer waits this long for more cards before a transaction (fewer commits and fsyncs;
# flush() cuts it short when feedback needs a card written).
CARD_LINGER_SECONDS = 0.05
# Feedback requests waiting for the group commit; beyond this the service answers 503.
FEEDBACK_QUEUE_SIZE = 5_000
FEEDBACK_BATCH_SIZE = 200
FLUSH_TIMEOUT_SECONDS = 5.0  # how long feedback waits for its card to be written
CLOSE_TIMEOUT_SECONDS = 10.0  # how long shutdown waits for pending card writes
# Replay rows live minutes (token lifetime + clock skew), so the purge runs every few minutes.
RETENTION_INTERVAL_SECONDS = 300.0
MAX_READS_IN_FLIGHT = 16  # suppression reads still running; beyond this, skip suppression


def to_ms(when: datetime) -> int:
    """Epoch milliseconds of an aware datetime (naive means UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


class _Throttled:
    """Logs an error at most once per interval, with how many were suppressed meanwhile."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.last = 0.0
        self.skipped = 0

    def error(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            self.skipped += 1
            return
        extra = f" ({self.skipped} similar errors not logged)" if self.skipped else ""
        log.error(msg + extra, *args)
        self.last, self.skipped = now, 0


@dataclass(frozen=True)
class FeedbackResult:
    received: int
    stored: int  # new rows; received - stored were already stored (idempotent repeats)


class FeedbackStore:
    """Card memory, feedback and suppression over one backend. Create with `open_store`."""

    def __init__(self, backend: Backend, settings: Settings) -> None:
        self.backend = backend
        self.settings = settings
        self._queue: asyncio.Queue[CardRecord] = asyncio.Queue(QUEUE_SIZE)
        self._pending: dict[str, CardRecord] = {}
        self._enqueued = 0  # sequence numbers: records enqueued / written so far
        self._written = 0
        self._written_changed = asyncio.Condition()
        self._hurry = asyncio.Event()
        self._feedback: asyncio.Queue[tuple[FeedbackRequest, asyncio.Future[int | FeedbackError]]] = (
            asyncio.Queue(FEEDBACK_QUEUE_SIZE)
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._policies: dict[str, SuppressionPolicy] = {}
        self._reads_in_flight = 0
        self._read_errors = _Throttled()
        self._write_errors = _Throttled()
        self.dropped = 0  # card records lost because the queue was full
        self.ready = False  # schema migrated, database reached at least once

    # --- life cycle ------------------------------------------------------------------------
    async def start(self, background: bool = True) -> None:
        """Migrate the schema and start the background tasks.

        A database server that cannot be reached (PostgreSQL) does not stop a service start-up
        (`background=True`): the store starts degraded (hooks answer unchanged, issued cards wait
        in the queue, feedback gets 503) and migrates as soon as the server answers.
        """
        try:
            await self.backend.migrate(to_ms(datetime.now(UTC)))
            self.ready = True
        except ConnectionError as e:
            if not background:
                raise
            log.error("feedback store degraded until the database answers (retrying): %s", e)
        if background:
            self._tasks.append(asyncio.create_task(self._writer(), name="cds-card-writer"))
            self._tasks.append(asyncio.create_task(self._feedback_writer(), name="cds-feedback-writer"))
            self._tasks.append(asyncio.create_task(self._maintain(), name="cds-feedback-maintenance"))

    async def _maintain(self) -> None:
        backoff = 1.0
        while not self.ready:  # degraded start: migrate once the database answers
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            try:
                await self.backend.migrate(to_ms(datetime.now(UTC)))
            except Exception as e:
                self._write_errors.error("feedback database still unavailable: %s", e)
                if cancelled():
                    raise asyncio.CancelledError from e
                continue
            self.ready = True
            log.info("feedback database available again; feedback store ready")
        await retention_loop(self.purge_expired, self.settings.retention_days, RETENTION_INTERVAL_SECONDS)

    async def close(self) -> None:
        """Write what is pending (bounded wait), stop the background tasks, close the database."""
        if self._tasks and self._pending and not await self.flush(CLOSE_TIMEOUT_SECONDS):
            log.error("feedback store closed with %d issued cards not written", len(self._pending))
        stuck = set(self._tasks)
        for _ in range(int(CLOSE_TIMEOUT_SECONDS)):  # re-cancel: a driver may swallow a cancellation
            if not stuck:
                break
            for task in stuck:
                task.cancel()
            _, stuck = await asyncio.wait(stuck, timeout=1.0)
        if stuck:
            log.error("feedback store: background tasks did not stop: %s", [t.get_name() for t in stuck])
        self._tasks.clear()
        await self.backend.close()

    # --- hook path -------------------------------------------------------------------------
    def policy(self, service_id: str) -> SuppressionPolicy:
        p = self._policies.get(service_id)
        if p is None:
            p = self._policies[service_id] = SuppressionPolicy.from_options(
                self.settings.service_options(service_id)
            )
        return p

    async def filter_and_record(
        self,
        service_id: str,
        patient_key: str,
        cards: list[Card],
        now: datetime,
        *,
        issuer: str | None = None,
        tenant: str | None = None,
    ) -> list[Card]:
        """The cards to show after repeat-alert suppression; remembers them (and to whom they were
        issued: `issuer`, `tenant` of the caller's token) for feedback.

        Waits on the database at most `db_write_timeout_seconds` (the suppression read); on a
        timeout or database error the cards are returned unchanged and an error is logged.
        """
        if not cards:
            return cards
        now_ms = to_ms(now)
        policy = self.policy(service_id)
        shown = cards
        if policy.enabled:
            recent = await self._recent(service_id, patient_key, now_ms - policy.lookback_ms)
            if recent is not None:
                shown = policy.apply(cards, recent, now_ms)
        for card in shown:
            self._enqueue(
                CardRecord(
                    uuid=card.uuid,
                    service=service_id,
                    kind=card.kind,
                    indicator=card.indicator,
                    issued_ms=now_ms,
                    patient_key=patient_key,
                    model_version=card.model_version,
                    score=card.score,
                    suggestions=card.suggestion_uuids(),
                    issuer=issuer,
                    tenant=tenant or "",
                    override_reasons=tuple((r.system or "", r.code) for r in card.override_reasons),
                )
            )
        return shown

    async def _recent(self, service_id: str, patient_key: str, since_ms: int) -> list[RecentCard] | None:
        if self._reads_in_flight >= MAX_READS_IN_FLIGHT:
            self._read_errors.error(
                "feedback database too slow: %d reads in flight; suppression skipped", self._reads_in_flight
            )
            return None
        # Cards shown moments ago may still wait in the queue. Taken before the read: a card leaves
        # `_pending` only once committed, so each card is either in this snapshot or in the read.
        pending = [
            RecentCard(r.kind, r.indicator, r.issued_ms, False)
            for r in list(self._pending.values())
            if r.service == service_id and r.patient_key == patient_key and r.issued_ms >= since_ms
        ]
        self._reads_in_flight += 1
        try:
            stored = await asyncio.wait_for(
                self.backend.recent_cards(service_id, patient_key, since_ms),
                self.settings.db_write_timeout_seconds,
            )
        except TimeoutError:
            self._read_errors.error(
                "feedback database did not answer within %.3fs; repeat-alert suppression skipped",
                self.settings.db_write_timeout_seconds,
            )
            return None
        except Exception as e:  # any database failure degrades suppression, never the hook
            self._read_errors.error("feedback database error, repeat-alert suppression skipped: %r", e)
            return None
        finally:
            self._reads_in_flight -= 1
        return stored + pending

    def _enqueue(self, record: CardRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1
            self._write_errors.error(
                "feedback card queue full (%d): issued card not recorded; is the database down?", QUEUE_SIZE
            )
            return
        self._pending[record.uuid] = record
        self._enqueued += 1

    async def _writer(self) -> None:
        backoff = 0.05
        while True:
            batch = [await self._queue.get()]
            if not self._hurry.is_set() and self._queue.qsize() < BATCH_SIZE:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), CARD_LINGER_SECONDS)
            self._hurry.clear()
            while len(batch) < BATCH_SIZE and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            while True:
                try:
                    await self.backend.write_cards(batch)
                    backoff = 0.05
                    break
                except Exception as e:  # keep the batch and retry: an outage must not lose cards
                    if cancelled():  # the database driver may turn our cancellation into its error
                        raise asyncio.CancelledError from e
                    self._write_errors.error(
                        "feedback database write failed (%d cards kept, retrying): %r", len(batch), e
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
            for r in batch:
                self._pending.pop(r.uuid, None)
            async with self._written_changed:
                self._written += len(batch)
                self._written_changed.notify_all()
            if cancelled():
                raise asyncio.CancelledError

    async def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> bool:
        """Wait until every card enqueued so far is written; False on timeout."""
        target = self._enqueued
        if self._written < target:
            self._hurry.set()
        try:
            async with asyncio.timeout(timeout), self._written_changed:
                await self._written_changed.wait_for(lambda: self._written >= target)
        except TimeoutError:
            return False
        return True

    # --- feedback --------------------------------------------------------------------------
    async def record_feedback(
        self,
        service_id: str,
        entries: Sequence[FeedbackEntry],
        now: datetime | None = None,
        *,
        issuer: str | None = None,
        tenant: str | None = None,
    ) -> FeedbackResult:
        """Store validated entries, all or nothing, and return once committed; FeedbackError if refused.

        Only cards issued to `issuer` and `tenant` (the caller) are accepted; None: unscoped (tools).

        Concurrent requests share one transaction (group commit: one fsync for many clients); a
        refused request does not affect the others (see cds/feedback/batch.py).
        """
        if not self.ready:
            raise FeedbackError("the feedback database is unavailable; retry later", 503, "transient")
        if any(e.card in self._pending for e in entries) and not await self.flush():
            raise FeedbackError("the card is not stored yet (database slow or down); retry", 503, "transient")
        request = FeedbackRequest(
            service_id, tuple(entries), to_ms(now or datetime.now(UTC)), issuer=issuer, tenant=tenant or ""
        )
        if not self._tasks:  # no background writer (reports, tests): store directly
            (result,) = await self._store_batch([request])
        else:
            future: asyncio.Future[int | FeedbackError] = asyncio.get_running_loop().create_future()
            try:
                self._feedback.put_nowait((request, future))
            except asyncio.QueueFull:
                raise FeedbackError(
                    "too much feedback waiting to be stored; retry", 503, "transient"
                ) from None
            result = await future
        if isinstance(result, FeedbackError):
            raise result
        return FeedbackResult(received=len(entries), stored=result)

    async def _store_batch(self, requests: list[FeedbackRequest]) -> list[int | FeedbackError]:
        try:
            return await self.backend.store_feedback(requests)
        except Exception as e:
            log.error("feedback database error, %d feedback requests refused with 503: %r", len(requests), e)
            error = FeedbackError("the feedback database is unavailable; retry later", 503, "transient")
            return [error] * len(requests)

    async def _feedback_writer(self) -> None:
        while True:
            batch = [await self._feedback.get()]
            while len(batch) < FEEDBACK_BATCH_SIZE and not self._feedback.empty():
                batch.append(self._feedback.get_nowait())
            try:
                results = await self._store_batch([r for r, _ in batch])
            except BaseException:
                for _, future in batch:
                    if not future.done():
                        future.set_result(FeedbackError("the service is stopping; retry", 503, "transient"))
                raise
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():  # done: the client went away (its rows are stored all the same)
                    future.set_result(result)
            if cancelled():
                raise asyncio.CancelledError

    # --- retention and analytics -----------------------------------------------------------
    async def purge_expired(self, now: datetime | None = None) -> int:
        """Delete cards (and their feedback) older than `retention_days`, and the replay rows of
        expired tokens; the number of cards deleted."""
        now_ms = to_ms(now or datetime.now(UTC))
        deleted = await self.backend.purge(now_ms - self.settings.retention_days * 86_400_000)
        await self.backend.purge_replay(now_ms)
        return deleted

    async def summary(
        self,
        since: datetime,
        until: datetime,
        service: str | None,
        bucket_ms: int,
        *,
        issuer: str | None = None,
        tenant: str = "",
    ) -> SummaryRows:
        return await self.backend.summary(to_ms(since), to_ms(until), service, bucket_ms, issuer, tenant)

    async def counts(self) -> tuple[int, int]:
        """(cards, feedback rows) stored."""
        return await self.backend.counts()


def _backend(settings: Settings) -> Backend:
    url = database_url(settings)
    path = sqlite_path(url)
    if path is not None:
        from cds.feedback.sqlite import SQLiteBackend

        if not path or path == ":memory:":
            raise SettingsError(
                "database_url: sqlite:///PATH needs a file path (several connections share it)"
            )
        return SQLiteBackend(path)
    if is_postgres(url):
        try:
            from cds.feedback.postgres import PostgresBackend
        except ImportError as e:
            raise SettingsError(
                f"database_url is PostgreSQL but psycopg is missing: pip install 'cds[postgres]' ({e})"
            ) from None
        return PostgresBackend(url, settings.db_write_timeout_seconds)
    raise SettingsError("database_url must be sqlite:///PATH or postgresql://...")


async def open_store(settings: Settings, *, background: bool = True) -> FeedbackStore:
    """The store for these settings, migrated; `background=False` (reports) starts no tasks."""
    if settings.retention_days < 1:
        raise SettingsError("retention_days must be at least 1")
    for service_id, options in settings.services.items():
        try:
            SuppressionPolicy.from_options(options)
        except ValueError as e:
            raise SettingsError(f"services.{service_id}: {e}") from None
    store = FeedbackStore(_backend(settings), settings)
    try:
        await store.start(background)
    except BaseException:
        await store.backend.close()
        raise
    return store
