"""The analytics report: counts per service and card kind, reasons, model versions, the series,
its CSV/table forms, the PNG plot and `cds feedback report`."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cds.cli import main
from cds.feedback.plot import plot_override_rate
from cds.feedback.report import build_report, parse_when, time_range, to_csv, to_table
from cds.feedback.store import FeedbackStore, open_store
from cds.runtime.settings import Settings

from .helpers import a_card, accepted, overridden, send

DAY0 = datetime(2026, 2, 1, tzinfo=UTC)


def ts(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


async def seed(store: FeedbackStore) -> None:
    """Ten days of medication-risk cards: day d issues 4 ddi cards (model 1.0 until day 5, then 2.0)
    and 1 renal card; of the ddi cards, d % 4 are overridden (reasons alternate), 1 accepted."""
    for d in range(10):
        day = DAY0 + timedelta(days=d, hours=9)
        version = "1.0" if d < 5 else "2.0"
        ddi = [a_card(version=version) for _ in range(4)]
        renal = a_card(kind="renal:metformin", version=None)
        for i, c in enumerate([*ddi, renal]):
            await store.filter_and_record("medication-risk", f"pk{d}-{i}", [c], day)
        entries = [overridden(c, ts(day + timedelta(minutes=5)), code="benefit" if i % 2 else None)
                   for i, c in enumerate(ddi[: d % 4])]  # fmt: skip
        entries.append(accepted(ddi[3], ts(day + timedelta(minutes=6))))
        await send(store, *entries)
        # a second, later feedback changes the card's outcome: it counts once, as the latest says
        if d == 9:
            await send(store, accepted(ddi[0], ts(day + timedelta(minutes=30))))
    await store.filter_and_record(
        "care-gaps", "pk", [a_card(kind="measure:CMS130")], DAY0 + timedelta(days=2)
    )
    await store.filter_and_record(
        "care-gaps", "pk", [a_card(kind="measure:CMS130")], DAY0 - timedelta(days=5)
    )


@pytest.mark.anyio
async def test_report_counts(store: FeedbackStore, tmp_path: Path) -> None:
    await seed(store)
    report = await build_report(store, DAY0, DAY0 + timedelta(days=10))
    assert report["bucket"] == "day"
    assert [(k["service"], k["kind"]) for k in report["kinds"]] == [
        ("care-gaps", "measure:CMS130"),
        ("medication-risk", "ddi:warfarin-nsaid"),
        ("medication-risk", "renal:metformin"),
    ]
    ddi = report["kinds"][1]
    overridden_total = sum(d % 4 for d in range(10)) - 1  # day 9's first override became an acceptance
    assert (ddi["issued"], ddi["accepted"], ddi["overridden"]) == (40, 11, overridden_total)
    assert ddi["ignored"] == 40 - 11 - overridden_total
    assert ddi["override_rate"] == round(overridden_total / 40, 4)
    reasons = {r["code"]: r["cards"] for r in ddi["top_override_reasons"]}
    assert reasons == {"(none given)": 9, "benefit": 4}  # counts every override, even one later accepted
    versions = {v["model_version"]: (v["issued"], v["accepted"]) for v in ddi["by_model_version"]}
    assert versions == {"1.0": (20, 5), "2.0": (20, 6)}
    assert len(ddi["series"]) == 10
    assert ddi["series"][3] == {
        "start": "2026-02-04T00:00:00Z",
        "issued": 4,
        "overridden": 3,
        "override_rate": 0.75,
    }
    renal = report["kinds"][2]
    assert (renal["issued"], renal["ignored"], renal["by_model_version"][0]["model_version"]) == (
        10,
        10,
        None,
    )
    assert report["totals"]["issued"] == 51

    only = await build_report(store, DAY0, DAY0 + timedelta(days=1), service="care-gaps")
    assert only["kinds"] == [] and only["totals"]["issued"] == 0 and only["bucket"] == "hour"

    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert rows[1]["kind"] == "ddi:warfarin-nsaid" and rows[1]["issued"] == "40"
    assert "benefit (4)" in rows[1]["top_override_reasons"]
    assert "1.0: 25.0% of 20" in rows[1]["acceptance_by_model_version"]
    table = to_table(report)
    assert "ddi:warfarin-nsaid" in table and "Top override reasons" in table and "all" in table

    png = plot_override_rate(report, tmp_path / "plots" / "override.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    empty = plot_override_rate(only, tmp_path / "empty.png")
    assert empty.stat().st_size > 1000


def test_cli_report(
    make_settings: Callable[..., Settings], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    settings = make_settings()

    async def fill() -> None:
        store = await open_store(settings)
        try:
            await seed(store)
        finally:
            await store.close()

    asyncio.run(fill())
    args = ["feedback", "report", "--database-url", str(settings.database_url), "--data-dir", str(tmp_path),
            "--since", "2026-02-01", "--until", "2026-02-11", "--service", "medication-risk"]  # fmt: skip
    assert main([*args, "--format", "json", "--plot", str(tmp_path / "rate.png")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [k["issued"] for k in report["kinds"]] == [40, 10]
    assert (tmp_path / "rate.png").stat().st_size > 10_000
    assert main([*args, "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("service,kind,issued,accepted,overridden,ignored")
    assert main([*args]) == 0
    assert "renal:metformin" in capsys.readouterr().out
    assert main(["feedback", "report", "--database-url", str(settings.database_url), "--since", "soon"]) == 2
    assert "not a time" in capsys.readouterr().err
    assert main(["feedback", "report", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "no feedback database" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


def test_time_parsing() -> None:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert parse_when("7d", now) == now - timedelta(days=7)
    assert parse_when("90m", now) == now - timedelta(minutes=90)
    assert parse_when("2026-02-01", now) == datetime(2026, 2, 1, tzinfo=UTC)
    assert parse_when("2026-02-01T10:00:00+02:00", now) == datetime(2026, 2, 1, 8, tzinfo=UTC)
    assert time_range(None, None, now) == (now - timedelta(days=30), now)
    for bad in ("yesterday", "2026-02-30", "7y"):
        with pytest.raises(ValueError):
            parse_when(bad, now)
    with pytest.raises(ValueError, match="before"):
        time_range("now", "1d", now)
