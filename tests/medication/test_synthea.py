"""Against the Synthea sample charts (shared data): every MedicationRequest is readable, every
RxNorm product they use maps to the same ingredients as products.csv, and the service answers for
each whole chart without error."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from cds.fhir.record import PatientRecord
from cds.hooks.request import HookRequest
from tests.medication.conftest import draft

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def charts(synthea_dir: Path) -> list[list[dict]]:
    out = []
    for path in sorted(synthea_dir.glob("*.json.gz")):
        with gzip.open(path) as fh:
            bundle = json.loads(fh.read())
        out.append([e["resource"] for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)])
    assert out
    return out


def test_products_csv_covers_every_synthea_product(service, charts) -> None:
    """Each Synthea RxNorm product whose name contains a known ingredient is in products.csv with the
    same ingredients (so coded orders never depend on the name fallback)."""
    kb = service.kb
    checked = 0
    for resources in charts:
        for res in resources:
            if res["resourceType"] != "MedicationRequest":
                continue
            for coding in res.get("medicationCodeableConcept", {}).get("coding", []):
                names = set(kb.ingredient_names.find(coding.get("display", "")))
                if not names:
                    continue
                checked += 1
                code = coding["code"]
                assert kb.products.get(code, {code} if code in kb.ingredients else None) == names, coding
    assert checked > 50


@pytest.mark.parametrize(
    "order",
    [
        ("310965", "Ibuprofen 200 MG Oral Tablet"),
        ("308048", "alprazolam 0.5 MG Oral Tablet"),
        ("21212", "clarithromycin"),
    ],
)
def test_service_answers_for_every_chart(service, charts, order) -> None:
    for resources in charts:
        record = PatientRecord.from_resources(resources)
        pid = record.patient_id or "x"
        d = draft("d1", *order)
        d["subject"] = {"reference": f"Patient/{pid}"}
        context = {
            "patientId": pid,
            "userId": "Practitioner/1",
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": d}]},
        }
        cards = service.evaluate(HookRequest("medication-risk", "order-sign", "h", context), record)
        assert len(cards) <= service.kb.scoring.max_cards_per_order
        for c in cards:
            c.to_json()
