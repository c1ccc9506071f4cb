"""Hook test: a chart whose creatinine, potassium and lactate carry only local codes gets the same
cards as the LOINC-coded chart once the reviewed map is configured, and not without it; the local
codes that reach a hook unmapped are counted in /metrics by system."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from cds.runtime.settings import SettingsError, load_settings
from cds.web.app import create_app
from tests.core.conftest import BASE, Caller
from tests.deterioration.fhir import obs, patient, sick_patient

HERE = Path(__file__).resolve().parent
LOCAL = "urn:hospital-a:lab"
# local code -> (LOINC code it stands for), as in the reviewed map tests/terminology/hospital-a.json
LOCAL_CODES = {
    "2160-0": ("CREAT", "CREAT SER/PL"),
    "2823-3": ("K", "K+ SER"),
    "2524-7": ("LACT", "Lactic acid"),
}


def loinc_chart(now: datetime) -> list[dict[str, Any]]:
    resources = sick_patient(now)
    resources[0] = patient(birth=date(now.year - 80, 1, 1).isoformat())
    resources = [r for r in resources if r.get("code", {}).get("coding", [{}])[0].get("code") != "2160-0"]
    return [
        *resources,
        obs("2160-0", 2.5, "mg/dL", 5, now=now),
        obs("2823-3", 6.1, "mmol/L", 3, now=now),
        obs("2524-7", 4.8, "mmol/L", 3, now=now),
    ]


def localise(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same chart with creatinine, potassium and lactate coded only in the hospital's system."""
    out = []
    for r in resources:
        code = (
            r.get("code", {}).get("coding", [{}])[0].get("code")
            if r["resourceType"] == "Observation"
            else None
        )
        if code in LOCAL_CODES:
            local, display = LOCAL_CODES[code]
            r = {
                **r,
                "code": {"coding": [{"system": LOCAL, "code": local, "display": display}], "text": display},
            }
        out.append(r)
    return out


def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def _is_lab(o: dict[str, Any]) -> bool:
    coding = o["code"]["coding"][0]
    return coding["system"] == LOCAL or coding["code"] in LOCAL_CODES


def det_body(resources: list[dict[str, Any]]) -> dict[str, Any]:
    obs_ = [r for r in resources if r["resourceType"] == "Observation"]
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/d1", "patientId": "p1"},
        "prefetch": {
            "patient": resources[0],
            "vitals": bundle([o for o in obs_ if not _is_lab(o)]),
            "labs": bundle([o for o in obs_ if _is_lab(o)]),
            "conditions": bundle([]),
            "procedures": bundle([]),
        },
    }


def med_body(resources: list[dict[str, Any]]) -> dict[str, Any]:
    labs = [r for r in resources if r["resourceType"] == "Observation"]
    spiro = {
        "resourceType": "MedicationRequest",
        "id": "d1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "9997",
                    "display": "spironolactone",
                }
            ]
        },
        "dosageInstruction": [{"text": "25 mg daily", "route": {"text": "oral"}}],
    }
    empty = bundle([])
    return {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/d1",
            "patientId": "p1",
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": spiro}]},
        },
        "prefetch": {
            "patient": resources[0],
            "medications": empty,
            "statements": empty,
            "allergies": empty,
            "conditions": empty,
            "labs": bundle(labs),
        },
    }


