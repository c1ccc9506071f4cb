"""medication-risk (order-sign): checks each draft medication order and answers with few, specific cards.

Each draft MedicationRequest is checked against the patient's active medications and the other
drafts (interactions, duplicate therapy), kidney function (renal dosing), age (AGS Beers 2023),
recent labs (potassium, INR, QTc, platelets) and allergies, using the knowledge base in
cds/knowledge/medications. Decision support for clinicians, for research and development; validate
locally before any clinical use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds.cards import Card
from cds.errors import BadRequest
from cds.hookrequest import HookRequest
from cds.medication import rules
from cds.medication.cards import CardBuilder
from cds.medication.knowledge import KnowledgeError, load_knowledge
from cds.medication.patient import PatientReader
from cds.medication.resolve import Med, Resolver, UnreadableMedication
from cds.medication.score import order_score, score_finding
from cds.record import PatientRecord
from cds.services.base import ServiceLoadError
from cds.settings import Settings


class MedicationRiskService:
    id = "medication-risk"

    def __init__(self, settings: Settings) -> None:
        options = settings.service_options(self.id)
        try:
            self.kb = load_knowledge(options.get("knowledge_dir"))
        except KnowledgeError as e:
            raise ServiceLoadError(f"medication-risk knowledge base is invalid: {e}") from None
        self.resolver = Resolver(self.kb)
        self.patients = PatientReader(self.kb, self.resolver)
        self.builder = CardBuilder(self.kb)

    def draft_meds(self, request: HookRequest, record: PatientRecord) -> list[Med]:
        """The draft MedicationRequests of context.draftOrders; BadRequest for an entry we cannot read."""
        bundle = request.context.get("draftOrders")
        if bundle is None:
            return []
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise BadRequest("context.draftOrders must be a FHIR Bundle", expression=["context.draftOrders"])
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            raise BadRequest(
                "context.draftOrders.entry must be a list", expression=["context.draftOrders.entry"]
            )
        resources: list[tuple[int, Mapping[str, Any]]] = []
        for i, entry in enumerate(entries):
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                raise BadRequest(
                    f"context.draftOrders.entry[{i}] has no resource with a resourceType",
                    expression=[f"context.draftOrders.entry[{i}]"],
                )
            resources.append((i, res))
        by_ref = {
            f"{r['resourceType']}/{r['id']}": r
            for _, r in resources
            if isinstance(r.get("id"), str) and r["id"]
        }
        meds = []
        for i, res in resources:
            if res["resourceType"] != "MedicationRequest":
                continue  # other orders (labs, imaging, diet) are not this service's business
            key = f"MedicationRequest/{res['id']}" if isinstance(res.get("id"), str) else f"draftOrders[{i}]"
            try:
                meds.append(self.resolver.medication(res, key, record, by_ref, draft=True))
            except UnreadableMedication as e:
                raise BadRequest(
                    f"context.draftOrders.entry[{i}] ({key}) is not a readable MedicationRequest: {e}",
                    expression=[f"context.draftOrders.entry[{i}].resource"],
                ) from None
        return meds

    def active_meds(self, record: PatientRecord, drafts: list[Med]) -> list[Med]:
        """Active medications, minus the drafts themselves (a re-signed order is in both)."""
        draft_keys = {d.resource_id for d in drafts if d.resource_id}
        out = []
        for i, res in enumerate(record.active_medications()):
            rid = res.get("id")
            key = f"{res['resourceType']}/{rid}" if isinstance(rid, str) and rid else f"active[{i}]"
            if key in draft_keys:
                continue
            try:
                out.append(self.resolver.medication(res, key, record))
            except UnreadableMedication:
                continue  # a chart entry we cannot read cannot be checked; never fail the call for it
        return out

    def evaluate(self, request: HookRequest, record: PatientRecord) -> list[Card]:
        drafts = self.draft_meds(request, record)
        drafts = [d for d in drafts if d.ingredients]
        if not drafts:
            return []
        active = self.active_meds(record, drafts)
        patient = self.patients.read(record)
        patient.active_ingredients = frozenset(i for m in active for i in m.ingredients)
        kb = self.kb
        findings = (
            rules.interactions(kb, drafts, active)
            + rules.duplicates(kb, drafts, active)
            + rules.renal(kb, drafts, patient)
            + rules.beers(kb, drafts, patient)
            + rules.lab_rules(kb, drafts, patient)
            + rules.allergies(kb, drafts, patient)
        )
        per_order = []
        for d in drafts:
            mine = [f for f in findings if f.draft is d]
            interacting = len(
                {
                    o.ingredients
                    for f in mine
                    if f.category == "ddi" and not f.non_interruptive
                    for o in f.others
                }
            )
            for f in mine:
                score_finding(kb, f, patient, interacting)
            shown = [f for f in mine if f.indicator]
            per_order.append((shown, order_score(kb, shown)))
        return self.builder.cards(per_order, request.patient_id)
