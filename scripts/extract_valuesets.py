"""Extract the value sets the care-gap measures use into the package (re-runnable).

The CMS eCQM content (../shared/data/ecqm) is not available where the service runs, so the
expanded value sets the engine needs ship inside the package as one compact gzip'd JSON file:
OID -> {name, version, codes: [[system, code], ...]}. Which value sets: every `valueset` declared
in the CQL of the eight measures in cds/knowledge/measures/*.json and of the libraries they include
(recursively), plus the ones the measure files name directly.

Usage: python scripts/extract_valuesets.py [--ecqm-dir ../shared/data/ecqm] [--out PATH]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEASURES_DIR = REPO / "cds" / "knowledge" / "measures"
DEFAULT_OUT = REPO / "cds" / "knowledge" / "valuesets" / "ecqm-valuesets.json.gz"

_INCLUDE = re.compile(r"^\s*include\s+(\w+)\s+version", re.M)
_VALUESET = re.compile(r"^\s*valueset\s+\"([^\"]+)\"\s*:\s*'[^']*/ValueSet/([0-9.]+)'", re.M)


def cql_valuesets(cql_dir: Path, library: str, seen: set[str] | None = None) -> dict[str, str]:
    """OID -> value set name for a CQL library and everything it includes."""
    seen = seen if seen is not None else set()
    if library in seen:
        return {}
    seen.add(library)
    path = cql_dir / f"{library}.cql"
    if not path.is_file():
        raise SystemExit(f"CQL library not found: {path}")
    text = path.read_text(encoding="utf-8")
    out = {oid: name for name, oid in _VALUESET.findall(text)}
    for inc in _INCLUDE.findall(text):
        out.update(cql_valuesets(cql_dir, inc, seen))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ecqm-dir", type=Path, default=REPO.parent / "shared" / "data" / "ecqm")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    wanted: dict[str, str] = {}
    sources = []
    for spec_path in sorted(MEASURES_DIR.glob("*.json")):
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        wanted.update(cql_valuesets(args.ecqm_dir / "cql", spec["library"]))
        for name, oid in spec.get("valuesets", {}).items():
            wanted.setdefault(oid, name)
        sources.append(f"{spec['library']} {spec['library_version']}")

    valuesets: dict[str, dict] = {}
    missing = []
    for oid, name in sorted(wanted.items()):
        path = args.ecqm_dir / "valuesets" / f"valueset-{oid}.json"
        if not path.is_file():
            missing.append(f"{oid} ({name})")
            continue
        vs = json.loads(path.read_text(encoding="utf-8"))
        codes = sorted({(c["system"], c["code"]) for c in vs.get("expansion", {}).get("contains", [])})
        if not codes:
            missing.append(f"{oid} ({name}): no expansion")
            continue
        valuesets[oid] = {
            "name": vs.get("title") or name,
            "version": vs.get("version"),
            "codes": [list(c) for c in codes],
        }
    if missing:
        print("missing value sets:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1

    doc = {
        "source": "cqframework/ecqm-content-qicore-2024 (CC0); VSAC expansions",
        "measures": sources,
        "valuesets": valuesets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    # No name, mtime=0: the same input gives the same bytes, so re-running shows no spurious diff.
    with open(args.out, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as fh:
        fh.write(data)
    n = sum(len(v["codes"]) for v in valuesets.values())
    print(f"wrote {len(valuesets)} value sets ({n} codes) to {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
