"""A measure's parameters as data: cds/knowledge/measures/<CMS id>.json.

Each file names the CQL library and version it follows, the value sets by CQL name and OID, the
direct codes, ages, lookbacks and thresholds, and the point-of-care content (guideline, orders).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cds.knowledge import KNOWLEDGE_DIR

MEASURES_DIR = KNOWLEDGE_DIR / "measures"


@dataclass(frozen=True)
class MeasureSpec:
    id: str
    title: str
    data: dict[str, Any]

    @property
    def library(self) -> str:
        return self.data["library"]

    @property
    def measure_url(self) -> str:
        return self.data["measure_url"]

    @property
    def groups(self) -> int:
        return int(self.data.get("groups", 1))

    def vs(self, name: str) -> str:
        """The OID of a value set, by its CQL name."""
        return self.data["valuesets"][name]

    def vss(self, names: list[str]) -> tuple[str, ...]:
        return tuple(self.vs(n) for n in names)

    def code(self, name: str) -> tuple[str, str]:
        """A direct-reference code (CQL `code "..."`) as (system, code)."""
        system, code = self.data["codes"][name]
        return system, code

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


@lru_cache(maxsize=32)
def load_spec(measure_id: str) -> MeasureSpec:
    path = MEASURES_DIR / f"{measure_id}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return MeasureSpec(id=data["id"], title=data["title"], data=data)
