"""The reference engine: the official ELM of the measures run by the JavaScript CQL engine
(tests/cqlref/evaluate.js, cql-execution + cql-exec-fhir), in batches (one node process per call).

`reference_counts(ecqm_dir, mid, bundles, period)` gives, per patient id, the population counts the
Python engine's `MeasureResult.counts()` gives, so the two compare directly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from cds.services.care_gaps.measures.period import Period
from cds.services.care_gaps.measures.result import Criteria
from cds.services.care_gaps.measures.spec import load_spec

CQLREF = Path(__file__).resolve().parents[1] / "cqlref"
SCRIPT = CQLREF / "evaluate.js"


def available() -> str | None:
    """None when the reference engine can run, else why not."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (CQLREF / "node_modules" / "cql-execution").is_dir():
        return "tests/cqlref/node_modules missing (run: cd tests/cqlref && npm ci)"
    return None


@cache
def population_defines(ecqm_dir: Path, mid: str) -> list[dict[str, str]]:
    """Per group: population code -> CQL define name, from the official Measure resource."""
    library = load_spec(mid).library
    measure = json.loads((ecqm_dir / "measures" / f"{library}.json").read_text(encoding="utf-8"))
    return [
        {p["code"]["coding"][0]["code"]: p["criteria"]["expression"] for p in g["population"]}
        for g in measure["group"]
    ]


def run(
    ecqm_dir: Path, libraries: list[str], bundles: list[dict[str, Any]], period: Period
) -> dict[str, Any]:
    """The raw define results: {library: {patient id: {define: value}}}."""
    request = {
        "period": [period.start_date.isoformat(), period.end_date.isoformat()],
        "libraries": libraries,
        "bundles": bundles,
    }
    done = subprocess.run(
        ["node", str(SCRIPT), str(ecqm_dir)],
        input=json.dumps(request).encode(),
        capture_output=True,
        check=False,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"reference engine failed: {done.stderr.decode()[-2000:]}")
    return json.loads(done.stdout)


def counts_from_defines(ecqm_dir: Path, mid: str, defines: dict[str, Any]) -> list[dict[str, int]]:
    """The population counts from the define results, by the same hierarchy as the Python engine."""
    out = []
    for group in population_defines(ecqm_dir, mid):

        def val(code: str, group: dict[str, str] = group) -> bool:
            return defines.get(group[code]) is True

        exception = val("denominator-exception") if "denominator-exception" in group else None
        crit = Criteria(
            val("initial-population"),
            val("denominator"),
            val("denominator-exclusion") if "denominator-exclusion" in group else False,
            val("numerator"),
            exception,
        )
        out.append(crit.counts())
    return out


def reference_counts(
    ecqm_dir: Path, mid: str, bundles: list[dict[str, Any]], period: Period
) -> dict[str, list[dict[str, int]]]:
    """Patient id -> the reference engine's population counts for the measure."""
    library = load_spec(mid).library
    raw = run(ecqm_dir, [library], bundles, period)[library]
    return {pid: counts_from_defines(ecqm_dir, mid, defs) for pid, defs in raw.items()}


def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
