"""medication-risk in-process: knowledge-base load time and p50/p99 of evaluating a typical
order-sign call (10 active medications, 2 draft orders, labs with weight and height for creatinine
clearance, an allergy, conditions).

    python benchmarks/medication_risk.py [--n 5000]

Targets (issue 6): evaluate < 2 ms, knowledge base load < 1 s. "warm" reuses the per-concept
resolution cache as a running server does; "cold" clears it before every call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from cds.fhir.record import PatientRecord
from cds.hooks.request import HookRequest
from cds.runtime.settings import Settings
from cds.services.medication_risk.knowledge import load_knowledge
from cds.services.medication_risk.service import MedicationRiskService

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)

ACTIVE = [  # Synthea and CMS156/CMS506 product codes
    ("855332", "Warfarin Sodium 5 MG Oral Tablet"),
    ("316672", "Simvistatin 10 MG"),
    ("316049", "Hydrochlorothiazide 25 MG"),
    ("197361", "Amlodipine 5 MG Oral Tablet"),
    ("866414", "24 HR metoprolol succinate 100 MG Extended Release Oral Tablet [Toprol]"),
    ("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet"),
    ("966222", "Levothyroxine Sodium 0.075 MG Oral Tablet"),
    ("1049221", "Acetaminophen 325 MG / oxyCODONE Hydrochloride 5 MG Oral Tablet"),
    ("197604", "Digoxin 0.125 MG Oral Tablet"),
    ("745679", "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"),
]
DRAFTS = [
    ("310965", "Ibuprofen 200 MG Oral Tablet"),
    ("308048", "alprazolam 0.5 MG Oral Tablet"),
]


def _med(i: str, code: str, display: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": i,
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/bench"},
        "medicationCodeableConcept": {
            "coding": [{"system": RX, "code": code, "display": display}],
            "text": display,
        },
        "dosageInstruction": [{"text": "as directed"}],
    }


def _obs(i: str, loinc: str, value: float, unit: str | None, day: int) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if unit:
        q.update(unit=unit, code=unit, system="http://unitsofmeasure.org")
    return {
        "resourceType": "Observation",
        "id": i,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "effectiveDateTime": f"2026-11-{day:02d}T08:00:00Z",
        "valueQuantity": q,
    }


def build() -> tuple[HookRequest, PatientRecord]:
    labs = []
    for d in range(1, 25):  # a month of daily chemistry and coagulation
        labs += [
            _obs(f"cr{d}", "2160-0", 1.3 + d / 100, "mg/dL", d),
            _obs(f"k{d}", "2823-3", 4.4, "mmol/L", d),
            _obs(f"inr{d}", "6301-6", 2.4, None, d),
            _obs(f"plt{d}", "777-3", 210, "10*3/uL", d),
        ]
    labs += [_obs(f"wt{w}", "29463-7", 61.5 - w / 10, "kg", w) for w in (3, 10, 17, 24)]  # weekly weight
    labs.append(_obs("ht", "8302-2", 160, "cm", 2))  # height: Cockcroft-Gault and the obesity note
    prefetch = {
        "patient": {"resourceType": "Patient", "id": "bench", "birthDate": "1948-03-02", "gender": "female"},
        "medications": {
            "resourceType": "Bundle",
            "entry": [{"resource": _med(f"a{i}", c, d, "active")} for i, (c, d) in enumerate(ACTIVE)],
        },
        "labs": {"resourceType": "Bundle", "entry": [{"resource": r} for r in labs]},
        "allergies": {
            "resourceType": "Bundle",
            "entry": [
                {
                    "resource": {
                        "resourceType": "AllergyIntolerance",
                        "id": "al1",
                        "clinicalStatus": {"coding": [{"code": "active"}]},
                        "category": ["medication"],
                        "code": {"text": "Penicillin"},
                    }
                }
            ],
        },
        "conditions": {
            "resourceType": "Bundle",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Condition",
                        "id": "c1",
                        "clinicalStatus": {"coding": [{"code": "active"}]},
                        "code": {
                            "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I48.91"}]
                        },
                    }
                }
            ],
        },
    }
    record = PatientRecord.from_prefetch(prefetch, now=NOW, patient_id="bench")
    context = {
        "userId": "Practitioner/1",
        "patientId": "bench",
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": _med(f"d{i}", c, d, "draft")} for i, (c, d) in enumerate(DRAFTS)],
        },
    }
    return HookRequest("medication-risk", "order-sign", "bench", context, prefetch), record


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    args = ap.parse_args()

    loads = []
    for _ in range(5):
        t = time.perf_counter()
        kb = load_knowledge()
        loads.append(time.perf_counter() - t)
    t = time.perf_counter()
    service = MedicationRiskService.from_settings(Settings()).load()
    start = time.perf_counter() - t
    print(f"knowledge base {kb.version}: {kb.counts}")
    print(
        f"knowledge base load: median {statistics.median(loads) * 1000:.0f} ms, max {max(loads) * 1000:.0f} ms"
    )
    print(f"service start (load + indexes): {start * 1000:.0f} ms  (target < 1000 ms)")

    request, record = build()
    cards = service.evaluate(request, record)
    print(f"cards for the typical call: {[(c.indicator, c.kind) for c in cards]}")
    for _ in range(200):
        service.evaluate(request, record)

    for label, clear in (("warm", False), ("cold", True)):
        times = []
        for _ in range(args.n):
            if clear:
                service.resolver._cached.cache_clear()
            t = time.perf_counter()
            service.evaluate(request, record)
            times.append((time.perf_counter() - t) * 1000)
        print(
            f"evaluate ({label}, 10 active + 2 drafts, {len(record.of_type('Observation'))} labs): "
            f"p50 {_pct(times, 50):.3f} ms  p99 {_pct(times, 99):.3f} ms  (target < 2 ms, n={args.n})"
        )
    cpu = []
    for _ in range(args.n):
        t = time.process_time()
        service.evaluate(request, record)
        cpu.append((time.process_time() - t) * 1000)
    print(
        f"evaluate CPU time (immune to other processes on the machine): p50 {_pct(cpu, 50):.3f} ms  "
        f"p99 {_pct(cpu, 99):.3f} ms"
    )
    times = []
    for _ in range(args.n):
        t = time.perf_counter()
        service.evaluate(request, record)
        for c in service.evaluate(request, record):
            c.to_json()
        times.append((time.perf_counter() - t) * 1000 / 2)
    print(f"evaluate + card JSON: p50 {_pct(times, 50):.3f} ms  p99 {_pct(times, 99):.3f} ms")
    print(
        f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall-clock p99 includes waiting)"
    )


if __name__ == "__main__":
    main()
