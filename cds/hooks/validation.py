"""The rules of a hook call that span fields; the shape itself is declared in `cds.hooks.request`.

Decoding against the declaration checks every field's type and form in one pass; what is left
here is what one field cannot say alone: the hook against the service called, `fhirServer` with
`fhirAuthorization`, the configured limits (413), and the patient check (prefetch and draft
orders about `context.patientId`). Everything a caller can get wrong is answered with a 400 (or
413) naming the field, so the services only ever see well-formed requests.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

from cds.fhir.patientref import UNREADABLE, bundle_patient_urls, patient_of
from cds.fhir.record import resources_of
from cds.hooks.request import (
    HOOK_CONTEXT,
    DraftOrders,
    Envelope,
    HookCall,
    HookRequest,
    convert_call,
    decode_call,
    draft_order_resources,
    envelope,
    shape_error,
)
from cds.runtime.errors import BadRequest, PayloadTooLarge
from cds.runtime.settings import Settings

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # R4 datatypes, "id"

__all__ = ["HOOK_CONTEXT", "decode_hook_request", "flatten_about", "validate_hook_request"]


def decode_hook_request(
    raw: bytes, service_id: str, service_hook: str, settings: Settings, base_url: str
) -> HookRequest:
    """A HookRequest from the raw body of a call, or BadRequest/PayloadTooLarge saying what is
    wrong. The body is decoded and its shape validated in one pass (msgspec)."""
    try:
        call = decode_call(raw, service_hook)
    except msgspec.ValidationError as e:
        _check_first(envelope(raw), service_id, service_hook)
        raise shape_error(e, service_hook) from None
    except msgspec.DecodeError as e:
        raise BadRequest(f"request body is not valid JSON: {e}") from None
    return _checked(call, service_id, service_hook, settings, base_url)


def validate_hook_request(
    body: Any, service_id: str, service_hook: str, settings: Settings, base_url: str
) -> HookRequest:
    """The same for a body already parsed (the sandbox, tests)."""
    try:
        call = convert_call(body, service_hook)
    except msgspec.ValidationError as e:
        _check_first(envelope(body), service_id, service_hook)
        raise shape_error(e, service_hook) from None
    return _checked(call, service_id, service_hook, settings, base_url)


def _check_first(top: Envelope | None, service_id: str, service_hook: str) -> None:
    """On a body that does not match the declaration: the errors that are said before any other
    (a call to the wrong service, a token without its server), as they always were."""
    if top is None:  # not a JSON object: the declaration's own message says so
        return
    _check_hook(top.hook, service_id, service_hook)
    if top.fhirAuthorization is not None and top.fhirServer is None:
        raise BadRequest("fhirServer is required when fhirAuthorization is given", expression=["fhirServer"])


def _check_hook(hook: Any, service_id: str, service_hook: str) -> None:
    if not isinstance(hook, str) or not hook:
        raise BadRequest(
            "hook is required (the name of the hook that triggered this call)", expression=["hook"]
        )
    if hook != service_hook:
        raise BadRequest(
            f"service {service_id} answers the {service_hook} hook, not {hook}", expression=["hook"]
        )


def _checked(
    call: HookCall, service_id: str, service_hook: str, settings: Settings, base_url: str
) -> HookRequest:
    _check_hook(call.hook, service_id, service_hook)
    try:
        uuid.UUID(call.hookInstance)
    except ValueError:
        raise BadRequest("hookInstance must be a UUID", expression=["hookInstance"]) from None
    auth = call.fhirAuthorization
    if auth is not None and call.fhirServer is None:
        raise BadRequest("fhirServer is required when fhirAuthorization is given", expression=["fhirServer"])
    ctx = call.context
    context: dict[str, Any] = {"userId": ctx.userId, "patientId": ctx.patientId}
    if ctx.encounterId is not None:
        context["encounterId"] = ctx.encounterId
    orders: tuple[dict[str, Any], ...] = ()
    drafts: DraftOrders | None = getattr(ctx, "draftOrders", None)
    if drafts is not None:
        if hasattr(ctx, "selections"):
            context["selections"] = ctx.selections
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "entry": [
                {"fullUrl": e.fullUrl, "resource": e.resource} if e.fullUrl else {"resource": e.resource}
                for e in drafts.entry
            ],
        }
        orders = _check_draft_orders(drafts, context["draftOrders"], ctx.patientId, settings)
    prefetch, resources, skipped = _check_prefetch(call.prefetch, ctx.patientId, settings)
    return HookRequest(
        service_id=service_id,
        hook=call.hook,
        hook_instance=call.hookInstance,
        context=context,
        prefetch=prefetch,
        prefetch_resources=tuple(resources),
        skipped=tuple(skipped),
        fhir_server=call.fhirServer,
        fhir_authorization=msgspec.structs.asdict(auth) if auth is not None else None,
        base_url=base_url,
        orders=orders,
    )


def _check_draft_orders(
    drafts: DraftOrders, bundle: dict[str, Any], patient_id: str, settings: Settings
) -> tuple[dict[str, Any], ...]:
    """The draft order resources, once: within the limit (413), each with a resourceType and
    about the context patient (a urn:uuid: reference resolves through the Bundle's fullUrls)."""
    if len(drafts.entry) > settings.max_draft_orders:
        raise PayloadTooLarge(
            f"context.draftOrders has {len(drafts.entry)} entries; the limit is {settings.max_draft_orders}"
        )
    orders = draft_order_resources(drafts)
    full_urls = bundle_patient_urls([bundle])
    for i, res in enumerate(orders):
        pid = patient_of(res, full_urls)
        if pid is UNREADABLE:
            raise BadRequest(
                f"context.draftOrders.entry[{i}] has a patient reference that is not Patient/<id> "
                "(or a urn:uuid: fullUrl of a Patient in the Bundle)",
                expression=[f"context.draftOrders.entry[{i}]"],
            )
        if pid is not None and pid != patient_id:
            raise BadRequest(
                f"context.draftOrders.entry[{i}] is for another patient than context.patientId",
                expression=[f"context.draftOrders.entry[{i}]"],
            )
    return orders


def _check_prefetch(
    prefetch: dict[str, Any] | None, patient_id: str, settings: Settings
) -> tuple[dict[str, Any], list[dict[str, Any]], list[tuple[str, int, str]]]:
    """The prefetch object, its resources flattened once (the record is built from them), and the
    resources skipped as (prefetch key, index in that key, reason): never their content."""
    if prefetch is None:
        return {}, [], []
    for key, value in prefetch.items():
        if value is not None and (
            not isinstance(value, dict) or not isinstance(value.get("resourceType"), str)
        ):
            raise BadRequest(
                f"prefetch.{key} must be a FHIR resource or null", expression=[f"prefetch.{key}"]
            )
    skipped: list[tuple[str, int, str]] = []
    resources, others = flatten_about(prefetch, patient_id, skipped)
    for key, i, res, pid in others:
        if pid is UNREADABLE:
            skipped.append((key, i, "unreadable-patient-reference"))
            continue
        what = (
            "a Patient other than"
            if res["resourceType"] == "Patient"
            else (f"a {res['resourceType']} of another patient than")
        )
        raise BadRequest(f"prefetch.{key} holds {what} context.patientId", expression=[f"prefetch.{key}"])
    if len(resources) > settings.max_prefetch_resources:
        raise PayloadTooLarge(
            f"prefetch holds more than {settings.max_prefetch_resources} resources (the configured limit)"
        )
    return prefetch, resources, skipped


def flatten_about(
    values: Mapping[str, Any], patient_id: str, skipped: list[tuple[str, int, str]]
) -> tuple[list[dict[str, Any]], list[tuple[str, int, dict[str, Any], str | None]]]:
    """The resources of prefetch-like values (key -> resource or Bundle), split in those about
    this patient or about no patient (Medication...), and the others as (key, entry index,
    resource, patient id, or UNREADABLE when its reference cannot be read; see
    `cds.fhir.patientref.patient_of`). The one flatten-and-check of the hook path: prefetch
    answers and data fetched from `fhirServer` both go through it. Entries holding no resource are
    recorded in `skipped` as (key, index, reason); OperationOutcomes are dropped.

    Hot path (every resource of every call): the common `subject` reference to the context
    patient is recognised by one comparison, everything else is read by `patient_of`."""
    full_urls = _FullUrls(values)
    # patient_of reads "Patient/<id>" as <id> exactly when <id> is a valid FHIR id.
    own = f"Patient/{patient_id}" if _FHIR_ID.fullmatch(patient_id) else None
    ours: list[dict[str, Any]] = []
    others: list[tuple[str, int, dict[str, Any], str | None]] = []

    def place(key: str, i: int, res: dict[str, Any]) -> None:
        pid = patient_of(res, full_urls)
        if pid is None or pid == patient_id:
            ours.append(res)
        else:
            others.append((key, i, res, pid))

    for key, value in values.items():
        if value is None:
            continue
        if value.get("resourceType") != "Bundle":
            for r in resources_of(value):
                place(key, 0, r)
            continue
        entries = value.get("entry")
        if entries is None:
            continue
        if not isinstance(entries, list):
            skipped.append((key, 0, "entry-not-a-list"))
            continue
        for i, entry in enumerate(entries):
            res = entry.get("resource") if type(entry) is dict else None
            rtype = res.get("resourceType") if type(res) is dict else None
            if type(rtype) is not str:
                skipped.append((key, i, "not-a-resource"))
                continue
            if rtype == "Bundle":
                for r in resources_of(res):  # a nested Bundle shares its entry's index
                    place(key, i, r)
                continue
            if rtype == "OperationOutcome":
                continue
            subject = res.get("subject")  # type: ignore[union-attr]
            if (
                own is not None
                and type(subject) is dict
                and subject.get("reference") == own
                and rtype != "Patient"
            ):
                ours.append(res)  # type: ignore[arg-type]
            else:
                place(key, i, res)  # type: ignore[arg-type]
    return ours, others


class _FullUrls(dict[str, str]):
    """`bundle_patient_urls` of the values, read only when a `urn:uuid:` reference needs it (most
    calls have none, and the scan visits every entry)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        super().__init__()
        self._values: Mapping[str, Any] | None = values

    def __bool__(self) -> bool:
        return True

    def get(self, key: str, default: Any = None) -> Any:
        if self._values is not None:
            self.update(bundle_patient_urls(self._values.values()))
            self._values = None
        return super().get(key, default)
