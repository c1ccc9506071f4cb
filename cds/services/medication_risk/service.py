"""medication-risk (order-sign): checks each draft medication order and answers with few, specific cards.

Each draft MedicationRequest is checked against the patient's active medications and the other
drafts (interactions, duplicate therapy), kidney function (renal dosing), age (AGS Beers 2023),
recent labs (potassium, INR, QTc, platelets), allergies, and label dosing by indication, weight and
creatinine clearance, using the knowledge base in cds/knowledge/medications. Each draft order gets at
most one card (its findings merged); an order the service cannot check gets an info card saying so,
never silence. Decision support for clinicians, for research and development; validate
locally before any clinical use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import msgspec

from cds.fhir.record import PatientRecord
from cds.fhir.terminology import concept_text
from cds.hooks.cards import Card
from cds.hooks.request import HookRequest
from cds.hooks.service import CDSService, ServiceLoadError
from cds.runtime.errors import BadRequest
from cds.services.medication_risk import rules
from cds.services.medication_risk.cards import CardBuilder
from cds.services.medication_risk.dosing import Dosing
from cds.services.medication_risk.knowledge import KnowledgeError, load_knowledge
from cds.services.medication_risk.patient import PatientReader
from cds.services.medication_risk.policy import Policy
from cds.services.medication_risk.resolve import Med, Resolver, UnreadableMedication, as_list
from cds.services.medication_risk.score import order_score, score_finding

# Medication orders of other FHIR versions: DSTU2 MedicationOrder, DSTU1 MedicationPrescription.
OTHER_VERSION_ORDERS = {"MedicationOrder": "FHIR DSTU2", "MedicationPrescription": "FHIR DSTU1"}


class MedicationRiskOptions(msgspec.Struct, kw_only=True):
    """`[services.medication-risk]`."""

    # Another knowledge base (a copy reviewed locally); None: cds/knowledge/medications.
    knowledge_dir: str | None = None


class MedicationRiskService(CDSService[MedicationRiskOptions]):
    id = "medication-risk"
    hook = "order-sign"
    Options = MedicationRiskOptions

    def load(self) -> Self:
        """The knowledge base, checked (ServiceLoadError naming the file and entry when invalid)."""
        try:
            self.kb = load_knowledge(self.options.knowledge_dir)
            self.dosing = Dosing(self.kb)
            self.policy = Policy(self.kb)
            for rxcui, ings in self.dosing.product_ingredients().items():
                self.kb.products.setdefault(rxcui, ings)  # dosed SCDs resolve by code
        except KnowledgeError as e:
            raise ServiceLoadError(f"medication-risk knowledge base is invalid: {e}") from None
        self.resolver = Resolver(self.kb)
        self.patients = PatientReader(self.kb, self.resolver)
        self.builder = CardBuilder(self.kb, self.policy)
        return self

    def draft_meds(self, request: HookRequest, record: PatientRecord) -> tuple[list[Med], list[Card]]:
        """The draft MedicationRequests of context.draftOrders, and info cards for the medication orders
        it cannot read (other FHIR versions); BadRequest for an R4 MedicationRequest naming no drug.
        The Bundle itself was decoded and checked once, with the request (`request.draft_orders`)."""
        resources = list(enumerate(request.draft_orders))
        by_ref = {
            f"{r['resourceType']}/{r['id']}": r
            for _, r in resources
            if isinstance(r.get("id"), str) and r["id"]
        }
        meds = []
        unread: list[Card] = []
        for i, res in resources:
            rtype = res["resourceType"]
            if rtype in OTHER_VERSION_ORDERS:
                unread.append(self._other_version(rtype, res))
                continue
            if rtype != "MedicationRequest":
                continue  # other orders (labs, imaging, diet) are not this service's business
            key = f"MedicationRequest/{res['id']}" if isinstance(res.get("id"), str) else f"draftOrders[{i}]"
            try:
                meds.append(self.resolver.medication(res, key, record, by_ref, draft=True))
            except UnreadableMedication as e:
                raise BadRequest(
                    f"context.draftOrders.entry[{i}] ({key}) is not a readable MedicationRequest: {e}",
                    expression=[f"context.draftOrders.entry[{i}].resource"],
                ) from None
        return meds, unread

    def _other_version(self, rtype: str, res: Mapping[str, Any]) -> Card:
        concept = res.get("medicationCodeableConcept")
        name = concept_text(concept) if isinstance(concept, dict) else ""
        what = f" ({name})" if name else ""
        return self.builder.not_checked(
            "unsupported-resource",
            f"Not checked: {rtype} draft order{what} is {OTHER_VERSION_ORDERS[rtype]}; this service reads FHIR R4",
            f"The draft order{what} is a **{rtype}**, a {OTHER_VERSION_ORDERS[rtype]} resource. This service "
            "checks FHIR R4 MedicationRequest orders only, so this order was **not checked** for interactions, "
            "kidney dosing, labs, age or allergies. This card is not an all-clear: check the order by other "
            "means, or point the EHR (or sandbox) at a FHIR R4 server so that draft orders are "
            "MedicationRequests.",
        )

    def _unrecognised(self, med: Med) -> Card:
        codes = [
            f"{c.get('system', 'no system')}|{c.get('code')}"
            for c in as_list((med.resource.get("medicationCodeableConcept") or {}).get("coding"))
            if isinstance(c, dict) and c.get("code")
        ]
        shown = f" ({', '.join(codes[:3])})" if codes else ""
        return self.builder.not_checked(
            "unrecognised-medication",
            f"Not checked: unrecognised medication {med.label}",
            f"The draft order for **{med.label}**{shown} matches no ingredient in the medication knowledge base "
            f"{self.kb.version}, so it was **not checked** for interactions, kidney dosing, labs, age or "
            "allergies. This card is not an all-clear: check the order by other means, or order the drug by "
            "its RxNorm code (SCD or ingredient).",
        )

    def active_meds(self, record: PatientRecord, drafts: list[Med]) -> tuple[list[Med], list[str]]:
        """Active medications, minus the drafts themselves (a re-signed order is in both), and the
        ids of those that could not be read (e.g. a referenced Medication that did not come)."""
        draft_keys = {d.resource_id for d in drafts if d.resource_id}
        out: list[Med] = []
        unreadable: list[str] = []
        for i, res in enumerate(record.active_medications()):
            rid = res.get("id")
            key = f"{res['resourceType']}/{rid}" if isinstance(rid, str) and rid else f"active[{i}]"
            if key in draft_keys:
                continue
            try:
                out.append(self.resolver.medication(res, key, record))
            except UnreadableMedication:
                unreadable.append(key)  # never fail the call for it; say it was not checked
        return out, unreadable

    def _unreadable_active(self, keys: list[str]) -> Card:
        n = len(keys)
        listed = ", ".join(keys[:5]) + (f" and {n - 5} more" if n > 5 else "")
        return self.builder.not_checked(
            "unreadable-active-medication",
            f"Not checked against {n} active medication{'s' if n > 1 else ''} that could not be read",
            f"{n} of the patient's active medication orders ({listed}) name no readable drug: a referenced "
            "Medication did not come with them (a FHIR server that ignores `_include`, with no "
            "`fhirServer` to read it from), or the order has no code or text. The draft orders were "
            "**not checked** for interactions with them. This card is not an all-clear for those drugs.",
        )

    def evaluate(self, request: HookRequest, record: PatientRecord) -> list[Card]:
        all_drafts, unread = self.draft_meds(request, record)
        drafts = [d for d in all_drafts if d.ingredients]
        unread += [self._unrecognised(d) for d in all_drafts if not d.ingredients]
        if not drafts:
            return unread
        active, unreadable = self.active_meds(record, drafts)
        if unreadable:
            unread.append(self._unreadable_active(unreadable))
        patient = self.patients.read(record)
        patient.active_ingredients = frozenset(i for m in active for i in m.ingredients)
        kb = self.kb
        findings = (
            rules.interactions(kb, drafts, active, self.policy)
            + rules.duplicates(kb, drafts, active)
            + rules.renal(kb, drafts, patient)
            + rules.doses(self.dosing, drafts, patient, record)
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
            self.policy.escalate(mine, patient)
            self.policy.caution(mine, patient)
            shown = [f for f in mine if f.indicator]
            per_order.append((shown, order_score(kb, shown)))
        return self.builder.cards(per_order, patient, request.patient_id) + unread
