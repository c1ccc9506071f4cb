"""Deterioration scoring speed in process: p50/p99 per patient (ms).

Run: python benchmarks/deterioration_score.py [--n 2000]
Measures the model alone (inplace_predict + calibration on one row), the explanation
(pred_contribs), and the whole hook path (feature extraction from a 24 h ICU chart of ~400
Observations, NEWS2, risk, card) as `DeteriorationService.evaluate` runs it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from cds.fhir.record import PatientRecord
from cds.hooks.request import HookRequest
from cds.runtime.settings import load_settings
from cds.services.deterioration.service import DeteriorationService

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
VITALS = [
    ("8867-4", "/min", 70, 140),
    ("9279-1", "/min", 12, 30),
    ("59408-5", "%", 86, 99),
    ("8310-5", "Cel", 36, 39.5),
    ("3150-0", "%", 21, 60),
]
LABS = [
    ("2951-2", "mmol/L", 128, 150),
    ("2160-0", "umol/L", 60, 300),
    ("6690-2", "10*3/uL", 3, 25),
    ("2345-7", "mg/dL", 70, 300),
    ("2524-7", "mmol/L", 0.5, 6),
    ("4544-3", "%", 22, 45),
]


def icu_chart(seed: int = 0) -> list[dict]:
    """An ICU patient's last 24 h: hourly vitals and BP panels, 4-hourly labs, plus older noise."""
    rng = random.Random(seed)
    res: list[dict] = [{"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-02-03"}]
    n = 0

    def obs(code: str, value: float, unit: str, hours: float, **extra: object) -> dict:
        nonlocal n
        n += 1
        o = {
            "resourceType": "Observation",
            "id": f"o{n}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": (NOW - timedelta(hours=hours)).isoformat(),
        }
        if value is not None:
            o["valueQuantity"] = {
                "value": round(value, 1),
                "unit": unit,
                "system": "http://unitsofmeasure.org",
                "code": unit,
            }
        o.update(extra)
        return o

    for h in range(48):
        for code, unit, lo, hi in VITALS:
            res.append(obs(code, rng.uniform(lo, hi), unit, h + 0.1))
        comp = [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": c}]},
                "valueQuantity": {
                    "value": rng.uniform(lo, hi),
                    "unit": "mm[Hg]",
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            }
            for c, lo, hi in (("8480-6", 80, 160), ("8462-4", 40, 90))
        ]
        res.append(obs("85354-9", None, "", h + 0.2, component=comp))
        if h % 4 == 0:
            for code, unit, lo, hi in LABS:
                res.append(obs(code, rng.uniform(lo, hi), unit, h + 0.3))
        if h < 24:  # a noradrenaline infusion charted hourly
            res.append(
                {
                    "resourceType": "MedicationAdministration",
                    "id": f"ma{h}",
                    "status": "in-progress",
                    "medicationCodeableConcept": {
                        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7512"}]
                    },
                    "subject": {"reference": "Patient/p1"},
                    "effectiveDateTime": (NOW - timedelta(hours=h + 0.4)).isoformat(),
                }
            )
    for i, code in enumerate(("I50.9", "J44.9", "A41.9", "N18.4", "E11.9", "I10")):  # coded problems
        res.append(
            {
                "resourceType": "Condition",
                "id": f"c{i}",
                "clinicalStatus": {"coding": [{"code": "active"}]},
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]},
                "subject": {"reference": "Patient/p1"},
            }
        )
    return res


def bench(name: str, fn: Callable[[], object], n: int) -> None:
    """Wall-clock p50/p99, and p99 of thread CPU time (what is left when other processes preempt us)."""
    for _ in range(min(200, n)):
        fn()
    wall, cpu = [], []
    for _ in range(n):
        t, c = time.perf_counter_ns(), time.thread_time_ns()
        fn()
        cpu.append((time.thread_time_ns() - c) / 1e6)
        wall.append((time.perf_counter_ns() - t) / 1e6)
    wall.sort()
    cpu.sort()
    p99 = int(0.99 * n) - 1
    print(
        f"{name:<54} p50 {statistics.median(wall):6.3f} ms  p99 {wall[p99]:6.3f} ms  "
        f"(CPU p50 {statistics.median(cpu):6.3f}, p99 {cpu[p99]:6.3f} ms)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    n = ap.parse_args().n
    service = DeteriorationService.from_settings(load_settings()).load()
    model = service.model
    chart = icu_chart()
    record = PatientRecord.from_resources(chart, now=NOW)
    request = HookRequest(
        "deterioration",
        "patient-view",
        "h",
        {"patientId": "p1", "userId": "Practitioner/1"},
        base_url="https://cds.example.org",
    )
    from cds.services.deterioration.features import extract

    row = extract(record).vector(model.features)
    print(
        f"chart: {len(chart) - 1} resources over 48 h ({sum(1 for _ in record.observations())} valid Observations, "
        f"Conditions and MedicationAdministrations); "
        f"model {model.version}, {model.booster.num_boosted_rounds()} trees"
    )
    bench("model risk, one row (inplace_predict + calibration)", lambda: model.risk(row), n)
    bench("explanation, one row (pred_contribs)", lambda: model.contributions(row), n)
    bench("feature extraction (24 h window)", lambda: extract(record), n)
    bench("assess: features + NEWS2 + risk (no card)", lambda: model.assess(record, explain=False), n)
    bench(
        "evaluate: whole hook path incl. explanation and card", lambda: service.evaluate(request, record), n
    )
    bench(
        "PatientRecord.from_resources (indexing the prefetch)",
        lambda: PatientRecord.from_resources(chart, now=NOW),
        n,
    )


if __name__ == "__main__":
    main()
