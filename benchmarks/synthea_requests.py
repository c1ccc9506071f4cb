"""Realistic hook requests for benchmarks: the prefetch a real EHR would send for Synthea patients
(../shared/data/synthea-r4), built by evaluating each service's prefetch templates over the
patient's resources."""

from __future__ import annotations

import gzip
import uuid
from pathlib import Path
from typing import Any

import orjson

from cds.fhir.record import resources_of
from cds.hooks.discovery import Discovery
from cds.hooks.prefetch import render
from cds.runtime.settings import REPO_ROOT
from cds.sandbox.fhirsearch import search

SYNTHEA = REPO_ROOT.parent / "shared" / "data" / "synthea-r4"

# A draft order that interacts with common chronic medications (NSAID): realistic order-sign work.
IBUPROFEN = {
    "resourceType": "MedicationRequest",
    "id": "draft-ibuprofen",
    "status": "draft",
    "intent": "order",
    "medicationCodeableConcept": {
        "coding": [
            {
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "197806",
                "display": "Ibuprofen 600 MG Oral Tablet",
            }
        ]
    },
}


def _as_served(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The bundle's resources as a FHIR server would serve them: `urn:uuid:` references between
    entries rewritten to `Type/id`."""
    targets = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if isinstance(e.get("fullUrl"), str) and "id" in e.get("resource", {})
    }

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (targets.get(v, v) if k == "reference" and isinstance(v, str) else fix(v))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return [fix(r) for r in resources_of(bundle)]


def load_patients(limit: int = 8, data_dir: Path = SYNTHEA) -> list[list[dict[str, Any]]]:
    """The resources of the largest `limit` Synthea bundles (largest = the realistic worst case)."""
    files = sorted(data_dir.glob("*.json.gz"), key=lambda p: p.stat().st_size, reverse=True)[:limit]
    if not files:
        raise SystemExit(f"no Synthea bundles in {data_dir}")
    return [_as_served(orjson.loads(gzip.decompress(f.read_bytes()))) for f in files]


def hook_request(discovery: Discovery, service_id: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    entry = discovery.services[service_id]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    context: dict[str, Any] = {"userId": "Practitioner/bench", "patientId": patient["id"]}
    if entry.hook == "order-sign":
        draft = dict(IBUPROFEN, subject={"reference": f"Patient/{patient['id']}"})
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": draft}],
        }
    prefetch = {}
    for key, template in entry.prefetch.items():
        answer = search(resources, render(template, context))
        if answer is not None:
            prefetch[key] = answer
    return {"hook": entry.hook, "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch}
