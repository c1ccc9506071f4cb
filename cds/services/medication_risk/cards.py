"""Findings -> one CDS Hooks card per draft order, with one-click suggestions.

A draft order's findings (interaction, duplicate, renal, dose, lab, Beers, allergy) are merged into
one card whose indicator is that of its worst finding after escalation; `source.topic` is the worst
finding's kind, and the other kinds are listed in the detail. Suggestions are complete FHIR resources
the EHR can apply: swap the drug or change the dose of the draft (one `update` of the same
MedicationRequest), remove the draft, or order a monitoring lab. A dose is applied in one click only
when the rule settled the indication and the product exists; otherwise the card offers a review.
An order the service cannot check gets an info card saying so.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from cds.fhir.terminology import LOINC, RXNORM, UCUM
from cds.hooks.cards import SEVERITY_RANK, Action, Card, Source, Suggestion, override_reason, truncate_summary
from cds.services.medication_risk.dosing import DoseChange
from cds.services.medication_risk.knowledge import SEVERITIES, Alternative, Dosage, Knowledge
from cds.services.medication_risk.patient import PatientFacts
from cds.services.medication_risk.policy import Policy
from cds.services.medication_risk.resolve import Med
from cds.services.medication_risk.rules import Finding, cap
from cds.services.medication_risk.score import OrderScore

BENEFIT = override_reason("benefit-outweighs-risk", "Benefit outweighs risk")
MONITOR = override_reason("will-monitor", "Will monitor as recommended")
TOLERATING_COMBINATION = override_reason("already-tolerating", "Patient already tolerating this combination")
TOLERATING_DRUG = override_reason("already-tolerating", "Patient already tolerating this drug at this dose")
LIST_OUTDATED = override_reason("medication-list-outdated", "Other medication is no longer taken")
DOSE_FITS = override_reason("dose-fits-indication", "Dose is right for this patient's indication")
ALLERGY_OVERRIDES = (
    BENEFIT,
    override_reason("already-tolerating", "Patient has tolerated this drug before"),
    override_reason("allergy-not-confirmed", "Allergy ruled out or de-labelled"),
)
SEVERITY_LABEL = {
    "contraindicated": "Contraindicated: avoid",
    "major": "Major",
    "moderate": "Moderate",
    "minor": "Minor",
}
_SENTENCE = re.compile(r"(?:(?<=[.!?])|(?<=[.!?]\*\*))\s+(?=[A-Z_*])")
_ALREADY = re.compile(
    r"(?:stop|hold) (?:it |the drug )?if (QTc|potassium|INR) (?:exceeds|rises above|is above|goes above) "
    r"(\d+(?:\.\d+)?)( ms)?",
    re.IGNORECASE,
)
_MARKUP = str.maketrans("", "", "*_")
_LAB_OF = {"qtc": "qtc", "potassium": "potassium", "inr": "inr"}


def dosage_json(d: Dosage, route: Any = None) -> dict[str, Any]:
    """A FHIR Dosage from a knowledge-base dosage."""
    out: dict[str, Any] = {"text": d.text}
    if d.frequency and d.period and d.period_unit:
        out["timing"] = {
            "repeat": {"frequency": d.frequency, "period": d.period, "periodUnit": d.period_unit}
        }
    if d.as_needed:
        out["asNeededBoolean"] = True
    if route:
        out["route"] = copy.deepcopy(route)
    if d.dose is not None and d.dose_unit:
        q: dict[str, Any] = {"value": d.dose, "unit": d.dose_unit}
        if d.dose_code:
            q["system"] = UCUM
            q["code"] = d.dose_code
        out["doseAndRate"] = [{"doseQuantity": q}]
    return out


def _subject(draft: Mapping[str, Any], patient_id: str) -> dict[str, Any]:
    subj = draft.get("subject")
    return (
        dict(subj)
        if isinstance(subj, dict) and subj.get("reference")
        else {"reference": f"Patient/{patient_id}"}
    )


def _context_fields(draft: Mapping[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(draft[k]) for k in ("encounter", "requester") if isinstance(draft.get(k), dict)}


def _route(draft: Mapping[str, Any]) -> Any:
    first = (draft.get("dosageInstruction") or [None])[0]
    return copy.deepcopy(first.get("route")) if isinstance(first, dict) and first.get("route") else None


def _with_medication(
    draft: Mapping[str, Any], rxcui: str | None, display: str | None, dosage: dict[str, Any]
) -> dict[str, Any]:
    """The same draft MedicationRequest (same id) with a new medication and dosage: one update."""
    updated = copy.deepcopy(dict(draft))
    if rxcui and display:
        updated.pop("medicationReference", None)
        contained = updated.pop("contained", None)
        kept = [
            c
            for c in (contained if isinstance(contained, list) else [])
            if not (isinstance(c, dict) and c.get("resourceType") == "Medication")
        ]
        if kept:
            updated["contained"] = kept
        updated["medicationCodeableConcept"] = {
            "coding": [{"system": RXNORM, "code": rxcui, "display": display}],
            "text": display,
        }
    updated["dosageInstruction"] = [dosage]
    return updated


def dedupe_sentences(lines: list[str]) -> list[str]:
    """Drop a sentence already said earlier in the detail (e.g. a problem repeated as its consequence)."""
    seen: set[str] = set()
    out = []
    for line in lines:
        if not line.strip() or line.startswith(("- [", "**Sources", "_Medication")):
            out.append(line)
            continue
        kept = []
        for sentence in _SENTENCE.split(line):
            norm = sentence.translate(_MARKUP).strip().lstrip("- ").rstrip(".").lower()
            if norm and norm in seen:
                continue
            seen.add(norm)
            kept.append(sentence)
        text = " ".join(kept)
        if text.strip(" -*_:"):
            out.append(text)
    return out


class CardBuilder:
    def __init__(self, kb: Knowledge, policy: Policy) -> None:
        self.kb = kb
        self.policy = policy

    # --- suggestions ---------------------------------------------------------------------------
    @staticmethod
    def _delete(med: Med) -> Action | None:
        rid = med.resource_id
        if rid is None:
            return None
        return Action(type="delete", description=f"Remove the draft order for {med.label}", resource_id=rid)

    def _lab_order(self, order_id: str, med: Med, patient_id: str) -> Suggestion:
        order = self.kb.lab_orders[order_id]
        resource = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "order",
            "code": {
                "coding": [{"system": LOINC, "code": order.loinc, "display": order.display}],
                "text": order.display,
            },
            "subject": _subject(med.resource, patient_id),
            **_context_fields(med.resource),
        }
        return Suggestion(
            label=f"Order {order.display}",
            actions=(Action(type="create", description=f"Order {order.display}", resource=resource),),
        )

    def _swap(self, draft: Med, alt: Alternative) -> Suggestion | None:
        """Replace the drug of the draft: one update of the same MedicationRequest, only when the
        alternative is an orderable product (an RxNorm SCD/SBD in the products table); an ingredient
        code is offered as a suggestion to review, without an action."""
        if draft.resource_id is None:
            return None
        if alt.rxcui not in self.kb.products:
            return Suggestion(
                label=truncate_summary(f"{alt.label}: choose the product (not changed automatically)", 120)
            )
        updated = _with_medication(draft.resource, alt.rxcui, alt.display, dosage_json(alt.dosage))
        return Suggestion(
            label=alt.label,
            actions=(
                Action(type="update", description=f"Change the draft to {alt.dosage.text}", resource=updated),
            ),
            is_recommended=True,
        )

    @staticmethod
    def _dose(draft: Med, change: DoseChange) -> Suggestion | None:
        if draft.resource_id is None:
            return None
        route = change.route or _route(draft.resource)
        product = change.product
        updated = _with_medication(
            draft.resource,
            product.rxcui if product else None,
            product.display if product else None,
            dosage_json(change.dosage, route),
        )
        what = f"{change.dosage.text}" + (f" ({product.display})" if product else "")
        return Suggestion(
            label=truncate_summary(f"Change to label dose: {what}", 120),
            actions=(Action(type="update", description=f"Label dose: {what}", resource=updated),),
            is_recommended=True,
        )

    def suggestions(self, findings: list[Finding], patient_id: str) -> list[Suggestion]:
        """The order's suggestions, worst finding first; at most one is recommended."""
        draft = findings[0].draft
        out: list[Suggestion] = []
        for f in findings:
            if f.alternative:
                s = self._swap(draft, f.alternative)
                if s:
                    out.append(s)
            if f.change:
                s = self._dose(draft, f.change)
                if s:
                    out.append(s)
        reviews = [f for f in findings if f.review]
        if reviews:
            out.append(Suggestion(label="Review the dose against the label (not changed automatically)"))
        delete = self._delete(draft)
        if delete is not None:
            remove_first = (
                findings[0].avoid
                or findings[0].severity == "contraindicated"
                or findings[0].indicator == "critical"
            )
            out.append(
                Suggestion(
                    label=f"Remove the draft order for {draft.label}",
                    actions=(delete,),
                    is_recommended=True if remove_first and not any(s.is_recommended for s in out) else None,
                )
            )
        monitors = list(dict.fromkeys(m for f in findings for m in f.monitor if m in self.kb.lab_orders))
        out += [self._lab_order(m, draft, patient_id) for m in monitors[:2]]
        seen: set[str] = set()
        unique = []
        recommended = False
        for s in out:
            if s.label in seen:
                continue
            seen.add(s.label)
            if s.is_recommended and recommended:
                s = Suggestion(label=s.label, actions=s.actions, uuid=s.uuid)
            recommended = recommended or bool(s.is_recommended)
            unique.append(s)
        return unique

    def overrides(self, worst: Finding, patient: PatientFacts) -> tuple[Any, ...]:
        """Override reasons that fit: 'already tolerating' only for a drug (and partner) already taken."""
        draft = worst.draft
        continuing = bool(draft.ingredients) and draft.ingredients <= patient.active_ingredients
        if worst.category == "allergy":
            return ALLERGY_OVERRIDES
        if worst.category in ("ddi", "duplicate"):
            out = [BENEFIT]
            if continuing and worst.others and not any(o.draft for o in worst.others):
                out.append(TOLERATING_COMBINATION)
            out.append(MONITOR)
            if any(not o.draft for o in worst.others):
                out.append(LIST_OUTDATED)
            return tuple(out)
        out = [BENEFIT]
        if continuing:
            out.append(TOLERATING_DRUG)
        out.append(MONITOR)
        if worst.category in ("renal", "dose"):
            out.append(DOSE_FITS)
        return tuple(out)

    # --- text ------------------------------------------------------------------------------------
    def _citations(self, ids: list[str]) -> list[str]:
        out = []
        for sid in ids:
            src = self.kb.sources[sid]
            out.append(f"- {src.citation} [{src.label}]({src.url})")
        return out

    def _label(self, f: Finding) -> str:
        return f"{SEVERITY_LABEL[f.severity]} · Documentation: {self.policy.documentation(f.citation)}"

    def _already(self, text: str, patient: PatientFacts) -> str:
        """'stop if QTc exceeds 500' when QTc is already 512: say it is already above instead."""

        def repl(m: re.Match[str]) -> str:
            lab_id = _LAB_OF[m.group(1).lower()]
            value = patient.labs.get(lab_id)
            threshold = float(m.group(2))
            if value is None or value.value <= threshold:
                return m.group(0)
            lab = self.kb.labs[lab_id]
            shown = f"{value.value:.{lab.decimals}f}" + (f" {lab.display_unit}" if lab.display_unit else "")
            return (
                f"{lab.name} is already {shown} (above {m.group(2)}{m.group(3) or ''}): do not add the drug"
            )

        return _ALREADY.sub(repl, text)

    def detail(self, findings: list[Finding], order: OrderScore, patient: PatientFacts) -> str:
        worst, rest = findings[0], findings[1:]
        lines = [
            f"**{self._label(worst)}**",
            "",
            f"**{cap(worst.problem)}.** {worst.consequence}",
            "",
            f"**Why:** {worst.mechanism}",
        ]
        if worst.others:
            names = "; ".join(f"{o.label}{' (also being ordered)' if o.draft else ''}" for o in worst.others)
            lines += ["", f"**Interacting medication:** {names}"]
        facts = list(dict.fromkeys(worst.facts))
        if worst.escalated is not None:
            facts.append(f"Raised to {worst.indicator}: {worst.escalated.reason}.")
        if facts:
            lines += ["", "**This patient:**"] + [f"- {x}" for x in facts]
        lines += ["", f"**What to do:** {self._already(worst.management, patient)}"]
        if worst.non_interruptive:
            lines += [
                "",
                "_ONC lists this interaction as not needing an interruptive alert (Phansalkar 2013)._",
            ]
        if rest:
            lines += ["", "**Also on this order:**"]
            for x in rest:
                extra = "; ".join(dict.fromkeys(f.rstrip(".") for f in x.facts))
                esc = f" Raised to {x.indicator}: {x.escalated.reason}." if x.escalated is not None else ""
                lines.append(
                    f"- **{x.title}** ({x.indicator}; {self._label(x)}). "
                    + (f"{extra}. " if extra else "")
                    + self._already(x.management, patient)
                    + esc
                )
            lines += ["", "Findings on this order: " + ", ".join(f"`{f.kind}`" for f in findings) + "."]
        sources = list(dict.fromkeys(c for f in findings for c in f.citation))
        lines = dedupe_sentences(lines)
        lines += [
            "",
            "**Sources:**",
            *self._citations(sources),
            "",
            f"_Medication knowledge base {self.kb.version} ({self.kb.date}). Decision support for clinicians; "
            "not a substitute for clinical judgement._",
        ]
        return "\n".join(lines)

    @staticmethod
    def rank(f: Finding) -> tuple[int, int, int]:
        """Most urgent first: indicator, then the rule's own severity (contraindicated first), then score."""
        return (SEVERITY_RANK[f.indicator or "info"], SEVERITIES.index(f.severity), f.score)

    def order_card(
        self, findings: list[Finding], order: OrderScore, patient: PatientFacts, patient_id: str
    ) -> Card | None:
        """One card for a draft order, or None when none of its findings reaches a card."""
        shown = sorted((f for f in findings if f.indicator), key=self.rank, reverse=True)
        if not shown:
            return None
        worst = shown[0]
        src = self.kb.sources[worst.citation[0]]
        summary = worst.title if len(shown) == 1 else f"{worst.title} (+{len(shown) - 1} more)"
        return Card(
            summary=truncate_summary(summary),
            indicator=worst.indicator,  # type: ignore[arg-type]
            source=Source(label=src.label, url=src.url),
            kind=worst.kind,
            detail=self.detail(shown, order, patient),
            suggestions=tuple(self.suggestions(shown, patient_id)),
            override_reasons=self.overrides(worst, patient),
            score=float(order.score),
            model_version=self.kb.version,
        )

    def cards(
        self,
        per_order: list[tuple[list[Finding], OrderScore]],
        patient: PatientFacts,
        patient_id: str,
    ) -> list[Card]:
        """One card per draft order that has something to say, most urgent first."""
        ranked: list[tuple[tuple[int, int, int], Card]] = []
        for findings, order in per_order:
            card = self.order_card(findings, order, patient, patient_id)
            if card is not None:
                worst = max((f for f in findings if f.indicator), key=self.rank)
                ranked.append((self.rank(worst), card))
        ranked.sort(key=lambda rc: rc[0], reverse=True)
        return [c for _, c in ranked]

    def not_checked(self, kind: str, summary: str, detail: str) -> Card:
        """An info card for an order the service could not check: silence is not an all-clear."""
        return Card(
            summary=truncate_summary(summary),
            indicator="info",
            source=Source(label=f"Medication risk knowledge base {self.kb.version}"),
            kind=f"not-checked:{kind}",
            detail=detail,
            model_version=self.kb.version,
        )
