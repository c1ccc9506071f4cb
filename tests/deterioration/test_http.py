"""The fixed patient through the real app: POST /cds-services/deterioration with a signed token."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from cds.auth import mint_dev_token
from cds.runtime.settings import load_settings
from cds.web.app import create_app

from .fhir import patient, sick_patient
from .test_service import FIXED_RISK

BASE = "http://localhost"


def bundle(resources):
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


@pytest.fixture
def client(tmp_path: Path):
    settings = load_settings(dev=True, data_dir=tmp_path)
    with TestClient(create_app(settings), base_url=BASE, raise_server_exceptions=False) as c:
        yield c, settings


def call(client, settings, body):
    path = "/cds-services/deterioration"
    token = mint_dev_token(settings, BASE + path)
    return client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})


def vitals_body(pat: dict, vitals: list[dict]) -> dict:
    """A patient-view call whose prefetch holds the patient and these vital signs only."""
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/d1", "patientId": "p1"},
        "prefetch": {
            "patient": pat,
            "vitals": bundle(vitals),
            "labs": bundle([]),
            "conditions": bundle([]),
            "procedures": bundle([]),
            "medicationAdministrations": bundle([]),
        },
    }


def test_fixed_patient_gets_a_fixed_score_over_http(client) -> None:
    c, settings = client
    now = datetime.now(UTC)
    resources = sick_patient(now)
    # 80 years old whenever the test runs, as in the in-process test
    resources[0] = patient(birth=date(now.year - 80, 1, 1).isoformat())
    obs = [r for r in resources if r["resourceType"] == "Observation"]
    r = call(c, settings, vitals_body(resources[0], obs))
    assert r.status_code == 200, r.text
    (card,) = r.json()["cards"]
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("NEWS2 15: emergency response")
    assert f"Similar patients in the ICU database: {FIXED_RISK:.0%} in-hospital mortality" in card["detail"]
    assert card["links"][0]["url"] == f"{BASE}/models/deterioration"
    assert c.get("/models/deterioration").status_code == 200


def test_low_patient_gets_no_card_over_http(client) -> None:
    c, settings = client
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/d1", "patientId": "p1"},
        "prefetch": {
            "patient": patient(),
            "vitals": bundle([]),
            "labs": bundle([]),
            "conditions": bundle([]),
            "procedures": bundle([]),
            "medicationAdministrations": bundle([]),
        },
    }
    r = call(c, settings, body)
    assert r.status_code == 200, r.text
    assert r.json()["cards"] == []


def test_tampered_model_is_reported_at_readyz(tmp_path: Path) -> None:
    import shutil

    from cds.runtime.settings import REPO_ROOT

    models = tmp_path / "models"
    shutil.copytree(REPO_ROOT / "models", models)
    with open(models / "deterioration" / "model.ubj", "ab") as fh:
        fh.write(b"\0")
    settings = load_settings(dev=True, data_dir=tmp_path / "data", models_dir=models)
    with TestClient(create_app(settings), base_url=BASE, raise_server_exceptions=False) as c:
        r = c.get("/readyz")
    assert r.status_code == 503
    assert "model.ubj does not match its SHA-256" in r.json()["services"]["deterioration"]


def test_v1_prefetch_without_medication_administrations_still_answers(client) -> None:
    """A client sending the v1 prefetch keys (no MedicationAdministration) gets cards, not a 412."""
    c, settings = client
    now = datetime.now(UTC)
    resources = sick_patient(now)
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/d1", "patientId": "p1"},
        "prefetch": {
            "patient": resources[0],
            "vitals": bundle([r for r in resources if r["resourceType"] == "Observation"]),
            "labs": bundle([]),
            "conditions": bundle([]),
            "procedures": bundle([]),
        },
    }
    r = call(c, settings, body)
    assert r.status_code == 200, r.text
    assert r.json()["cards"][0]["summary"].startswith("NEWS2 15: emergency response")
    del body["prefetch"]["procedures"]  # a required key missing, no fhirServer: still 412
    assert call(c, settings, body).status_code == 412


def test_age_not_charted_is_assumed_and_said_sex_never_counts(client) -> None:
    """Without a birth date the ICU figure uses the training median age and the card says so; sex is
    no model input, so a patient recorded as other/unknown gets the same figure as male or female."""
    c, settings = client
    now = datetime.now(UTC)
    obs = [r for r in sick_patient(now) if r["resourceType"] == "Observation"]

    def detail(pat: dict) -> str:
        r = call(c, settings, vitals_body(pat, obs))
        assert r.status_code == 200, r.text
        return r.json()["cards"][0]["detail"]

    no_birth = detail({"resourceType": "Patient", "id": "p1", "gender": "female"})
    assert "Not charted, so assumed for the ICU figure: age 66 (the training median)." in no_birth
    figure = re.compile(r"Similar patients in the ICU database: (\d+)% in-hospital mortality")
    aged_66 = detail(patient(gender="female", birth=date(now.year - 66, 1, 1).isoformat()))
    assert "assumed for the ICU figure" not in aged_66
    assert figure.search(no_birth)[1] == figure.search(aged_66)[1]
    figures = {
        figure.search(detail(patient(gender=g, birth=date(now.year - 70, 1, 1).isoformat())))[1]
        for g in ("male", "female", "other", "unknown")
    }
    assert len(figures) == 1
