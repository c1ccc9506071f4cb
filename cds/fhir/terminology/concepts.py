"""The concepts the service reads from Observations, built from the tables the models and rules use.

Nothing here lists a concept by hand: the deterioration features (`knowledge/deterioration_features.json`),
the medication labs (`knowledge/medications/labs.json`) and the care-gap measures' Observation value sets
(`knowledge/measures/*.json` + the VSAC expansions) are read, and codes that any two of them share join
one concept. LOINC's own attributes of each code (specimen, property, unit) come from `loinc.json`.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cds.fhir.terminology import LOINC
from cds.knowledge import KNOWLEDGE_DIR as KNOWLEDGE

_HERE = Path(__file__).resolve().parent

# Which measure value sets and direct codes the care-gap measures retrieve as Observations
# (read from cds/services/care_gaps/measures/cms*.py: `ctx.retrieve("Observation", SPEC.vs(name))` and `has_code`).
MEASURE_OBSERVATIONS: dict[str, tuple[str, ...]] = {
    "CMS122": ("HbA1c Laboratory Test",),
    "CMS124": ("HPV Test", "Pap Test"),
    "CMS130": ("Fecal Occult Blood Test (FOBT)", "sDNA FIT Test"),
    "CMS165": ("Blood pressure panel", "Systolic blood pressure", "Diastolic blood pressure"),
    "CMS347": ("LDL Cholesterol",),
    "CMS951": ("Estimated Glomerular Filtration Rate", "Urine Albumin Creatinine Ratio"),
}


@dataclass(frozen=True)
class LoincCode:
    """One LOINC code with its parts (LOINC Users' Guide, section 2) and an example UCUM unit."""

    code: str
    name: str = ""
    short: str = ""
    component: str = ""
    property: str = ""
    time: str = ""
    system: str = ""
    scale: str = ""
    method: str = ""
    unit: str = ""

    def is_known(self) -> bool:
        """Whether LOINC's attributes are on file (only such codes can be mapping targets)."""
        return bool(self.name)


@dataclass(frozen=True)
class Concept:
    """What one or more tables read: its codes (all that count), label, category and unit."""

    id: str
    label: str
    category: str  # vital-signs | laboratory
    unit: str | None
    codes: tuple[LoincCode, ...]
    used_by: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "label": self.label,
            "category": self.category,
            "usedBy": list(self.used_by),
            "codes": [
                {"system": LOINC, "code": c.code}
                | (
                    {
                        "display": c.name,
                        "specimen": c.system,
                        "property": c.property,
                        "timing": c.time,
                        "unit": c.unit or None,
                    }
                    if c.is_known()
                    else {"attributes": "not on file (not a mapping target)"}
                )
                for c in self.codes
            ],
        }
        if self.unit:
            out["unit"] = self.unit
        return out


@lru_cache(maxsize=1)
def loinc_table() -> dict[str, Any]:
    return json.loads((_HERE / "loinc.json").read_text())


def loinc_code(code: str) -> LoincCode:
    info = loinc_table()["codes"].get(code)
    return LoincCode(code=code, **info) if info else LoincCode(code=code)


@dataclass
class _Source:
    used_by: str
    label: str
    category: str
    unit: str | None
    codes: list[str]


def _deterioration() -> list[_Source]:
    doc = json.loads((KNOWLEDGE / "deterioration_features.json").read_text())
    out = []
    for f in doc["features"]:
        cat = "vital-signs" if f["category"] == "vital" else "laboratory"
        out.append(_Source(f"deterioration:{f['name']}", f["label"], cat, f.get("unit"), list(f["codes"])))
    listed = {c for f in doc["features"] for c in f["codes"]}
    cons = doc["consciousness"]
    for name, code in cons["gcs_components"].items():
        if name == "note" or code in listed:
            continue
        out.append(_Source(f"deterioration:{name}", name.replace("_", " "), "vital-signs", "{score}", [code]))
    out.append(
        _Source(
            "deterioration:consciousness",
            "level of consciousness (ACVPU)",
            "vital-signs",
            None,
            cons["codes"],
        )
    )
    return out


def _medication() -> list[_Source]:
    doc = json.loads((KNOWLEDGE / "medications" / "labs.json").read_text())
    return [
        _Source(f"medication-risk:{lid}", lab["name"], "laboratory", lab.get("unit"), list(lab["loinc"]))
        for lid, lab in doc["labs"].items()
    ]


def _measures() -> list[_Source]:
    with gzip.open(KNOWLEDGE / "valuesets" / "ecqm-valuesets.json.gz") as fh:
        valuesets = json.loads(fh.read())["valuesets"]
    out = []
    for mid, names in MEASURE_OBSERVATIONS.items():
        spec = json.loads((KNOWLEDGE / "measures" / f"{mid}.json").read_text())
        for name in names:
            oid = (spec.get("valuesets") or {}).get(name)
            if oid is not None:
                codes = [c for s, c in valuesets[oid]["codes"] if s == LOINC]
            else:
                system, code = spec["codes"][name]
                codes = [code] if system == LOINC else []
            cat = "vital-signs" if "blood pressure" in name.lower() else "laboratory"
            out.append(_Source(f"care-gaps:{mid}:{name}", name, cat, None, codes))
    return out


@lru_cache(maxsize=1)
def concepts() -> tuple[Concept, ...]:
    """Every concept a model or rule reads from Observations; sources sharing a code are one concept."""
    sources = _deterioration() + _medication() + _measures()
    groups: list[list[_Source]] = []
    for src in sources:
        joined = [g for g in groups if any(set(src.codes) & set(s.codes) for s in g)]
        merged = [src]
        for g in joined:
            merged = g + merged
            groups.remove(g)
        groups.append(merged)
    out = []
    for g in sorted(groups, key=lambda g: sources.index(g[0])):
        first = g[0]
        codes: list[str] = []
        for s in g:
            codes += [c for c in s.codes if c not in codes]
        known = [c for c in codes if loinc_code(c).is_known()]
        unit = next((s.unit for s in g if s.unit), None) or (loinc_code(known[0]).unit if known else None)
        out.append(
            Concept(
                id=first.used_by.split(":")[-1].lower().replace(" ", "-").replace("(", "").replace(")", ""),
                label=first.label,
                category=first.category,
                unit=unit or None,
                codes=tuple(loinc_code(c) for c in codes),
                used_by=tuple(dict.fromkeys(s.used_by for s in g)),
            )
        )
    return tuple(out)


def concept_of(code: str) -> Concept | None:
    """The concept a LOINC code counts for."""
    return next((c for c in concepts() if any(x.code == code for x in c.codes)), None)
