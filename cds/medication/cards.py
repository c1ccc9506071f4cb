"""Findings -> CDS Hooks cards with one-click suggestions.

One card per problem; at most `max_cards_per_order` cards per draft order, the rest folded into the
last one, so an order never produces a wall of cards. Suggestions are complete FHIR resources the
EHR can apply: delete the draft, replace it (delete + create), change it to a renal dose (update),
or order a monitoring lab (create ServiceRequest).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from cds.cards import SEVERITY_RANK, Action, Card, Source, Suggestion, override_reason, truncate_summary
from cds.medication.knowledge import SEVERITIES, Dosage, Knowledge
from cds.medication.resolve import Med
from cds.medication.rules import Finding, cap
from cds.medication.score import OrderScore
from cds.terminology import LOINC, RXNORM, UCUM

OVERRIDES = (  # interactions and duplicate therapy
    override_reason("benefit-outweighs-risk", "Benefit outweighs risk"),
    override_reason("already-tolerating", "Patient already tolerating this combination"),
    override_reason("will-monitor", "Will monitor as recommended"),
    override_reason("medication-list-outdated", "Other medication is no longer taken"),
)
DRUG_OVERRIDES = (  # renal dosing, older adults, labs
    override_reason("benefit-outweighs-risk", "Benefit outweighs risk"),
    override_reason("already-tolerating", "Patient already tolerating this drug at this dose"),
    override_reason("will-monitor", "Will monitor as recommended"),
)
ALLERGY_OVERRIDES = (
    override_reason("benefit-outweighs-risk", "Benefit outweighs risk"),
    override_reason("already-tolerating", "Patient has tolerated this drug before"),
    override_reason("allergy-not-confirmed", "Allergy ruled out or de-labelled"),
)


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
        out["route"] = route
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


class CardBuilder:
    def __init__(self, kb: Knowledge) -> None:
        self.kb = kb

    # --- suggestions ---------------------------------------------------------------------------
    def _delete(self, med: Med) -> Action | None:
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

    def suggestions(self, f: Finding, patient_id: str) -> list[Suggestion]:
        out: list[Suggestion] = []
        delete = self._delete(f.draft)
        if f.alternative and delete is not None:
            alt = f.alternative
            new = {
                "resourceType": "MedicationRequest",
                "status": "draft",
                "intent": "order",
                "medicationCodeableConcept": {
                    "coding": [{"system": RXNORM, "code": alt.rxcui, "display": alt.display}],
                    "text": alt.display,
                },
                "subject": _subject(f.draft.resource, patient_id),
                **_context_fields(f.draft.resource),
                "dosageInstruction": [dosage_json(alt.dosage)],
            }
            out.append(
                Suggestion(
                    label=alt.label,
                    actions=(
                        delete,
                        Action(type="create", description=f"Order {alt.dosage.text}", resource=new),
                    ),
                    is_recommended=True,
                )
            )
        if f.renal_dose and f.draft.resource_id:
            updated = copy.deepcopy(dict(f.draft.resource))
            updated["dosageInstruction"] = [dosage_json(f.renal_dose, _route(f.draft.resource))]
            out.append(
                Suggestion(
                    label=f"Change to renal dose: {f.renal_dose.text}",
                    actions=(
                        Action(
                            type="update", description=f"Renal dose: {f.renal_dose.text}", resource=updated
                        ),
                    ),
                    is_recommended=True if not out else None,
                )
            )
        if delete is not None:
            out.append(
                Suggestion(
                    label=f"Remove the draft order for {f.draft.label}",
                    actions=(delete,),
                    is_recommended=True if not out and f.severity == "contraindicated" else None,
                )
            )
        out += [self._lab_order(m, f.draft, patient_id) for m in f.monitor[:2] if m in self.kb.lab_orders]
        return out

    # --- text ------------------------------------------------------------------------------------
    def _citations(self, ids: tuple[str, ...]) -> str:
        parts = []
        for sid in ids:
            src = self.kb.sources[sid]
            parts.append(f"- {src.citation} [{src.label}]({src.url})")
        return "\n".join(parts)

    def detail(self, f: Finding, order: OrderScore, folded: list[Finding]) -> str:
        s = self.kb.scoring
        lines = [f"**{cap(f.problem)}.** {f.consequence}", "", f"**Why:** {f.mechanism}"]
        if f.others:
            names = "; ".join(f"{o.label}{' (also being ordered)' if o.draft else ''}" for o in f.others)
            lines += ["", f"**Interacting medication:** {names}"]
        if f.facts:
            lines += ["", "**This patient:**"] + [f"- {x}" for x in f.facts]
        lines += ["", f"**What to do:** {f.management}"]
        if f.non_interruptive:
            lines += [
                "",
                "_ONC lists this interaction as not needing an interruptive alert (Phansalkar 2013)._",
            ]
        if folded:
            lines += ["", "**Other issues with this order:**"]
            lines += [f"- {x.title} ({x.indicator}): {x.management}" for x in folded]
        lines += [
            "",
            f"Risk score: {f.score}/100 for this problem, {order.score}/100 for the order "
            f"(info >= {s.info}, warning >= {s.warning}, critical >= {s.critical}).",
            "",
            "**Sources:**",
            self._citations(f.citation),
            "",
            f"_Medication knowledge base {self.kb.version} ({self.kb.date}). Decision support for clinicians; "
            "not a substitute for clinical judgement._",
        ]
        return "\n".join(lines)

    @staticmethod
    def _rank(f: Finding) -> tuple[int, int, int]:
        """Most urgent first: indicator, then the rule's own severity (contraindicated first), then score."""
        return (SEVERITY_RANK[f.indicator or "info"], SEVERITIES.index(f.severity), f.score)

    def card(
        self,
        f: Finding,
        order: OrderScore,
        patient_id: str,
        folded: list[Finding] | None = None,
        more: bool = False,
    ) -> Card:
        folded = folded or []
        indicator = f.indicator or "info"
        for x in folded:
            if x.indicator and SEVERITY_RANK[x.indicator] > SEVERITY_RANK[indicator]:
                indicator = x.indicator
        src = self.kb.sources[f.citation[0]]
        summary = f"{f.title} (+{len(folded)} more)" if more and folded else f.title
        return Card(
            summary=truncate_summary(summary),
            indicator=indicator,  # type: ignore[arg-type]
            source=Source(label=src.label, url=src.url),
            kind=f.kind,
            detail=self.detail(f, order, folded),
            suggestions=tuple(self.suggestions(f, patient_id)),
            override_reasons={"allergy": ALLERGY_OVERRIDES, "ddi": OVERRIDES, "duplicate": OVERRIDES}.get(
                f.category, DRUG_OVERRIDES
            ),
            score=float(f.score),
            model_version=self.kb.version,
        )

    def cards(self, per_order: list[tuple[list[Finding], OrderScore]], patient_id: str) -> list[Card]:
        """Cards for all draft orders, most urgent first; each order capped and folded."""
        ranked: list[tuple[tuple[int, int, int], Card]] = []
        cap_n = self.kb.scoring.max_cards_per_order
        for findings, order in per_order:
            shown = sorted((f for f in findings if f.indicator), key=self._rank, reverse=True)
            if not shown:
                continue
            folded: list[Finding] = []
            if shown[0].indicator != "info":
                # an order that already has a warning or critical card: its info findings ride along
                folded = [f for f in shown if f.indicator == "info"]
                shown = [f for f in shown if f.indicator != "info"]
            into, more = 0, False  # info findings ride along in the top card ...
            if len(shown) > cap_n:
                folded = shown[cap_n:] + folded
                shown = shown[:cap_n]
                into, more = cap_n - 1, True  # ... findings beyond the cap are folded into the last one
            for i, f in enumerate(shown):
                card = self.card(f, order, patient_id, folded if i == into else None, more and i == into)
                ranked.append(((SEVERITY_RANK[card.indicator], *self._rank(f)[1:]), card))
        ranked.sort(key=lambda rc: rc[0], reverse=True)
        return [c for _, c in ranked]
