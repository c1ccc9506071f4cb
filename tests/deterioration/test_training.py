"""Training on the shared eICU demo: reproducible, matching the shipped metadata, same quality on Dask."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cds.settings import REPO_ROOT

SHIPPED = REPO_ROOT / "models" / "deterioration"
pytestmark = [pytest.mark.data, pytest.mark.slow]


@pytest.fixture(scope="module")
def shipped() -> dict:
    return json.loads((SHIPPED / "metadata.json").read_text())


def test_eicu_stay_round_trips_through_fhir_and_the_feature_extractor(eicu_dir: Path) -> None:
    """The FHIR conversion and the serving extractor give back APACHE's own worst values."""
    from cds.features.deterioration import extract
    from cds.record import PatientRecord
    from cds.training import eicu

    stay = next(s for s in eicu.stays(eicu_dir) if s.stay_id == "144815")
    assert (stay.hospital_id, stay.died) == ("56", 0)
    obs = [r for r in stay.resources if r["resourceType"] == "Observation"]
    for o in obs:
        assert o["code"]["coding"][0]["system"] == "http://loinc.org"
        for q in [o.get("valueQuantity")] + [c["valueQuantity"] for c in o.get("component", [])]:
            if q is not None:
                assert q["system"] == "http://unitsofmeasure.org" and q["value"] != -1
    f = extract(PatientRecord.from_resources(stay.resources, now=eicu.SCORING_TIME), eicu.SCORING_TIME).values
    # apacheapsvar row of stay 144815: hr 131, rr 6, temp 36.7, Na 141, creat 0.63, GCS 4/5/6, pH not measured
    assert (f["heart_rate"], f["respiratory_rate"], f["temperature"], f["sodium"]) == (131, 6, 36.7, 141)
    assert f["creatinine"] == pytest.approx(0.63)
    assert (f["gcs_total"], f["gcs_motor"], f["age"], f["male"]) == (15, 6, 34, 0)
    assert math.isnan(f["ph"]) and math.isnan(f["ventilated"])


def test_training_reproduces_the_shipped_model(eicu_dir: Path, tmp_path: Path, shipped: dict) -> None:
    from cds.training.deterioration import train

    ev = shipped["evaluation"]
    meta = train(
        eicu_dir, tmp_path / "deterioration", n_boot=ev["bootstrap"], seed=ev["seed"], progress=lambda _: None
    )
    assert (
        meta["evaluation"]["all_stays"]["model"]["auroc"]
        == shipped["evaluation"]["all_stays"]["model"]["auroc"]
    )
    assert meta["evaluation"] == shipped["evaluation"]
    assert meta["thresholds"] == shipped["thresholds"]
    assert meta["calibration"] == shipped["calibration"]
    assert meta["training_data"]["sha256"] == shipped["training_data"]["sha256"]
    assert meta["model_sha256"] == shipped["model_sha256"]  # byte-identical model from the same data
    for name in ("model.ubj", "metadata.json", "card.md", "roc.png", "calibration.png"):
        assert (tmp_path / "deterioration" / name).is_file()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["models"]["deterioration"]["files"]) >= {"model.ubj", "metadata.json", "card.md"}


def test_dask_engine_on_two_workers_matches_local_quality(
    eicu_dir: Path, tmp_path: Path, shipped: dict
) -> None:
    from cds.training.deterioration import train

    meta = train(
        eicu_dir, tmp_path / "deterioration", engine="dask", n_workers=2, n_boot=20, progress=lambda _: None
    )
    assert meta["xgboost"]["engine"] == "dask"
    local = shipped["evaluation"]["all_stays"]["model"]["auroc"]
    assert abs(meta["evaluation"]["all_stays"]["model"]["auroc"] - local) <= 0.01


def test_shipped_metadata_is_data_not_code(shipped: dict) -> None:
    assert shipped["calibration"]["method"] in ("platt", "isotonic")
    assert all(f["unit"] for f in shipped["features"])
    assert 0 < shipped["thresholds"]["warning"] < shipped["thresholds"]["critical"] < 1
    card = (SHIPPED / "card.md").read_text()
    for text in (
        "research and development",
        "validated locally",
        "never a diagnosis",
        "in-hospital death",
        "proxy",
        "ODbL",
        "Pollard",
        "PhysioNet",
    ):
        assert text in card
