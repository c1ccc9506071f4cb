"""The deterioration service in process: fixed patients get fixed scores and the right cards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cds.fhir.record import PatientRecord
from cds.hooks.request import HookRequest
from cds.hooks.service import ServiceLoadError
from cds.runtime.manifest import update, verify
from cds.runtime.settings import REPO_ROOT, load_settings
from cds.services.deterioration.model import DeteriorationModel
from cds.services.deterioration.service import DeteriorationService

from .fhir import NOW, obs, patient, sick_patient, well_patient

MODELS = REPO_ROOT / "models"
# The shipped model's answer for sick_patient(); retraining on other data changes it (on purpose).
FIXED_RISK = 0.1309
FIXED_TOP = ["age", "spo2", "heart_rate"]
REQUEST = HookRequest(
    "deterioration",
    "patient-view",
    "h1",
    {"patientId": "p1", "userId": "Practitioner/d1"},
    base_url="https://cds.example.org",
)


@pytest.fixture(scope="module")
def service() -> DeteriorationService:
    return DeteriorationService.from_settings(load_settings()).load()


def record(resources, now=NOW) -> PatientRecord:
    return PatientRecord.from_resources(resources, now=now)


def test_fixed_patient_gets_a_fixed_score(service: DeteriorationService) -> None:
    a = service.model.assess(record(sick_patient()), explain=True)
    assert a.news2.total == 15 and a.news2.band == "high"
    assert a.news2.parts == {
        "respiratory_rate": 3,
        "spo2": 3,
        "systolic_bp": 3,
        "pulse": 2,
        "consciousness": 3,
        "temperature": 1,
    }
    assert a.news2.missing == ("oxygen",)
    assert a.risk == pytest.approx(FIXED_RISK, abs=1e-4)
    assert a.band == "critical"
    assert [c.name for c in a.contributions] == FIXED_TOP


def test_critical_card(service: DeteriorationService) -> None:
    (card,) = service.evaluate(REQUEST, record(sick_patient()))
    body = card.to_json()
    assert body["indicator"] == "critical" and card.kind == "deterioration:critical"
    assert body["summary"] == "NEWS2 15: emergency response (1 of 7 not charted)"
    assert card.score == pytest.approx(FIXED_RISK, abs=1e-4) and card.model_version.startswith("2.1.0+")
    detail = body["detail"]
    for text in (
        "| Respiration rate | 26/min",
        "| Systolic BP | 88 mmHg",
        "| Temperature | 38.6 °C",
        "| Consciousness | not fully alert (GCS 14)",
        f"Similar patients in the ICU database: {FIXED_RISK:.0%} in-hospital mortality",
        "validation AUROC 0.",
        "Findings that raise the ICU figure most",
        "most abnormal heart rate: 128/min at 2024-05-01 11:00 UTC",
        "Not charted in the last 24 h:** oxygen",
    ):
        assert text in detail
    (suggestion,) = body["suggestions"]
    assert suggestion["label"].startswith("Emergency response")
    sr = suggestion["actions"][0]["resource"]
    assert sr["priority"] == "stat"
    assert sr["resourceType"] == "ServiceRequest" and sr["status"] == "draft" and sr["intent"] == "proposal"
    assert sr["subject"] == {"reference": "Patient/p1"}
    assert sr["code"]["coding"][0]["system"] == "http://snomed.info/sct"
    assert body["links"] == [
        {
            "label": "Model card: how the ICU figure is calculated",
            "url": "https://cds.example.org/models/deterioration",
            "type": "absolute",
        }
    ]


def test_no_card_when_low(service: DeteriorationService) -> None:
    assert service.evaluate(REQUEST, record(well_patient())) == []
    assert service.evaluate(REQUEST, record([patient()])) == []  # nothing charted: nothing to say


def test_warning_for_a_single_parameter_of_three(service: DeteriorationService) -> None:
    resources = [*well_patient(), obs("9279-1", 26, "/min", 0.5)]
    (card,) = service.evaluate(REQUEST, record(resources))
    assert card.indicator == "warning" and card.kind == "deterioration:warning"
    assert "single NEWS2 parameter scoring 3 (respiratory rate)" in card.detail


def test_warning_for_news2_five(service: DeteriorationService) -> None:
    resources = [
        *well_patient(),
        obs("8867-4", 115, "/min", 0.5),
        obs("9279-1", 22, "/min", 0.5),
        obs("8310-5", 38.5, "Cel", 0.5),
    ]
    a = service.model.assess(record(resources))
    assert a.news2.total == 5 and a.band == "warning"


def test_stale_vitals_named(service: DeteriorationService) -> None:
    resources = sick_patient()
    resources[1] = obs("8867-4", 128, "/min", 14)
    (card,) = service.evaluate(REQUEST, record(resources))
    assert "Older than 12 h:** pulse" in card.detail


def test_scale_2_for_coded_hypercapnic_failure_or_setting(
    service: DeteriorationService, tmp_path: Path
) -> None:
    on_o2 = [*well_patient(), obs("59408-5", 97, "%", 0.5), obs("3151-8", 2, "L/min", 0.5)]
    assert service.model.assess(record(on_o2)).news2.scale == 1
    copd = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "J96.12"}]},
    }
    from cds.services.deterioration.model import spo2_scale

    rec = record([*on_o2, copd])
    assert spo2_scale(rec) == 2
    a = service.model.assess(rec, scale=spo2_scale(rec))
    assert a.news2.parts["spo2"] == 3 and a.news2.parts["oxygen"] == 2
    assert spo2_scale(record(on_o2), {"spo2_scale": 2}) == 2


def copy_models(tmp_path: Path) -> Path:
    dst = tmp_path / "models"
    shutil.copytree(MODELS / "deterioration", dst / "deterioration")
    shutil.copy(MODELS / "manifest.json", dst / "manifest.json")
    return dst


def test_shipped_model_matches_its_manifest() -> None:
    verify(MODELS, "deterioration")


def test_tampered_model_is_refused(tmp_path: Path) -> None:
    models = copy_models(tmp_path)
    meta = models / "deterioration" / "metadata.json"
    data = json.loads(meta.read_text())
    data["thresholds"]["critical"] = 0.99
    meta.write_text(json.dumps(data))
    with pytest.raises(ServiceLoadError, match=r"metadata.json does not match its SHA-256"):
        DeteriorationService.from_settings(load_settings(models_dir=models)).load()


def test_missing_manifest_or_entry_or_file_is_refused(tmp_path: Path) -> None:
    models = copy_models(tmp_path)
    (models / "deterioration" / "model.ubj").unlink()
    with pytest.raises(ServiceLoadError, match=r"model\.ubj is missing"):
        verify(models, "deterioration")
    with pytest.raises(ServiceLoadError, match="not listed"):
        verify(models, "other")
    (models / "manifest.json").unlink()
    with pytest.raises(ServiceLoadError, match="manifest not found"):
        DeteriorationService.from_settings(load_settings(models_dir=models)).load()


def test_manifest_update_keeps_other_models(tmp_path: Path) -> None:
    models = copy_models(tmp_path)
    (models / "other").mkdir()
    (models / "other" / "rules.json").write_text("{}")
    update(models, "other", ["rules.json"])
    verify(models, "other")
    verify(models, "deterioration")
    assert set(json.loads((models / "manifest.json").read_text())["models"]) == {"deterioration", "other"}


def test_bad_spo2_scale_setting_is_refused() -> None:
    with pytest.raises(ServiceLoadError, match="spo2_scale"):
        DeteriorationService.from_settings(
            load_settings(services={"deterioration": {"spo2_scale": 3}})
        ).load()


def test_missing_age_is_the_training_median_and_sex_is_no_input() -> None:
    """Exact in-process check of what the HTTP test shows rounded."""
    model = DeteriorationModel(MODELS / "deterioration")
    assert model.metadata["filled_when_missing"] == {"age": 66.0}
    assert "male" not in model.features
    charted = [r for r in sick_patient() if r["resourceType"] != "Patient"]

    def assess(pat: dict):
        return model.assess(PatientRecord.from_resources([pat, *charted], now=NOW))

    no_birth = assess({"resourceType": "Patient", "id": "p1", "gender": "male"})
    aged_66 = assess(patient(birth="1958-01-01"))  # 66 on 2024-05-01
    assert no_birth.filled == (("age", 66.0),) and aged_66.filled == ()
    assert no_birth.risk == pytest.approx(aged_66.risk, abs=1e-9)
    risks = {assess(patient(gender=g)).risk for g in ("male", "female", "other", "unknown")}
    assert len(risks) == 1
    assert assess({"resourceType": "Patient", "id": "p1"}).to_json()["filled"] == {"age": 66.0}
