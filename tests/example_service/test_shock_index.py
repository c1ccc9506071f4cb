"""The example service on its own: the contract (plain constructor, options, load) and its rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds.fhir.record import PatientRecord
from cds.hooks.request import HookRequest
from cds.hooks.service import ServiceLoadError
from cds.runtime.settings import Settings
from tests.example_service.shock_index import ShockIndexOptions, ShockIndexService

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SERVICE = ShockIndexService().load()
REQUEST = HookRequest("shock-index", "patient-view", "h1", {"patientId": "p1", "userId": "Practitioner/d"})


def _obs(i: int, code: str, when: datetime, value: float | None = None, **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"o{i}",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "effectiveDateTime": when.isoformat(),
    }
    if value is not None:
        unit = "/min" if code == "8867-4" else "mm[Hg]"
        r["valueQuantity"] = {"value": value, "system": "http://unitsofmeasure.org", "code": unit}
    return r | extra


def _panel(i: int, when: datetime, systolic: float) -> dict[str, Any]:
    comp = [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {"value": systolic, "code": "mm[Hg]"},
        }
    ]
    return _obs(i, "85354-9", when, component=comp)


def _record(*resources: dict[str, Any]) -> PatientRecord:
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01"}
    return PatientRecord.from_resources([patient, *resources], now=NOW, patient_id="p1")


def test_constructor_does_no_io_and_load_reads_the_knowledge(tmp_path: Path) -> None:
    missing = ShockIndexService(ShockIndexOptions(knowledge_file=str(tmp_path / "none.json")))
    assert missing.options.knowledge_file  # built fine: nothing was read
    with pytest.raises(ServiceLoadError, match=r"none\.json"):
        missing.load()
    (tmp_path / "bad.json").write_text('{"source": {}}')
    with pytest.raises(ServiceLoadError, match="KeyError"):
        ShockIndexService(ShockIndexOptions(knowledge_file=str(tmp_path / "bad.json"))).load()


@pytest.mark.parametrize(
    ("options", "setting"),
    [({"max_age_hours": 0}, "max_age_hours"), ({"max_pair_minutes": "5"}, "max_pair_minutes")],
)
def test_bad_options_name_the_setting(options: dict[str, Any], setting: str) -> None:
    with pytest.raises(ServiceLoadError, match=rf"services\.shock-index\.{setting}"):
        ShockIndexService.from_settings(Settings(services={"shock-index": options}))


def test_options_come_from_its_settings_table() -> None:
    s = ShockIndexService.from_settings(Settings(services={"shock-index": {"max_pair_minutes": 5}}))
    assert s.options == ShockIndexOptions(max_pair_minutes=5.0)


@given(
    rate=st.integers(min_value=20, max_value=250),
    systolic=st.integers(min_value=40, max_value=250),
    panel=st.booleans(),
)
def test_card_exactly_when_rate_over_systolic_reaches_the_threshold(
    rate: int, systolic: int, panel: bool
) -> None:
    bp = _panel(2, NOW, systolic) if panel else _obs(2, "8480-6", NOW, systolic)
    cards = SERVICE.evaluate(REQUEST, _record(_obs(1, "8867-4", NOW, rate), bp))
    assert bool(cards) == (rate >= systolic)  # threshold 1.0, integers: no rounding at the boundary
    if cards:
        assert cards[0].score == pytest.approx(rate / systolic, abs=5e-4)
        assert cards[0].indicator == "warning" and cards[0].kind == "shock-index:abnormal"


@pytest.mark.parametrize(
    ("minutes", "paired"), [(0, True), (15, True), (16, False), (-15, True), (-16, False)]
)
def test_pairing_window_boundary(minutes: int, paired: bool) -> None:
    hr = _obs(1, "8867-4", NOW - timedelta(hours=1), 130)
    bp = _obs(2, "8480-6", NOW - timedelta(hours=1, minutes=minutes), 90)
    assert bool(SERVICE.evaluate(REQUEST, _record(hr, bp))) is paired


def test_newest_pair_wins_and_old_or_unpaired_readings_say_nothing() -> None:
    old = NOW - timedelta(hours=30)
    assert SERVICE.evaluate(REQUEST, _record(_obs(1, "8867-4", old, 140), _obs(2, "8480-6", old, 80))) == []
    newer = [_obs(3, "8867-4", NOW, 70), _obs(4, "8480-6", NOW, 120)]
    older = [
        _obs(1, "8867-4", NOW - timedelta(hours=2), 140),
        _obs(2, "8480-6", NOW - timedelta(hours=2), 80),
    ]
    assert SERVICE.evaluate(REQUEST, _record(*older, *newer)) == []
    assert SERVICE.evaluate(REQUEST, _record(*older)) != []
    assert SERVICE.evaluate(REQUEST, _record(_obs(1, "8867-4", NOW, 140))) == []
    no_value = _obs(2, "8480-6", NOW)
    assert SERVICE.evaluate(REQUEST, _record(_obs(1, "8867-4", NOW, 140), no_value)) == []
