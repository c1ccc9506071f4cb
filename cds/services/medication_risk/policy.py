"""How findings become one card per draft order (scoring.json): escalation by the patient's values,
which of two interacting drafts the guideline says to change, and the documentation label.

Data with citations, validated at load like the rest of the knowledge base.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cds.hooks.cards import SEVERITY_RANK
from cds.services.medication_risk import knowledge_files as kf
from cds.services.medication_risk.knowledge import (
    SEVERITIES,
    ConditionSet,
    Knowledge,
    KnowledgeError,
    compare,
    read_knowledge_file,
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
        doc = read_knowledge_file(kb.directory, "scoring.json", kf.ScoringFile)
        self.escalations = tuple(self._escalation(e) for e in doc.escalations.rules)
        change = doc.change_first
        self._cite(change.citation, "scoring.json: change_first")
        for c in change.order:
            if c not in kb.class_members:
                raise KnowledgeError(f"scoring.json: change_first names unknown class {c!r}")
        self.change_first: tuple[frozenset[str], ...] = tuple(kb.class_members[c] for c in change.order)
        cautions = []
        for caution in change.cautions:
            if caution.class_ not in kb.class_members:
                raise KnowledgeError(
                    f"scoring.json: change_first caution names unknown class {caution.class_!r}"
                )
            conditions = ConditionSet(tuple(caution.icd10_prefixes), frozenset(caution.snomed))
            citation = self._cite(caution.citation, "scoring.json: change_first caution")
            cautions.append((kb.class_members[caution.class_], conditions, caution.text, citation))
        self.cautions: tuple[tuple[frozenset[str], ConditionSet, str, tuple[str, ...]], ...] = tuple(cautions)
        self.doc_levels = tuple((level.label, tuple(level.prefixes)) for level in doc.documentation.levels)
        self.doc_default = doc.documentation.default

    def _cite(self, c: list[str], where: str) -> tuple[str, ...]:
        if not c or any(s not in self.kb.sources for s in c):
            raise KnowledgeError(f"{where}: citation missing or not in manifest.json")
        return tuple(c)

    def _escalation(self, e: kf.EscalationEntry) -> Escalation:
        where = f"scoring.json: escalation {e.id}"
        drugs: set[str] = set()
        for t in e.drugs:
            if t in self.kb.class_members:
                drugs |= self.kb.class_members[t]
            elif t in self.kb.ingredients:
                drugs.add(t)
            else:
                raise KnowledgeError(f"{where}: unknown class or ingredient {t!r}")
        if e.lab is not None and (e.lab not in self.kb.labs or e.op is None):
            raise KnowledgeError(f"{where}: unknown lab or operator")
        if not (e.lab and drugs) and not e.kinds:
            raise KnowledgeError(f"{where}: needs drugs and a lab, or kinds")
        return Escalation(
            e.id,
            frozenset(drugs),
            e.lab,
            e.op,
            float(e.value) if e.value is not None else None,
            frozenset(e.kinds),
            e.indicator,
            e.severity,
            e.reason,
            self._cite(e.citation, where),
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
