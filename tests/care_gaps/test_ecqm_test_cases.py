"""Every official test case of the eight measures (../shared/data/ecqm/tests) matches the expected
population counts of its MeasureReport. A failure names the case, its description and the
populations that differ."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds.fhir.record import PatientRecord
from cds.services.care_gaps.measures.engine import MEASURE_IDS, evaluate
from cds.services.care_gaps.measures.period import Period
from cds.services.care_gaps.measures.spec import load_spec
from tests.care_gaps.conftest import load_official_case
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.data
DESCRIPTION_URL = "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-testCaseDescription"


def _cases() -> list[tuple[str, str]]:
    """(measure id, case folder name) for every stored case; collected without failing when absent."""
    root = SHARED_DATA / "ecqm" / "tests"
    out = []
    for mid in MEASURE_IDS:
        folder = root / load_spec(mid).library
        if folder.is_dir():
            out += [(mid, case.name) for case in sorted(folder.iterdir()) if case.is_dir()]
    return out or [("none", "none")]


CASES = _cases()


@pytest.mark.parametrize(("measure", "case"), CASES, ids=[f"{m}-{c[:8]}" for m, c in CASES])
def test_case_matches_expected_populations(ecqm_dir: Path, measure: str, case: str) -> None:
    if measure == "none":
        pytest.fail(f"no eCQM test cases found under {ecqm_dir / 'tests'}")
    resources, report = load_official_case(ecqm_dir / "tests" / load_spec(measure).library / case)
    expected = [
        {p["code"]["coding"][0]["code"]: p["count"] for p in g["population"]} for g in report["group"]
    ]
    description = next(
        (e["valueMarkdown"] for e in report.get("extension", []) if e["url"] == DESCRIPTION_URL), ""
    )
    period = Period.parse(report["period"]["start"], report["period"]["end"])
    got = evaluate(PatientRecord.from_resources(resources), period, [measure])[0].counts()
    assert len(got) == len(expected), f"{measure} {case}: {len(got)} groups, expected {len(expected)}"
    diffs = [
        f"group {i}: {code} expected {n}, got {g.get(code)}"
        for i, (e, g) in enumerate(zip(expected, got, strict=True), 1)
        for code, n in e.items()
        if g.get(code) != n
    ]
    assert not diffs, f"{measure} case {case} ({description!r}):\n  " + "\n  ".join(diffs)


def test_all_eight_measures_have_cases(ecqm_dir: Path) -> None:
    counts = {mid: sum(1 for m, _ in CASES if m == mid) for mid in MEASURE_IDS}
    assert all(n > 0 for n in counts.values()), counts
