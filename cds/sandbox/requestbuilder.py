"""Build the hook request an EHR would send for a sample patient: context, draft orders and the
prefetch the service asks for in the discovery document (answered from the patient's Bundle)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from cds.fhir.dates import utcnow
from cds.hooks.discovery import Discovery
from cds.hooks.prefetch import UnresolvedToken, render
from cds.sandbox.fhirsearch import UnsupportedQuery, search
from cds.sandbox.patients import sample_patient

SANDBOX_USER = "Practitioner/sandbox-clinician"


class RequestBuildError(ValueError):
    """The sandbox cannot build this request (unknown service, patient, order or query)."""


def draft_orders_bundle(orders: list[dict[str, Any]]) -> dict[str, Any]:
    """context.draftOrders: a collection Bundle of the draft requests."""
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "collection"}
    if orders:
        bundle["entry"] = [{"resource": o} for o in orders]
    return bundle


def build_request(
    discovery: Discovery,
    service_id: str,
    patient_id: str,
    order_ids: list[str] | None = None,
    draft_orders: list[dict[str, Any]] | None = None,
    extra_context: dict[str, Any] | None = None,
    include_prefetch: bool = True,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The full CDS Hooks request body for a sample patient and service.

    For order-sign, `draft_orders` (edited resources) wins over `order_ids` (stored orders by id);
    with neither, all the patient's stored draft orders are sent.
    """
    entry = discovery.services.get(service_id)
    if entry is None:
        raise RequestBuildError(f"no service {service_id!r} (known: {', '.join(discovery.services)})")
    try:
        patient = sample_patient(patient_id)
    except KeyError as e:
        raise RequestBuildError(str(e)) from None
    now = now or utcnow()
    resources = patient.resources(now)
    context: dict[str, Any] = {"userId": SANDBOX_USER, "patientId": patient.id}
    encounter = next(
        (r for r in resources if r.get("resourceType") == "Encounter" and r.get("status") == "in-progress"),
        None,
    )
    if encounter is not None:
        context["encounterId"] = encounter["id"]
    if entry.hook == "order-sign":
        if draft_orders is None:
            try:
                draft_orders = patient.draft_orders(order_ids, now)
            except KeyError as e:
                raise RequestBuildError(str(e)) from None
        context["draftOrders"] = draft_orders_bundle(draft_orders)
    context.update(extra_context or {})
    request: dict[str, Any] = {
        "hookInstance": str(uuid.uuid4()),
        "hook": entry.hook,
        "context": context,
    }
    if include_prefetch and entry.prefetch:
        prefetch: dict[str, Any] = {}
        for key, template in entry.prefetch.items():
            try:
                answer = search(resources, render(template, context))
            except (UnresolvedToken, UnsupportedQuery) as e:
                raise RequestBuildError(f"prefetch {key!r}: {e}") from None
            if answer is not None:
                prefetch[key] = answer
        request["prefetch"] = prefetch
    return request
