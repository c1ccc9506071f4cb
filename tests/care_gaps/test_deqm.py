"""The Da Vinci DEQM gaps-in-care report: `cds measure care-gaps --format deqm` and
`POST /fhir/Measure/$care-gaps`. On every visible official test case its MeasureReport populations
equal the expected MeasureReport, and every Bundle has what the DEQM STU5 profiles require."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from cds.fhir.record import PatientRecord
from cds.services.care_gaps.measures.deqm import gap_status, gaps_bundle, profile_problems
from cds.services.care_gaps.measures.engine import MEASURE_IDS, evaluate
from cds.services.care_gaps.measures.period import Period
from cds.services.care_gaps.measures.spec import load_spec
from cds.web.app import create_app
from tests.care_gaps.conftest import (
    DIABETES,
    HBA1C,
    PID,
    condition,
    encounter,
    load_official_case,
    observation,
    patient,
)
from tests.core.conftest import BASE, Caller, dev_settings

REPO = Path(__file__).resolve().parents[2]
PATH = "/fhir/Measure/$care-gaps"
AFTER = datetime(2026, 2, 1, tzinfo=UTC)  # report date after the 2025 period


def _populations(report: dict[str, Any]) -> list[dict[str, int]]:
    return [{p["code"]["coding"][0]["code"]: p["count"] for p in g["population"]} for g in report["group"]]


def _resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


@pytest.mark.data
def test_deqm_report_on_the_official_cases_matches_the_expected_populations(ecqm_dir: Path) -> None:
    checked = 0
    for mid in MEASURE_IDS:
        for case in sorted((ecqm_dir / "tests" / load_spec(mid).library).iterdir()):
            resources, expected = load_official_case(case)
            period = Period.parse(expected["period"]["start"], expected["period"]["end"])
            record = PatientRecord.from_resources(resources)
            bundle = gaps_bundle(record, evaluate(record, period, [mid]), AFTER)
            assert profile_problems(bundle) == [], case.name
            (report,) = _resources(bundle, "MeasureReport")
            (issue,) = _resources(bundle, "DetectedIssue")
            assert report["measure"] == load_spec(mid).measure_url
            assert _populations(report) == _populations(expected), f"{mid} {case.name}"
            status = issue["modifierExtension"][0]["valueCodeableConcept"]["coding"][0]["code"]
            assert status in ("open-gap", "closed-gap", "not-applicable")  # the period has ended
            checked += 1
    assert checked >= 319


@pytest.mark.data
def test_cli_writes_one_gaps_bundle_per_patient(ecqm_dir: Path) -> None:
    folder = ecqm_dir / "tests" / load_spec("CMS122").library
    out = subprocess.run(
        [sys.executable, "-m", "cds", "measure", "care-gaps", "--period", "2025-01-01", "2025-12-31",
         "--format", "deqm", "--measure", "CMS122", "--date", "2026-02-01", str(folder)],
        capture_output=True, check=True, text=True, cwd=REPO,
    )  # fmt: skip
    params = json.loads(out.stdout)
    bundles = [p["resource"] for p in params["parameter"]]
    assert params["resourceType"] == "Parameters" and {p["name"] for p in params["parameter"]} == {"return"}
    assert len(bundles) == sum(1 for c in folder.iterdir() if c.is_dir())
    assert all(profile_problems(b) == [] for b in bundles)


def test_gap_status_follows_the_populations_and_the_report_date() -> None:
    period = Period.parse("2025-01-01", "2025-12-31")
    chart = [patient("1960-01-01"), encounter(), condition(DIABETES)]
    high = observation(HBA1C, "2025-05-01T00:00:00Z", value=(10.2, "%"))
    low = observation(HBA1C, "2025-05-01T00:00:00Z", value=(6.5, "%"))

    def status(*extra: dict[str, Any], now: datetime = AFTER) -> str:
        rec = PatientRecord.from_resources([*chart, *extra])
        return gap_status(evaluate(rec, period, ["CMS122"])[0], now)

    assert status(high) == "open-gap"
    assert status(high, now=datetime(2025, 6, 1, tzinfo=UTC)) == "prospective-gap"
    assert status(low) == "closed-gap"
    young = PatientRecord.from_resources([patient("2015-01-01"), encounter(), condition(DIABETES)])
    assert gap_status(evaluate(young, period, ["CMS122"])[0], AFTER) == "not-applicable"


@pytest.fixture
def caller(tmp_path: Path) -> Iterator[Caller]:
    settings = dev_settings(tmp_path)
    client = TestClient(create_app(settings), base_url=BASE, raise_server_exceptions=False)
    client.__enter__()
    c = Caller(client, settings)
    yield c
    c.close()


def _parameters(*resources: dict[str, Any], **extra: Any) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "periodStart", "valueDate": "2025-01-01"},
        {"name": "periodEnd", "valueDate": "2025-12-31"},
        {"name": "bundle", "resource": {"resourceType": "Bundle", "type": "collection",
                                         "entry": [{"resource": r} for r in resources]}},
    ]  # fmt: skip
    for name, values in extra.items():
        params += [{"name": name, "valueCode" if name == "status" else "valueString": v} for v in values]
    return {"resourceType": "Parameters", "parameter": params}


def test_care_gaps_operation_over_http(caller: Caller) -> None:
    chart = (
        patient("1960-01-01"),
        encounter(),
        condition(DIABETES),
        observation(HBA1C, "2025-05-01T00:00:00Z", value=(10.2, "%")),
    )
    r = caller.post(PATH, json=_parameters(*chart))
    assert r.status_code == 200, r.text
    (ret,) = r.json()["parameter"]
    bundle = ret["resource"]
    assert ret["name"] == "return" and profile_problems(bundle) == []
    assert len(_resources(bundle, "MeasureReport")) == 8
    assert _resources(bundle, "Patient")[0]["id"] == PID
    # Only the CMS122 section, filtered by measure; only open gaps, filtered by status.
    r = caller.post(PATH, json=_parameters(*chart, measureId=["CMS122"]))
    assert [
        s["title"].split()[0]
        for s in _resources(r.json()["parameter"][0]["resource"], "Composition")[0]["section"]
    ] == ["CMS122"]
    r = caller.post(PATH, json=_parameters(*chart, status=["closed-gap"]))
    statuses = {
        i["modifierExtension"][0]["valueCodeableConcept"]["coding"][0]["code"]
        for i in _resources(r.json()["parameter"][0]["resource"], "DetectedIssue")
    }
    assert statuses <= {"closed-gap"}


def test_care_gaps_operation_needs_a_token_and_good_input(caller: Caller) -> None:
    body = _parameters(patient("1960-01-01"))
    assert caller.client.post(PATH, json=body).status_code == 401
    for bad, where in (
        ({"resourceType": "Bundle"}, "Parameters"),
        ({"resourceType": "Parameters", "parameter": []}, "periodStart"),
        (_parameters(patient("1960-01-01"), status=["maybe-gap"]), "status"),
        (_parameters(patient("1960-01-01"), measureId=["CMS999"]), "measureId"),
        (_parameters(encounter()), "bundle"),
        ({**body, "parameter": body["parameter"][:2]}, "bundle"),
    ):
        r = caller.post(PATH, json=bad)
        assert r.status_code == 400, (where, r.text)
        outcome = r.json()
        assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["expression"] == [where]
