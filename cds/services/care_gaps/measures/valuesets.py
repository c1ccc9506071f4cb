"""The eCQM value sets, shipped with the package and loaded once.

Built by scripts/extract_valuesets.py from the VSAC expansions of the measures' CQL. Lookups are
by OID; each value set is a `CodeSet` (system + code, systems canonicalised), which is how CQL's
`in "Value Set"` compares codes.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

from cds.fhir.terminology import CodeSet
from cds.knowledge import KNOWLEDGE_DIR

VALUESETS_FILE = KNOWLEDGE_DIR / "valuesets" / "ecqm-valuesets.json.gz"


class ValueSetError(LookupError):
    """A measure names a value set the package does not ship (re-run scripts/extract_valuesets.py)."""


class ValueSets:
    """OID -> CodeSet for every value set the measures use."""

    def __init__(self, sets: dict[str, CodeSet], source: str = "") -> None:
        self._sets = sets
        self.source = source
        # Every code string of every value set: lets the retrieve index skip irrelevant resources.
        self.code_strings = frozenset(code for cs in sets.values() for _, code in cs)

    @classmethod
    def load(cls, path: Path = VALUESETS_FILE) -> ValueSets:
        try:
            with gzip.open(path, "rb") as fh:
                doc = json.loads(fh.read())
        except (OSError, ValueError) as e:
            raise ValueSetError(f"cannot read the eCQM value sets {path}: {e}") from e
        sets = {
            oid: CodeSet(((s, c) for s, c in vs["codes"]), name=vs["name"])
            for oid, vs in doc["valuesets"].items()
        }
        return cls(sets, source=doc.get("source", ""))

    def __getitem__(self, oid: str) -> CodeSet:
        try:
            return self._sets[oid]
        except KeyError:
            raise ValueSetError(
                f"value set {oid} is not shipped; re-run scripts/extract_valuesets.py"
            ) from None

    def __contains__(self, oid: object) -> bool:
        return oid in self._sets

    def __len__(self) -> int:
        return len(self._sets)


@lru_cache(maxsize=1)
def default_valuesets() -> ValueSets:
    """The packaged value sets, read once per process."""
    return ValueSets.load()
