"""How findings become one card per draft order (scoring.json): escalation by the patient's values,
which of two interacting drafts the guideline says to change, and the documentation label.

Data with citations, validated at load like the rest of the knowledge base.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cds.hooks.cards import SEVERITY_RANK
from cds.services.medication_risk.knowledge import (
    SEVERITIES,
    ConditionSet,
    Knowledge,
    KnowledgeError,
    compare,
)
from cds.services.medication_risk.patient import PatientFacts


@dataclass(frozen=True)
class Escalation:
    id: str
    drugs: frozenset[str]
    lab: str | None
    op: str | None
    value: float | None
    kinds: frozenset[str]
    indicator: str
    severity: str | None
    reason: str
    citation: tuple[str, ...]


class Policy:
    def __init__(self, kb: Knowledge) -> None:
        self.kb = kb
        try:
            self._load(json.loads((kb.directory / "scoring.json").read_text(encoding="utf-8")))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            if isinstance(e, KnowledgeError):
                raise
            raise KnowledgeError(f"scoring.json: malformed entry ({type(e).__name__}: {e})") from None

    def _load(self, doc: Mapping[str, Any]) -> None:
        kb = self.kb
        self.escalations = tuple(
            self._escalation(e) for e in (doc.get("escalations") or {}).get("rules") or []
        )
        change = doc.get("change_first") or {}
        self._cite(change.get("citation"), "scoring.json: change_first")
        order = change.get("order") or []
        for c in order:
            if c not in kb.class_members:
                raise KnowledgeError(f"scoring.json: change_first names unknown class {c!r}")
        self.change_first: tuple[frozenset[str], ...] = tuple(kb.class_members[c] for c in order)
        self.cautions: tuple[tuple[frozenset[str], ConditionSet, str, tuple[str, ...]], ...] = tuple(
            (
                kb.class_members[c["class"]],
                ConditionSet(tuple(c.get("icd10_prefixes") or ()), frozenset(c.get("snomed") or ())),
                str(c["text"]),
                self._cite(c.get("citation"), "scoring.json: change_first caution"),
            )
            for c in change.get("cautions") or []
        )
        docs = doc.get("documentation") or {}
        self.doc_levels = tuple(
            (str(level["label"]), tuple(level["prefixes"])) for level in docs.get("levels") or []
        )
        self.doc_default = str(docs.get("default", "Published evidence"))

    def _cite(self, c: Any, where: str) -> tuple[str, ...]:
        if not isinstance(c, list) or not c or any(s not in self.kb.sources for s in c):
            raise KnowledgeError(f"{where}: citation missing or not in manifest.json")
        return tuple(c)

    def _escalation(self, e: Mapping[str, Any]) -> Escalation:
        where = f"scoring.json: escalation {e.get('id')}"
        drugs: set[str] = set()
        for t in e.get("drugs") or []:
            if t in self.kb.class_members:
                drugs |= self.kb.class_members[t]
            elif t in self.kb.ingredients:
                drugs.add(t)
            else:
                raise KnowledgeError(f"{where}: unknown class or ingredient {t!r}")
        lab = e.get("lab")
        if lab is not None and (lab not in self.kb.labs or e.get("op") not in (">=", ">", "<=", "<")):
            raise KnowledgeError(f"{where}: unknown lab or operator")
        if e.get("indicator") not in SEVERITY_RANK:
            raise KnowledgeError(f"{where}: indicator must be info, warning or critical")
        if e.get("severity") is not None and e["severity"] not in SEVERITIES:
            raise KnowledgeError(f"{where}: unknown severity")
        if not (lab and drugs) and not e.get("kinds"):
            raise KnowledgeError(f"{where}: needs drugs and a lab, or kinds")
        return Escalation(
            str(e["id"]),
            frozenset(drugs),
            lab,
            e.get("op"),
            float(e["value"]) if e.get("value") is not None else None,
            frozenset(e.get("kinds") or ()),
            e["indicator"],
            e.get("severity"),
            str(e["reason"]),
            self._cite(e.get("citation"), where),
        )

    def escalate(self, findings: Iterable[Any], patient: PatientFacts) -> None:
        """Raise each finding's indicator (and severity) where an escalation rule applies."""
        for f in findings:
            if f.indicator is None:
                continue
            for e in self.escalations:
                if e.kinds and f.kind not in e.kinds:
                    continue
                if e.lab is not None:
                    value = patient.labs.get(e.lab)
                    if value is None or e.lab not in f.labs or not f.draft.ingredients & e.drugs:
                        continue
                    if not compare(value.value, e.op or ">=", e.value or 0.0):
                        continue
                if SEVERITY_RANK[e.indicator] > SEVERITY_RANK[f.indicator]:
                    f.indicator = e.indicator
                if e.severity and SEVERITIES.index(e.severity) > SEVERITIES.index(f.severity):
                    f.severity = e.severity
                f.escalated = e
                f.citation = tuple(dict.fromkeys((*f.citation, *e.citation)))

    def caution(self, findings: Iterable[Any], patient: PatientFacts) -> None:
        """Add the guideline's exception to an interaction finding on the drug it says to change."""
        for f in findings:
            if f.category != "ddi" or not f.others:
                continue
            for members, conditions, text, citation in self.cautions:
                if f.draft.ingredients & members and patient.has_condition(conditions):
                    f.facts.append(text)
                    f.citation = tuple(dict.fromkeys((*f.citation, *citation)))

    def owner(self, x: frozenset[str], y: frozenset[str]) -> int | None:
        """Which of two interacting drugs the guideline says to change: 0 (x), 1 (y), or None (no rule)."""
        for members in self.change_first:
            in_x, in_y = bool(x & members), bool(y & members)
            if in_x != in_y:
                return 0 if in_x else 1
        return None

    def documentation(self, citation: Iterable[str]) -> str:
        cites = tuple(citation)
        for label, prefixes in self.doc_levels:
            if any(c.startswith(prefixes) for c in cites):
                return label
        return self.doc_default
