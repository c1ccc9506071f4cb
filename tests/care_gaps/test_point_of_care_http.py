"""Point-of-care readings of the care-gap measures, through the HTTP hook (patient-view), with the
chart dated in the current year (the service evaluates the calendar year containing today)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from cds.web.app import create_app
from tests.care_gaps.conftest import (
    DIABETES,
    EGFR,
    HBA1C,
    LOINC,
    PID,
    SNOMED,
    UACR,
    condition,
    encounter,
    observation,
    patient,
)
from tests.core.conftest import BASE, Caller, dev_settings, patient_view

PATH = "/cds-services/care-gaps"
REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC)
# Today, a minute ago: inside the current calendar year and before "now" on every day of the year.
TODAY = (NOW - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
EARLIER = (NOW - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
BIRTH_60 = f"{NOW.year - 60}-01-01"
MDRD = (LOINC, "33914-3")
CHECK_UP = (SNOMED, "185349003")


def _prefetch(resources: list[dict[str, Any]]) -> dict[str, Any]:
    hooks = json.loads((REPO / "hooks.json").read_text(encoding="utf-8"))
    keys = next(s for s in hooks["services"] if s["id"] == "care-gaps")["prefetch"]
    out: dict[str, Any] = {k: {"resourceType": "Bundle", "type": "searchset", "entry": []} for k in keys}
    out["patient"] = next(r for r in resources if r["resourceType"] == "Patient")
    out["conditions"]["entry"] = [{"resource": r} for r in resources if r["resourceType"] != "Patient"]
    return out


def _visit(start: str = EARLIER, **kw: Any) -> dict[str, Any]:
    return encounter(start, end=TODAY, **kw)


def _cards(caller: Caller, *resources: dict[str, Any], **context: Any) -> list[dict[str, Any]]:
    body = patient_view(PID, _prefetch(list(resources)))
    body["context"].update(context)
    r = caller.post(PATH, json=body)
    assert r.status_code == 200, r.text
    return [c for c in r.json()["cards"] if c.get("source", {}).get("label", "").startswith("CMS eCQM")]


def _kinds(cards: list[dict[str, Any]]) -> list[str]:
    return [c["source"]["label"].split(":")[0].removeprefix("CMS eCQM ") for c in cards]


@pytest.fixture
def care_gaps(tmp_path: Path) -> Iterator[Callable[..., Caller]]:
    """Callers of an app whose care-gaps service has the given options."""
    callers: list[Caller] = []

    def make(**options: Any) -> Caller:
        settings = dev_settings(tmp_path, services={"care-gaps": options})
        client = TestClient(create_app(settings), base_url=BASE, raise_server_exceptions=False)
        client.__enter__()
        callers.append(Caller(client, settings))
        return callers[-1]

    yield make
    for c in callers:
        c.close()


def test_no_cards_for_a_deceased_patient(care_gaps: Callable[..., Caller]) -> None:
    c = care_gaps(max_cards=10)
    alive = patient(BIRTH_60, "female")
    assert _cards(c, alive, _visit())  # overdue screenings
    assert _cards(c, {**alive, "deceasedBoolean": True}, _visit()) == []
    assert _cards(c, {**alive, "deceasedDateTime": EARLIER}, _visit()) == []
    assert _cards(c, {**alive, "deceasedBoolean": False}, _visit())


def test_no_cards_for_a_patient_in_hospice(care_gaps: Callable[..., Caller]) -> None:
    c = care_gaps(max_cards=10)
    hospice = encounter(EARLIER, end=TODAY, code=(SNOMED, "183919006"), id="hospice")
    assert _cards(c, patient(BIRTH_60, "female"), _visit(), hospice) == []


def test_the_current_visit_in_progress_counts(care_gaps: Callable[..., Caller]) -> None:
    current = {**encounter(EARLIER, id="now", status="in-progress"), "period": {"start": EARLIER}}
    woman = patient(BIRTH_60, "female")
    assert _cards(care_gaps(), woman, current) == []  # the letter of the CQL: not finished, no end
    cards = _cards(care_gaps(), woman, current, encounterId="Encounter/now")
    assert _kinds(cards) == ["CMS130", "CMS125", "CMS124"]
    assert "current visit counts" in cards[0]["detail"]
    assert _cards(care_gaps(count_current_visit=False), woman, current, encounterId="now") == []


def test_assume_current_visit_for_ambulatory_deployments(care_gaps: Callable[..., Caller]) -> None:
    woman = patient(BIRTH_60, "female")
    assert _cards(care_gaps(), woman) == []
    cards = _cards(care_gaps(assume_current_visit=True), woman)
    assert _kinds(cards) == ["CMS130", "CMS125", "CMS124"]
    assert "current office visit is assumed" in cards[0]["detail"]


def test_snomed_check_up_visits_count_and_are_labelled(care_gaps: Callable[..., Caller]) -> None:
    woman = patient(BIRTH_60, "female")
    check_up = _visit(code=CHECK_UP)
    cards = _cards(care_gaps(), woman, check_up)
    assert _kinds(cards) == ["CMS130", "CMS125", "CMS124"]
    assert "185349003" in cards[0]["detail"] and "not part of the CMS measure logic" in cards[0]["detail"]
    assert _cards(care_gaps(map_visit_codes=False), woman, check_up) == []
    # An inpatient stay coded with a follow-up concept is not an office visit.
    inpatient = _visit(code=(SNOMED, "390906007"), cls="IMP")
    assert _cards(care_gaps(), woman, inpatient) == []


def _kidney(cards: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((c for c in cards if c["source"]["label"].startswith("CMS eCQM CMS951")), None)


def test_any_egfr_counts_and_only_the_missing_test_is_ordered(care_gaps: Callable[..., Caller]) -> None:
    c = care_gaps(max_cards=10)
    chart = (patient(BIRTH_60, "female"), _visit(), condition(DIABETES))
    mdrd = observation(MDRD, EARLIER, value=(72, "mL/min/{1.73_m2}"))
    card = _kidney(_cards(c, *chart, mdrd))
    assert card is not None
    ordered = [a["resource"]["code"]["coding"][0]["code"] for s in card["suggestions"] for a in s["actions"]]
    assert ordered == [UACR[1]]
    assert "eGFR" in card["detail"] and "counts" in card["detail"] and "33914-3" in card["detail"]
    assert "No urine albumin-creatinine ratio on record" in card["detail"]
    uacr = observation(UACR, EARLIER, value=(12, "mg/g"))
    assert _kidney(_cards(c, *chart, mdrd, uacr)) is None  # both done: no gap
    # Off by setting: the MDRD result does not count, both tests are ordered.
    card = _kidney(_cards(care_gaps(max_cards=10, accept_any_egfr=False), *chart, mdrd))
    assert card is not None
    assert [a["resource"]["code"]["coding"][0]["code"] for a in card["suggestions"][0]["actions"]] == [
        UACR[1],
        EGFR[1],
    ]


def test_a_result_that_does_not_count_is_named_with_the_reason(care_gaps: Callable[..., Caller]) -> None:
    chart = (patient(BIRTH_60, "female"), _visit(), condition(DIABETES))
    no_value = observation(EGFR, EARLIER, value=None)
    uacr = observation(UACR, EARLIER, value=(12, "mg/g"))
    card = _kidney(_cards(care_gaps(max_cards=10), *chart, no_value, uacr))
    assert card is not None
    assert "does not count: no result value" in card["detail"]
    ordered = [a["resource"]["code"]["coding"][0]["code"] for s in card["suggestions"] for a in s["actions"]]
    assert ordered == [EGFR[1]]


def test_the_last_card_says_how_many_gaps_the_cap_left_out(care_gaps: Callable[..., Caller]) -> None:
    chart = (
        patient(BIRTH_60, "female"),
        _visit(),
        condition(DIABETES),
        observation(HBA1C, EARLIER, value=(10.2, "%")),
    )
    everything = _cards(care_gaps(max_cards=20), *chart)
    capped = _cards(care_gaps(max_cards=3), *chart)
    assert len(everything) > 3 and len(capped) == 3
    hidden = _kinds(everything)[3:]
    assert (
        f"+{len(hidden)} more" in capped[-1]["detail"] and f"(+{len(hidden)} more)" in capped[-1]["summary"]
    )
    assert all(k in capped[-1]["detail"] for k in hidden)
    assert all("more gap" not in c["detail"] for c in capped[:-1]) and len(capped[-1]["summary"]) < 140
    # CMS122 above 9%: the treatment review comes first, the repeat test second.
    first = capped[0]
    assert _kinds([first]) == ["CMS122"]
    assert (
        first["suggestions"][0]["label"].startswith("Review and intensify")
        and first["suggestions"][0]["isRecommended"]
    )
    assert first["suggestions"][1]["actions"][0]["resource"]["code"]["coding"][0]["code"] == HBA1C[1]
