"""Build cds/knowledge/medications/products.csv from the shared data (run by hand; not at run time).

The RxNorm product codes (SCD, SBD, GPCK, BPCK) that EHRs send are taken from two real sources:
the MedicationRequests of the Synthea R4 sample patients and the RxNorm expansions of the CMS eCQM
value sets (`ecqm/valuesets`: CMS156 high-risk medications in older adults, CMS506 opioids and
benzodiazepines, ...; `ecqm/valuesets-medications`: 61 further VSAC medication value sets, CC0).
Each product's ingredients are read from its RxNorm name with the same name matcher the service
uses, against the ingredients in ingredients.csv; products with no known ingredient are left out.

    python scripts/extract_medication_products.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cds.fhir.terminology import RXNORM, canonical_system  # noqa: E402
from cds.services.medication_risk.names import NameIndex  # noqa: E402

KB = REPO / "cds" / "knowledge" / "medications"


def _tty(name: str) -> str:
    """RxNorm term type read from the normalised name: packs, branded (has [Brand]) or clinical."""
    branded = "[" in name
    if " Pack" in name or name.endswith("Pack"):
        return "BPCK" if branded else "GPCK"
    return "SBD" if branded else "SCD"


def _synthea(shared: Path) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for path in sorted((shared / "synthea-r4").glob("*.json.gz")):
        with gzip.open(path) as fh:
            bundle = json.loads(fh.read())
        for entry in bundle.get("entry", []):
            res = entry.get("resource", {})
            if res.get("resourceType") not in ("MedicationRequest", "Medication", "MedicationStatement"):
                continue
            concept = res.get("medicationCodeableConcept") or res.get("code") or {}
            for c in concept.get("coding", []):
                if canonical_system(c.get("system")) == RXNORM and c.get("code"):
                    out.setdefault(c["code"], (c.get("display") or "", "synthea"))
    return out


def _valuesets(shared: Path) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    paths = [
        p
        for d in ("valuesets", "valuesets-medications")
        for p in sorted((shared / "ecqm" / d).glob("*.json"))
    ]
    for path in paths:
        vs = json.loads(path.read_text())
        oid = path.stem.removeprefix("valueset-")
        for c in vs.get("expansion", {}).get("contains", []):
            if canonical_system(c.get("system")) == RXNORM and c.get("code"):
                out.setdefault(c["code"], (c.get("display") or "", f"vsac:{oid}"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args(argv)

    with open(KB / "ingredients.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ingredient_codes = {r["rxcui"] for r in rows}
    names: list[tuple[str, str]] = []
    for r in rows:
        names.append((r["name"], r["rxcui"]))
        names += [(s, r["rxcui"]) for s in r["synonyms"].split("|") if s]
    index = NameIndex(names)

    found = _synthea(args.shared)
    for code, value in _valuesets(args.shared).items():
        found.setdefault(code, value)

    kept = 0
    with open(KB / "products.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["rxcui", "tty", "name", "ingredients", "source"])
        for code in sorted(found, key=int):
            name, source = found[code]
            if code in ingredient_codes or not name:
                continue  # ingredient-level codes are resolved directly
            ings = index.find(name)
            if not ings:
                continue
            w.writerow([code, _tty(name), name, "|".join(ings), source])
            kept += 1
    print(f"{kept} products written from {len(found)} RxNorm codes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
