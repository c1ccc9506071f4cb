"""The care-gaps service: one card per open gap, sorted and capped, with coded orders."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cds.fhir.record import PatientRecord
from cds.hooks.cards import Card
from cds.hooks.request import HookRequest
from cds.hooks.service import ServiceLoadError
from cds.runtime.settings import Settings
from cds.services.care_gaps.service import CareGapsService
from tests.care_gaps.conftest import (
    ATORVASTATIN_20,
    COLONOSCOPY,
    DIABETES,
    EGFR,
    HBA1C,
    HYPERTENSION,
    MAMMOGRAM,
    MI,
    PAP,
    PID,
    UACR,
    blood_pressure,
    condition,
    encounter,
    med_request,
    observation,
    patient,
    procedure,
)

NOW = datetime(2025, 11, 25, 14, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def _service(**options: Any) -> CareGapsService:
    return CareGapsService.from_settings(Settings(services={"care-gaps": options})).load()


def _cards(
    *resources: dict[str, Any], now: datetime = NOW, context: dict[str, Any] | None = None, **options: Any
) -> list[Card]:
    record = PatientRecord.from_resources(list(resources), now=now, patient_id=PID)
    ctx = {"patientId": PID, "userId": "Practitioner/9", **(context or {})}
    request = HookRequest("care-gaps", "patient-view", "hi-1", ctx)
    return _service(**options).evaluate(request, record)


def _no_nulls(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, dict):
        return all(_no_nulls(v) for v in value.values()) and bool(value)
    if isinstance(value, list):
        return bool(value) and all(_no_nulls(v) for v in value)
    return True


WOMAN_60 = patient("1965-04-02", "female")


def test_each_open_screening_gap_gets_one_card_sorted_by_importance() -> None:
    cards = _cards(WOMAN_60, encounter(), max_cards=10)
    assert [c.kind for c in cards] == ["measure:CMS130", "measure:CMS125", "measure:CMS124"]
    assert all(c.indicator == "info" for c in cards)
    assert cards[0].summary == "Colorectal cancer screening due (CMS130): none on record"


def test_cards_are_capped_by_the_setting_and_default_to_three() -> None:
    diabetic = (WOMAN_60, encounter(), condition(DIABETES), condition(HYPERTENSION))
    assert len(_cards(*diabetic)) == 3
    assert len(_cards(*diabetic, max_cards=1)) == 1
    # All eight: three screenings, HbA1c, BP (no reading), statin (diabetes at 40-75), eye, kidney.
    assert len(_cards(*diabetic, max_cards=20)) == 8


def test_closed_gaps_give_no_cards() -> None:
    done = (
        WOMAN_60,
        encounter(),
        procedure(COLONOSCOPY, "2019-05-01"),
        observation(MAMMOGRAM, "2024-11-01T10:00:00Z", category="imaging", value=None),
        observation(PAP, "2024-02-01T10:00:00Z"),
    )
    assert _cards(*done) == []


def test_high_hba1c_is_a_warning_card_first_with_the_value_and_date() -> None:
    cards = _cards(
        WOMAN_60,
        encounter(),
        condition(DIABETES),
        observation(HBA1C, "2025-08-14T09:00:00Z", value=(10.4, "%")),
        max_cards=10,
    )
    first = cards[0]
    assert first.kind == "measure:CMS122" and first.indicator == "warning"
    assert "10.4%" in first.summary and "2025-08-14" in first.summary
    assert "10.4%" in (first.detail or "") and "ADA" in (first.detail or "")
    # Above 9% the recommended suggestion is the treatment review (ADA Standards of Care), then the test.
    review = first.suggestions[0].actions[0].resource
    assert first.suggestions[0].is_recommended and review is not None and review["intent"] == "plan"
    assert review["code"]["coding"][0]["code"] == "182836005" and "intensify" in review["note"][0]["text"]
    assert "**Treatment:**" in (first.detail or "")
    order = first.suggestions[1].actions[0].resource
    assert order is not None and order["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "4548-4",
        "display": "Hemoglobin A1c/Hemoglobin.total in Blood",
    }


def test_controlled_hba1c_closes_the_inverse_measure() -> None:
    cards = _cards(
        WOMAN_60,
        encounter(),
        condition(DIABETES),
        observation(HBA1C, "2025-08-14T09:00:00Z", value=(6.8, "%")),
        max_cards=10,
    )
    assert "measure:CMS122" not in [c.kind for c in cards]


def test_uncontrolled_blood_pressure_is_a_warning() -> None:
    man = patient("1960-01-01", "male")
    cards = _cards(
        man,
        encounter(),
        condition(HYPERTENSION),
        blood_pressure("2025-10-01T09:00:00Z", 152, 94),
        max_cards=10,
    )
    bp = next(c for c in cards if c.kind == "measure:CMS165")
    assert bp.indicator == "warning" and "152/94" in bp.summary
    assert "ACC/AHA" in (bp.detail or "")


def test_statin_card_orders_a_coded_medication_request() -> None:
    man = patient("1960-01-01", "male")
    cards = _cards(man, encounter(), condition(MI), max_cards=10)
    statin = next(c for c in cards if c.kind == "measure:CMS347")
    med = statin.suggestions[0].actions[0].resource
    assert med is not None and med["resourceType"] == "MedicationRequest"
    assert med["status"] == "draft" and med["intent"] == "order"
    assert (
        med["medicationCodeableConcept"]["coding"][0]["system"]
        == "http://www.nlm.nih.gov/research/umls/rxnorm"
    )
    assert med["medicationCodeableConcept"]["coding"][0]["code"] == "617311"  # high intensity for ASCVD
    assert med["subject"] == {"reference": f"Patient/{PID}"}
    # A statin ordered this year closes it.
    treated = _cards(
        man, encounter(), condition(MI), med_request(ATORVASTATIN_20, "2025-02-01"), max_cards=10
    )
    assert "measure:CMS347" not in [c.kind for c in treated]


def test_kidney_card_orders_both_tests_in_one_suggestion_or_only_the_missing_one() -> None:
    cards = _cards(WOMAN_60, encounter(), condition(DIABETES), max_cards=10)
    kidney = next(c for c in cards if c.kind == "measure:CMS951")
    codes = [a.resource["code"]["coding"][0]["code"] for a in kidney.suggestions[0].actions if a.resource]
    assert codes == [UACR[1], EGFR[1]]
    cards = _cards(
        WOMAN_60, encounter(), condition(DIABETES), observation(EGFR, "2025-03-01T08:00:00Z"), max_cards=10
    )
    kidney = next(c for c in cards if c.kind == "measure:CMS951")
    codes = [a.resource["code"]["coding"][0]["code"] for a in kidney.suggestions[0].actions if a.resource]
    assert codes == [UACR[1]] and kidney.suggestions[0].label == "Order urine albumin-creatinine ratio"


def test_card_json_is_cds_hooks_valid() -> None:
    for card in _cards(WOMAN_60, encounter(), condition(DIABETES), condition(HYPERTENSION), max_cards=20):
        doc = card.to_json()
        assert _no_nulls(doc), doc
        assert len(doc["summary"]) < 140
        assert doc["selectionBehavior"] == "at-most-one"
        assert {r["code"] for r in doc["overrideReasons"]} == {
            "patient-declined",
            "done-elsewhere",
            "not-applicable",
        }
        assert doc["source"]["url"].startswith("https://ecqi.healthit.gov/")
        for s in doc["suggestions"]:
            for action in s["actions"]:
                res = action["resource"]
                assert res["status"] == "draft" and res["intent"] in ("order", "proposal")
                assert res["subject"] == {"reference": f"Patient/{PID}"}
                code = res.get("code") or res.get("medicationCodeableConcept")
                assert all(
                    c["system"].startswith("http") and c["code"] and c["display"] for c in code["coding"]
                )
        json.dumps(doc)


def test_hpv_order_only_offered_from_age_30() -> None:
    young = _cards(patient("2000-01-01", "female"), encounter(), max_cards=10)
    cervical = next(c for c in young if c.kind == "measure:CMS124")
    assert [s.label for s in cervical.suggestions] == ["Order cervical cytology (Pap test)"]


def test_no_patient_and_empty_prefetch_give_no_cards() -> None:
    assert _cards() == []
    assert _cards(patient()) == []


def test_rolling_period_reaches_into_last_year() -> None:
    last_autumn = encounter("2024-12-10T09:00:00Z")
    assert _cards(WOMAN_60, last_autumn, now=datetime(2025, 3, 1, tzinfo=UTC)) == []
    rolling = _cards(WOMAN_60, last_autumn, now=datetime(2025, 3, 1, tzinfo=UTC), period="rolling-12-months")
    assert rolling and rolling[0].kind == "measure:CMS130"


@pytest.mark.parametrize(
    "options",
    [
        {"period": "fiscal-year"},
        {"max_cards": 0},
        {"max_cards": "3"},
        {"measures": ["CMS999"]},
        {"measures": "CMS130"},
        {"measures": []},
        {"count_current_visit": "yes"},
    ],
)
def test_invalid_options_stop_start_up(options: dict[str, Any]) -> None:
    with pytest.raises(ServiceLoadError):
        _service(**options)


def test_measures_option_limits_the_measures() -> None:
    cards = _cards(WOMAN_60, encounter(), measures=["CMS124"])
    assert [c.kind for c in cards] == ["measure:CMS124"]


def test_hooks_json_prefetch_is_bounded() -> None:
    hooks = json.loads((REPO / "hooks.json").read_text())
    entry = next(s for s in hooks["services"] if s["id"] == "care-gaps")
    assert entry["hook"] == "patient-view"
    for key, query in entry["prefetch"].items():
        if "?" in query:
            assert "_count=" in query, key
            assert "{{context.patientId}}" in query, key
    for key in ("labs", "bloodPressure", "assessments", "procedures", "encounters", "medications"):
        assert "_sort=-" in entry["prefetch"][key], key


def test_the_open_visit_of_today_counts_as_a_visit_this_year() -> None:
    today = {
        **encounter("2025-11-25T13:30:00Z", id="today", status="in-progress"),
        "period": {"start": "2025-11-25T13:30:00Z"},
    }
    assert _cards(WOMAN_60, today) == []  # by the letter of the CQL, not yet "during" the period
    cards = _cards(WOMAN_60, today, context={"encounterId": "today"})
    assert [c.kind for c in cards] == ["measure:CMS130", "measure:CMS125", "measure:CMS124"]
    assert _cards(WOMAN_60, today, context={"encounterId": "today"}, count_current_visit=False) == []
    planned = {**today, "status": "planned"}
    assert _cards(WOMAN_60, planned, context={"encounterId": "today"}) == []


def test_legacy_bp_panel_counts_at_the_point_of_care() -> None:
    """A reading coded with the older LOINC panel 55284-4 counts as the QI-Core 85354-9 panel."""
    from cds.fhir.record import PatientRecord
    from cds.fhir.terminology import LOINC, CodeSet
    from cds.services.care_gaps.point_of_care import legacy_bp_panels

    legacy = {
        "resourceType": "Observation",
        "id": "bp1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "55284-4"}]},
    }
    other = {
        "resourceType": "Observation",
        "id": "o2",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "4548-4"}]},
    }
    rec = legacy_bp_panels(PatientRecord.from_resources([legacy, other]))
    panel = CodeSet.of(LOINC, "85354-9")
    assert [o["id"] for o in rec.observations(panel)] == ["bp1"]
    assert legacy["code"]["coding"] == [{"system": LOINC, "code": "55284-4"}]  # input untouched
