"""Reviewed ConceptMaps in service: local Observation codes read as the LOINC codes they map to.

Only `equivalent` (or `equal`) targets are used: `inexact` ones await a person's review. A map applies
to codes of its group's `source` system alone. Loading checks every map and stops start-up with a
message naming the file and the element when one is malformed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from cds.fhir.terminology import _ALIASES, LOINC, SNOMED, canonical_system
from cds.fhir.value import dicts

_LOINC_CODE = re.compile(r"^[0-9]{1,7}-[0-9]$")
_USED = frozenset({"equivalent", "equal"})
_EQUIVALENCES = frozenset(
    {
        "relatedto",
        "equivalent",
        "equal",
        "wider",
        "subsumes",
        "narrower",
        "specializes",
        "inexact",
        "unmatched",
        "disjoint",
    }
)  # R4 ConceptMapEquivalence
MAX_SYSTEM_LABELS = 50  # bound on the metric's label values; further systems count as "other"
STANDARD_SYSTEMS = frozenset({LOINC, SNOMED})  # codes the service reads as they are


class MapError(ValueError):
    """A ConceptMap cannot be used; the message names the file and the place."""


class TerminologyMaps:
    """(local system, local code) -> LOINC code, from reviewed ConceptMaps."""

    def __init__(self, pairs: Mapping[tuple[str, str], str] | None = None) -> None:
        self.pairs: dict[tuple[str, str], str] = dict(pairs or {})
        self.systems = frozenset(s for s, _ in self.pairs)
        self.by_target: dict[str, list[tuple[str, str]]] = {}
        for pair, target in sorted(self.pairs.items()):
            self.by_target.setdefault(target, []).append(pair)

    def __bool__(self) -> bool:
        return bool(self.pairs)

    @classmethod
    def load(cls, paths: Sequence[str | Path]) -> TerminologyMaps:
        pairs: dict[tuple[str, str], str] = {}
        for path in paths:
            for key, target in read_concept_map(Path(path)).items():
                if pairs.get(key, target) != target:
                    raise MapError(
                        f"{path}: {key[0]}|{key[1]} maps to {target}, but an earlier map says {pairs[key]}"
                    )
                pairs[key] = target
        return cls(pairs)

    def _extra(self, concept: Any) -> list[dict[str, str]]:
        """LOINC codings to add to a CodeableConcept whose local codings are mapped."""
        if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
            return []
        have = set()
        add: list[str] = []
        for c in concept["coding"]:
            if not isinstance(c, dict) or not isinstance(c.get("code"), str):
                continue
            system = canonical_system(c.get("system") if isinstance(c.get("system"), str) else None)
            have.add((system, c["code"]))
            target = self.pairs.get((system, c["code"]))
            if target is not None and target not in add:
                add.append(target)
        return [{"system": LOINC, "code": t} for t in add if (LOINC, t) not in have]

    def translate(self, obs: dict[str, Any]) -> dict[str, Any]:
        """The Observation with the mapped LOINC coding added to its code (and its components')."""
        extra = self._extra(obs.get("code"))
        comps = obs.get("component")
        new_comps: list[Any] | None = None
        if isinstance(comps, list):
            changed = False
            translated = []
            for comp in comps:
                more = self._extra(comp.get("code")) if isinstance(comp, dict) else []
                if more:
                    changed = True
                    comp = {**comp, "code": {**comp["code"], "coding": [*comp["code"]["coding"], *more]}}
                translated.append(comp)
            if changed:
                new_comps = translated
        if not extra and new_comps is None:
            return obs
        out = dict(obs)  # never mutate the caller's resource
        if extra:
            out["code"] = {**obs["code"], "coding": [*obs["code"]["coding"], *extra]}
        if new_comps is not None:
            out["component"] = new_comps
        return out

    def widen_template(self, template: str) -> str:
        """A prefetch/fallback query that filters Observations by LOINC code, with the mapped local codes added."""
        if not self.pairs or not template.startswith("Observation?"):
            return template
        base, _, query = template.partition("?")
        params = parse_qsl(query, keep_blank_values=True)
        out = []
        for name, value in params:
            if name == "code":
                tokens = value.split(",")
                added = [
                    f"{s}|{c}"
                    for tok in tokens
                    if tok.startswith(LOINC + "|")
                    for s, c in self.by_target.get(tok.split("|", 1)[1], [])
                ]
                value = ",".join(tokens + [a for a in added if a not in tokens])
            out.append((name, value))
        # keep {{tokens}} and the "|" and "," FHIR search syntax readable
        return base + "?" + urlencode(out, safe="{}|,/:")


def _fail(path: Path, where: str, what: str) -> MapError:
    return MapError(f"terminology map {path}: {where}: {what}")


def read_concept_map(path: Path) -> dict[tuple[str, str], str]:
    """The `equivalent` (system, code) -> LOINC pairs of one FHIR R4 ConceptMap file, checked."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MapError(f"terminology map not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MapError(f"terminology map {path} is not readable JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("resourceType") != "ConceptMap":
        raise _fail(path, "resourceType", "must be ConceptMap")
    groups = doc.get("group")
    if not isinstance(groups, list) or not groups:
        raise _fail(path, "group", "must be a non-empty list")
    pairs: dict[tuple[str, str], str] = {}
    for gi, g in enumerate(groups):
        where = f"group[{gi}]"
        if not isinstance(g, dict) or not isinstance(g.get("source"), str) or not g["source"]:
            raise _fail(path, where, "needs a source system (the local code system's URI)")
        if canonical_system(g.get("target")) != LOINC:
            raise _fail(path, where, f"target must be {LOINC}, not {g.get('target')!r}")
        source = canonical_system(g["source"])
        if source == LOINC:
            raise _fail(path, where, "source is LOINC itself")
        elements = g.get("element")
        if not isinstance(elements, list):
            raise _fail(path, where, "element must be a list")
        for ei, el in enumerate(elements):
            w = f"{where}.element[{ei}]"
            if not isinstance(el, dict) or not isinstance(el.get("code"), str) or not el["code"]:
                raise _fail(path, w, "needs a code")
            targets = el.get("target") or []
            if not isinstance(targets, list) or len(targets) > 1:
                raise _fail(path, w, "target must be a list of at most one")
            for t in targets:
                if not isinstance(t, dict) or t.get("equivalence") not in _EQUIVALENCES:
                    raise _fail(
                        path,
                        w,
                        f"equivalence {t.get('equivalence') if isinstance(t, dict) else t!r} is not an R4 ConceptMapEquivalence",
                    )
                if t["equivalence"] not in _USED:
                    continue
                code = t.get("code")
                if not isinstance(code, str) or not _LOINC_CODE.match(code):
                    raise _fail(path, w, f"target code {code!r} is not a LOINC code")
                key = (source, el["code"])
                if pairs.get(key, code) != code:
                    raise _fail(path, w, f"{el['code']} maps to both {pairs[key]} and {code}")
                pairs[key] = code
    return pairs


# Every spelling whose canonical system is standard: one set lookup instead of a call per
# Observation (canonical_system(s) is standard exactly when s is in this set, for a string s).
_STANDARD_SPELLINGS = frozenset(
    s for s in (*STANDARD_SYSTEMS, *_ALIASES) if canonical_system(s) in STANDARD_SYSTEMS
)


def unmapped_systems(observations: Iterable[Mapping[str, Any]]) -> list[str]:
    """For each Observation with no LOINC code (itself or a component), the local systems it uses.

    One entry per (observation, system): what the integration team needs to see is which local
    code systems still reach the service unmapped, never which codes or values. Runs on every hook
    over every Observation, so the common case (the first coding is standard) is checked first.
    """
    out: list[str] = []
    for obs in observations:
        concept = obs.get("code")
        if isinstance(concept, dict):
            coding = concept.get("coding")
            if isinstance(coding, list) and coding:
                first = coding[0]
                if isinstance(first, dict) and isinstance(first.get("code"), str):
                    system = first.get("system")
                    if type(system) is str and system in _STANDARD_SPELLINGS:
                        continue
        systems = _local_systems(obs)
        if systems:
            out += sorted(systems)
    return out


def _local_systems(obs: Mapping[str, Any]) -> set[str]:
    """The code systems of an Observation's codes (itself and its components); empty when one of
    them is standard (LOINC, or a SNOMED CT finding: read as it is)."""
    parts = [obs.get("code")] + [c.get("code") for c in dicts(obs.get("component"))]
    systems: set[str] = set()
    for concept in parts:
        if not isinstance(concept, dict):
            continue
        for c in dicts(concept.get("coding")):
            if isinstance(c.get("code"), str):
                s = canonical_system(c.get("system") if isinstance(c.get("system"), str) else None)
                if s in STANDARD_SYSTEMS:
                    return set()
                systems.add(s or "none")
    return systems
