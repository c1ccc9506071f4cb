"""A model file corrupted on disk (one byte flipped in a copy of models/): the manifest check refuses
to load it. /readyz answers 503 naming the hash mismatch, that service answers 503 (never a card
from a changed model), the other services keep answering 200."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from cds.hooks.discovery import Discovery
from cds.runtime.settings import REPO_ROOT, Settings
from tests.core.conftest import patient_view

MODEL = "deterioration"
MODEL_FILES = ("model.ubj", "linear.json")  # the two parts of the blended model


@pytest.fixture(params=MODEL_FILES)
def model_file(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def corrupted_models(tmp_path: Path, model_file: str) -> Path:
    src = REPO_ROOT / "models"
    if not (src / MODEL / model_file).is_file():
        pytest.fail(f"{src / MODEL / model_file} is missing: train or restore the shipped model first")
    dst = tmp_path / "models"
    shutil.copytree(src, dst)
    path = dst / MODEL / model_file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return dst


def minimal_call(hook: str) -> dict[str, Any]:
    body = patient_view("p1", {})
    body["hook"] = hook
    if hook == "order-sign":
        body["context"]["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": []}
    return body


def empty_prefetch(sid: str) -> dict[str, Any]:
    entry = Discovery.load(Settings().hooks_file).services[sid]
    return {
        k: {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}
        if t.startswith("Patient/")
        else {"resourceType": "Bundle", "type": "searchset", "entry": []}
        for k, t in entry.prefetch.items()
    }


def test_corrupted_model_is_refused_and_the_others_keep_working(
    make_caller: Any, corrupted_models: Path, model_file: str, caplog: Any
) -> None:
    caller = make_caller(models_dir=corrupted_models)
    ready = caller.client.get("/readyz")
    assert ready.status_code == 503
    reason = ready.json()["services"][MODEL]
    assert "does not match its SHA-256" in reason and model_file in reason
    logged = [r for r in caplog.records if getattr(r, "service", None) == MODEL and r.levelname == "ERROR"]
    assert logged and "SHA-256" in str(getattr(logged[0], "reason", ""))  # the log says why, at start

    discovery = Discovery.load(caller.settings.hooks_file)
    for sid, entry in discovery.services.items():
        body = minimal_call(entry.hook)
        body["prefetch"] = empty_prefetch(sid)
        resp = caller.post(f"/cds-services/{sid}", json=body)
        if sid == MODEL:
            assert resp.status_code == 503, resp.text
            assert "does not match its SHA-256" in resp.json()["issue"][0]["diagnostics"]
        else:
            assert resp.status_code == 200, (sid, resp.text)


def test_intact_copy_is_ready(make_caller: Any, tmp_path: Path) -> None:
    """The control: the same copy without the flipped byte loads (so the test above can fail)."""
    shutil.copytree(REPO_ROOT / "models", tmp_path / "intact")
    caller = make_caller(models_dir=tmp_path / "intact")
    ready = caller.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert MODEL in ready.json()["services"]