def cards(caller: Caller, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    r = caller.post(path, json=body)
    assert r.status_code == 200, r.text
    return _without_uuids(r.json()["cards"])


def _without_uuids(value: Any) -> Any:
    """Cards and suggestions carry fresh uuids on each call; everything else must be equal."""
    if isinstance(value, dict):
        return {k: _without_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [_without_uuids(v) for v in value]
    return value


@pytest.fixture
def callers(tmp_path: Path):
    """Two apps: one with the reviewed map configured (path relative to the settings file), one without."""
    conf = tmp_path / "conf"
    (conf / "maps").mkdir(parents=True)
    shutil.copy(HERE / "hospital-a.json", conf / "maps" / "hospital-a.json")
    (conf / "cds.toml").write_text('terminology_maps = ["maps/hospital-a.json"]\n')
    mapped = load_settings(conf / "cds.toml", dev=True, data_dir=tmp_path / "a")
    plain = load_settings(dev=True, data_dir=tmp_path / "b")
    out = []
    for s in (mapped, plain):
        client = TestClient(create_app(s), base_url=BASE, raise_server_exceptions=False)
        client.__enter__()
        out.append(Caller(client, s))
    yield out
    for c in out:
        c.close()


@pytest.mark.parametrize(
    ("path", "build"),
    [("/cds-services/deterioration", det_body), ("/cds-services/medication-risk", med_body)],
)
def test_local_codes_give_the_loinc_cards_only_with_the_map(callers, path, build) -> None:
    mapped, plain = callers
    now = datetime.now(UTC)
    chart = loinc_chart(now)
    local = localise(chart)
    reference = cards(plain, path, build(chart))
    assert reference, "the LOINC chart must raise cards for this test to mean anything"
    assert cards(mapped, path, build(local)) == reference
    without = cards(plain, path, build(local))
    assert without != reference
    if path.endswith("medication-risk"):
        assert not any("potassium" in c["summary"].lower() for c in without)


def test_unmapped_local_codes_are_counted_by_system(callers) -> None:
    mapped, plain = callers
    local = localise(loinc_chart(datetime.now(UTC)))
    cards(plain, "/cds-services/deterioration", det_body(local))
    cards(mapped, "/cds-services/deterioration", det_body(local))

    def metric(caller: Caller) -> float:
        text = caller.client.get("/metrics").text
        line = next(
            (ln for ln in text.splitlines() if ln.startswith("cds_unmapped_observation_codes_total{")), ""
        )
        assert "9" not in line.split("system=")[-1].split(",")[0] or LOCAL in line  # never a code or value
        return float(line.rsplit(" ", 1)[1]) if line else 0.0

    assert metric(plain) == 3.0  # creatinine, potassium, lactate: one each, labelled by the local system
    assert LOCAL in plain.client.get("/metrics").text
    assert metric(mapped) == 0.0


def test_discovery_asks_for_the_mapped_local_codes(callers) -> None:
    mapped, plain = callers
    med = next(s for s in mapped.get("/cds-services").json()["services"] if s["id"] == "medication-risk")
    labs = med["prefetch"]["labs"]
    assert f"{LOCAL}|K" in labs and f"{LOCAL}|CREAT" in labs and "http://loinc.org|2823-3" in labs
    assert "{{context.patientId}}" in labs
    plain_med = next(s for s in plain.get("/cds-services").json()["services"] if s["id"] == "medication-risk")
    assert LOCAL not in plain_med["prefetch"]["labs"]


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"resourceType": "Bundle"}),
        json.dumps(
            {
                "resourceType": "ConceptMap",
                "group": [{"source": LOCAL, "target": "http://snomed.info/sct", "element": []}],
            }
        ),
        json.dumps(
            {
                "resourceType": "ConceptMap",
                "group": [
                    {
                        "source": LOCAL,
                        "target": "http://loinc.org",
                        "element": [
                            {"code": "K", "target": [{"code": "potassium", "equivalence": "equivalent"}]}
                        ],
                    }
                ],
            }
        ),
        json.dumps(
            {
                "resourceType": "ConceptMap",
                "group": [
                    {
                        "source": LOCAL,
                        "target": "http://loinc.org",
                        "element": [{"code": "K", "target": [{"code": "2823-3", "equivalence": "same"}]}],
                    }
                ],
            }
        ),
    ],
)
def test_a_malformed_map_stops_start_up(tmp_path: Path, content: str) -> None:
    (tmp_path / "bad.json").write_text(content)
    (tmp_path / "cds.toml").write_text('terminology_maps = ["bad.json"]\n')
    settings = load_settings(tmp_path / "cds.toml", dev=True, data_dir=tmp_path)
    with pytest.raises(SettingsError, match=r"bad\.json"):
        create_app(settings)


def test_a_missing_map_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "cds.toml").write_text('terminology_maps = ["nowhere.json"]\n')
    settings = load_settings(tmp_path / "cds.toml", dev=True, data_dir=tmp_path)
    with pytest.raises(SettingsError, match=r"nowhere\.json"):
        create_app(settings)


def test_fhir_fallback_asks_for_and_reads_the_mapped_local_codes(
    tmp_path: Path, fresh_fhir_server: Any
) -> None:
    """Labs missing from prefetch: the fallback query names the local codes, and the card follows."""
    from tests.core.test_fhir_fallback import with_fhir

    now = datetime.now(UTC)
    chart = localise(loinc_chart(now))
    labs = [r for r in chart if r["resourceType"] == "Observation" and _is_lab(r)]
    fresh_fhir_server.load([chart[0], *labs])
    fresh_fhir_server.reset()
    mapped = load_settings(dev=True, data_dir=tmp_path, terminology_maps=[str(HERE / "hospital-a.json")])
    client = TestClient(create_app(mapped), base_url=BASE, raise_server_exceptions=False)
    client.__enter__()
    caller = Caller(client, mapped)
    try:
        body = med_body(chart)
        del body["prefetch"]["labs"]
        got = cards(caller, "/cds-services/medication-risk", with_fhir(fresh_fhir_server, body))
    finally:
        caller.close()
    queries = [r["path"] for r in fresh_fhir_server.requests() if r["method"] == "GET"]
    assert any(f"{LOCAL}%7CK," in q or f"{LOCAL}|K," in q for q in queries), queries
    assert any("potassium" in c["summary"].lower() for c in got), [c["summary"] for c in got]
