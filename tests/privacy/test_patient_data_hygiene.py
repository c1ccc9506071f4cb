"""No name, identifier, birth date, resource id or observation value of a real-shaped patient
appears in logs, metrics, or anything the service writes to disk."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from benchmarks.synthea_requests import hook_request, load_patients
from cds.hooks.discovery import Discovery
from cds.runtime.settings import REPO_ROOT
from tests.core.conftest import Caller
from tests.shipped_services import SERVICE_IDS

# Log fields that are operational numbers (timings, statuses, counts), never clinical values.
NUMERIC_FIELDS = {"ms", "status", "count", "cards", "pages", "elapsed_ms", "rows"}


def sensitive_strings(resources: list[dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for r in resources:
        if isinstance(r.get("id"), str) and len(r["id"]) >= 6:
            out.add(r["id"])
        if r["resourceType"] == "Patient":
            out.add(r["birthDate"])
            for name in r.get("name", []):
                out.update(n for n in [name.get("family"), *name.get("given", [])] if n and len(n) >= 3)
            for ident in r.get("identifier", []):
                if isinstance(ident.get("value"), str) and len(ident["value"]) >= 4:
                    out.add(ident["value"])
        q = r.get("valueQuantity")
        if isinstance(q, dict) and isinstance(q.get("value"), float):
            text = repr(q["value"])
            if len(text) >= 5:  # distinctive decimals like 132.61, not "7.0"
                out.add(text)
    return out


def scan(text: str, secrets: set[str]) -> list[str]:
    return sorted(s for s in secrets if s in text)


@pytest.mark.data
def test_no_patient_data_in_logs_metrics_or_disk(
    synthea_dir: Path, make_caller: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caller: Caller = make_caller()
    discovery = Discovery.load(REPO_ROOT / "hooks.json")
    patients = load_patients(6, synthea_dir)
    secrets: set[str] = set()
    caplog.set_level(logging.DEBUG)
    for resources in patients:
        secrets |= sensitive_strings(resources)
        for sid in SERVICE_IDS:
            body = hook_request(discovery, sid, resources)
            resp = caller.post(f"/cds-services/{sid}", json=body)
            assert resp.status_code == 200, resp.text
            feedback = [
                {
                    "card": c["uuid"],
                    "outcome": "overridden",
                    "overrideReason": {"reason": c["overrideReasons"][0]} if c.get("overrideReasons") else {},
                    "outcomeTimestamp": "2026-11-25T10:00:00Z",
                }
                for c in resp.json()["cards"]
            ]
            for f in feedback:
                if not f["overrideReason"]:
                    del f["overrideReason"]
            if feedback:
                fb = caller.post(f"/cds-services/{sid}/feedback", json={"feedback": feedback})
                assert fb.status_code == 200, fb.text
    assert len(secrets) > 50  # the check has teeth: many distinct sensitive strings

    leaks: dict[str, list[str]] = {}
    for rec in caplog.records:
        fields = {k: v for k, v in rec.__dict__.items() if k not in NUMERIC_FIELDS}
        text = rec.getMessage() + " " + orjson.dumps(fields, default=str).decode()
        found = scan(text, secrets)
        if found:
            leaks[f"log {rec.name}: {rec.getMessage()[:60]}"] = found
    metrics = caller.client.get("/metrics").text
    if scan(metrics, secrets):
        leaks["metrics"] = scan(metrics, secrets)
    # Give background writers a moment to flush, then read every file the service wrote.
    caller.close()
    for path in caller.settings.data_dir.rglob("*"):
        if path.is_file():
            found = scan(path.read_bytes().decode("latin-1"), secrets)
            if found:
                leaks[f"file {path.name}"] = found
    assert not leaks, leaks
