"""The Python measure engine against the reference: the official ELM run by the JavaScript CQL
engine (cql-execution + cql-exec-fhir, tests/cqlref/evaluate.js).

1. The reference reproduces every visible official test case (so it is a fair judge).
2. On generated patients (tests/care_gaps/boundary_patients.py: official cases mutated onto and
   around every boundary), the two agree on every population of every measure. Patients are
   evaluated in batches: one node process per batch runs all eight libraries.

Size: per measure, CDS_REFERENCE_BATCHES batches (default 4) of CDS_REFERENCE_BATCH patients
(default 160) made from that measure's official cases and judged on that measure: 5,120 patients by
default. Known reference-engine defects: none remain (two ELM/model mismatches of cql-exec-fhir
with the QI-Core-typed ELM are patched in tests/cqlref/evaluate.js, documented there).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cds.fhir.record import PatientRecord
from cds.services.care_gaps.measures.engine import MEASURE_IDS, evaluate
from cds.services.care_gaps.measures.period import Period
from cds.services.care_gaps.measures.spec import load_spec
from tests.care_gaps import cql_reference as ref
from tests.care_gaps.boundary_patients import boundary_patient, official_cases, single_mutations
from tests.care_gaps.conftest import load_official_case
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.data
MP = Period.parse("2025-01-01", "2025-12-31")
BATCHES = int(os.environ.get("CDS_REFERENCE_BATCHES", "4"))
BATCH = int(os.environ.get("CDS_REFERENCE_BATCH", "160"))


@pytest.fixture(scope="module")
def reference(ecqm_dir: Path) -> Path:
    why = ref.available()
    if why:
        if os.environ.get("CDS_REQUIRE_DATA") == "1" or os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return ecqm_dir.resolve()


def _patient_id(resources: list[dict[str, Any]]) -> str:
    return next(r["id"] for r in resources if r.get("resourceType") == "Patient")


def _disagreements(
    ecqm_dir: Path, mid: str, patients: list[list[dict[str, Any]]], period: Period
) -> list[str]:
    library = load_spec(mid).library
    raw = ref.run(ecqm_dir, [library], [ref.bundle(p) for p in patients], period)[library]
    out = []
    for resources in patients:
        pid = _patient_id(resources)
        mine = evaluate(PatientRecord.from_resources(resources), period, [mid])[0].counts()
        theirs = ref.counts_from_defines(ecqm_dir, mid, raw[pid])
        if mine != theirs:
            out.append(f"{mid} {pid}: python {mine} reference {theirs}\n{json.dumps(resources)}")
    return out


def test_reference_reproduces_the_official_cases(reference: Path) -> None:
    mismatches = []
    for mid in MEASURE_IDS:
        folder = reference / "tests" / load_spec(mid).library
        bundles, expected = [], {}
        for case in sorted(folder.iterdir()):
            resources, report = load_official_case(case)
            bundles.append(ref.bundle(resources))
            expected[_patient_id(resources)] = [
                {p["code"]["coding"][0]["code"]: p["count"] for p in g["population"]} for g in report["group"]
            ]
        got = ref.reference_counts(reference, mid, bundles, MP)
        for pid, exp in expected.items():
            mine = [{k: v for k, v in g.items() if k in e} for g, e in zip(got[pid], exp, strict=True)]
            if mine != exp:
                mismatches.append(f"{mid} {pid}: expected {exp}, reference {got[pid]}")
    assert not mismatches, "\n".join(mismatches)


def _batches(mid: str) -> st.SearchStrategy[list[list[dict[str, Any]]]]:
    folder = SHARED_DATA / "ecqm"
    cases = official_cases(folder, load_spec(mid).library) if (folder / "tests").is_dir() else [[]]
    counter = iter(range(10**9))
    patients = [st.deferred(lambda: boundary_patient(cases, next(counter))) for _ in range(BATCH)]
    return st.builds(list, st.tuples(*patients))


@pytest.mark.timeout(900)
@pytest.mark.parametrize("mid", MEASURE_IDS)
def test_python_engine_agrees_with_the_reference(reference: Path, mid: str) -> None:
    @settings(
        max_examples=BATCHES,
        phases=[Phase.generate],  # one example is a whole batch: shrinking would re-run node per step
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(patients=_batches(mid))
    def check(patients: list[list[dict[str, Any]]]) -> None:
        found = _disagreements(reference, mid, patients, MP)
        assert not found, f"{len(found)} disagreements:\n" + "\n\n".join(found[:3])

    check()


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("mid", MEASURE_IDS)
def test_every_single_mutation_of_the_official_cases_agrees(reference: Path, mid: str) -> None:
    """Opt-in (CDS_REFERENCE_SWEEP=1; ~16,000 variants, about ten minutes on two cores): every
    one-step variant of every official case of the measure (boundary_patients.single_mutations)."""
    if os.environ.get("CDS_REFERENCE_SWEEP") != "1":
        pytest.skip("set CDS_REFERENCE_SWEEP=1 to run the exhaustive single-mutation sweep")
    patients = []
    for case in official_cases(reference, load_spec(mid).library):
        for variant in single_mutations(case):
            p = next(r for r in variant if r.get("resourceType") == "Patient")
            old, new = p["id"], f"v{len(patients)}"
            patients.append(json.loads(json.dumps(variant).replace(f"Patient/{old}", f"Patient/{new}")))
            next(r for r in patients[-1] if r.get("resourceType") == "Patient")["id"] = new
    found = _disagreements(reference, mid, patients, MP)
    assert not found, f"{len(found)} of {len(patients)} disagree:\n" + "\n\n".join(found[:3])
