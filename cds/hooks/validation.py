"""Validation of a hook call's body against CDS Hooks 2.0 and the hook's context definition.

Everything a caller can get wrong is answered here with a 400 (or 413 for counts over a limit)
naming the field, so the services only ever see well-formed requests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from cds.fhir.patientref import UNREADABLE, bundle_patient_urls, patient_of
from cds.fhir.record import resources_of
from cds.hooks.request import HookRequest
from cds.runtime.errors import BadRequest, PayloadTooLarge
from cds.runtime.settings import Settings

# Context fields per hook: (name, required, type check). From the hook pages in
# ../shared/reference (patient-view 1.0, order-sign 1.1, order-select 1.0).
_USER_TYPES = {
    "patient-view": ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson"),
    "order-sign": ("Practitioner", "PractitionerRole"),
    "order-select": ("Practitioner", "PractitionerRole"),
}
HOOK_CONTEXT: dict[str, dict[str, bool]] = {
    "patient-view": {"userId": True, "patientId": True, "encounterId": False},
    "order-sign": {"userId": True, "patientId": True, "encounterId": False, "draftOrders": True},
    "order-select": {
        "userId": True,
        "patientId": True,
        "encounterId": False,
        "selections": True,
        "draftOrders": True,
    },
}
_FHIR_AUTH_FIELDS: dict[str, type | tuple[type, ...]] = {
    "access_token": str,
    "token_type": str,
    "expires_in": (int, float),
    "scope": str,
    "subject": str,
}


def _absolute_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _check_context(hook: str, context: Any, settings: Settings) -> dict[str, Any]:
    """The context, checked against the hook's fields; BadRequest names the first wrong one."""
    if not isinstance(context, dict):
        raise BadRequest("context must be a JSON object", expression=["context"])
    for name, required in HOOK_CONTEXT[hook].items():
        if name not in context or context[name] is None:
            if required:
                raise BadRequest(
                    f"context.{name} is required for the {hook} hook", expression=[f"context.{name}"]
                )
            continue
        value = context[name]
        if name == "draftOrders" or name == "selections":
            continue
        if not isinstance(value, str) or not value:
            raise BadRequest(f"context.{name} must be a non-empty string", expression=[f"context.{name}"])
    user = context["userId"]
    rtype, _, rid = user.partition("/")
    if not rid or rtype not in _USER_TYPES[hook]:
        raise BadRequest(
            f"context.userId must be a reference like Practitioner/123 to one of {', '.join(_USER_TYPES[hook])}",
            expression=["context.userId"],
        )
    if "/" in context["patientId"]:
        raise BadRequest(
            "context.patientId must be a Patient id, not a reference", expression=["context.patientId"]
        )
    if "draftOrders" in HOOK_CONTEXT[hook]:
        bundle = context["draftOrders"]
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise BadRequest("context.draftOrders must be a FHIR Bundle", expression=["context.draftOrders"])
        entries = bundle.get("entry", [])
        if not isinstance(entries, list):
            raise BadRequest(
                "context.draftOrders.entry must be an array", expression=["context.draftOrders.entry"]
            )
        if len(entries) > settings.max_draft_orders:
            raise PayloadTooLarge(
                f"context.draftOrders has {len(entries)} entries; the limit is {settings.max_draft_orders}"
            )
        full_urls = bundle_patient_urls([bundle])
        for i, e in enumerate(entries):
            res = e.get("resource") if isinstance(e, dict) else None
            if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                raise BadRequest(
                    f"context.draftOrders.entry[{i}] has no resource with a resourceType",
                    expression=[f"context.draftOrders.entry[{i}]"],
                )
            pid = patient_of(res, full_urls)
            if pid is UNREADABLE:
                raise BadRequest(
                    f"context.draftOrders.entry[{i}] has a patient reference that is not Patient/<id> "
                    "(or a urn:uuid: fullUrl of a Patient in the Bundle)",
                    expression=[f"context.draftOrders.entry[{i}]"],
                )
            if pid not in (None, context["patientId"]):
                raise BadRequest(
                    f"context.draftOrders.entry[{i}] is for another patient than context.patientId",
                    expression=[f"context.draftOrders.entry[{i}]"],
                )
    return context


def _check_prefetch(
    prefetch: Any, patient_id: str, settings: Settings
) -> tuple[dict[str, Any], list[dict], list[tuple[str, int, str]]]:
    """The prefetch object, its resources flattened once (the record is built from them), and the
    resources skipped as (prefetch key, index in that key, reason): never their content."""
    if prefetch is None:
        return {}, [], []
    if not isinstance(prefetch, dict):
        raise BadRequest("prefetch must be a JSON object of key -> FHIR resource", expression=["prefetch"])
    for key, value in prefetch.items():
        if value is not None and (
            not isinstance(value, dict) or not isinstance(value.get("resourceType"), str)
        ):
            raise BadRequest(
                f"prefetch.{key} must be a FHIR resource or null", expression=[f"prefetch.{key}"]
            )
    full_urls = bundle_patient_urls(prefetch.values())
    resources: list[dict[str, Any]] = []
    skipped: list[tuple[str, int, str]] = []
    for key, value in prefetch.items():
        if value is None:
            continue
        for i, res in _indexed_resources(value, key, skipped):
            pid = patient_of(res, full_urls)
            if pid is UNREADABLE:
                skipped.append((key, i, "unreadable-patient-reference"))
                continue
            if pid is not None and pid != patient_id:
                what = (
                    "a Patient other than"
                    if res["resourceType"] == "Patient"
                    else (f"a {res['resourceType']} of another patient than")
                )
                raise BadRequest(
                    f"prefetch.{key} holds {what} context.patientId", expression=[f"prefetch.{key}"]
                )
            resources.append(res)
        if len(resources) > settings.max_prefetch_resources:
            raise PayloadTooLarge(
                f"prefetch holds more than {settings.max_prefetch_resources} resources (the configured limit)"
            )
    return prefetch, resources, skipped


def _indexed_resources(
    value: dict[str, Any], key: str, skipped: list[tuple[str, int, str]]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(entry index, resource) of a prefetch value; an entry that holds no resource is recorded
    in `skipped` by its index (a nested Bundle's resources share its entry's index)."""
    if value.get("resourceType") != "Bundle":
        for res in resources_of(value):
            yield 0, res
        return
    entries = value.get("entry")
    if entries is None:
        return
    if not isinstance(entries, list):
        skipped.append((key, 0, "entry-not-a-list"))
        return
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            skipped.append((key, i, "not-a-resource"))
            continue
        for r in resources_of(resource):
            yield i, r


def is_about(resource: dict[str, Any], patient_id: str, full_urls: dict[str, str] | None = None) -> bool:
    """True when a resource is about this patient or about no patient (Medication...). A resource
    whose patient reference cannot be read is not this patient's."""
    pid = patient_of(resource, full_urls)
    return pid is None or pid == patient_id


def validate_hook_request(
    body: Any, service_id: str, service_hook: str, settings: Settings, base_url: str
) -> HookRequest:
    """A HookRequest from a parsed body, or BadRequest/PayloadTooLarge saying what is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    hook = body.get("hook")
    if not isinstance(hook, str) or not hook:
        raise BadRequest(
            "hook is required (the name of the hook that triggered this call)", expression=["hook"]
        )
    if hook != service_hook:
        raise BadRequest(
            f"service {service_id} answers the {service_hook} hook, not {hook}", expression=["hook"]
        )
    hook_instance = body.get("hookInstance")
    try:
        if not isinstance(hook_instance, str):
            raise TypeError
        uuid.UUID(hook_instance)
    except (ValueError, TypeError, AttributeError):
        raise BadRequest("hookInstance must be a UUID", expression=["hookInstance"]) from None
    fhir_server = body.get("fhirServer")
    if fhir_server is not None and not _absolute_http_url(fhir_server):
        raise BadRequest("fhirServer must be an absolute http(s) URL", expression=["fhirServer"])
    auth = body.get("fhirAuthorization")
    if auth is not None:
        if not isinstance(auth, dict):
            raise BadRequest("fhirAuthorization must be an object", expression=["fhirAuthorization"])
        if fhir_server is None:
            raise BadRequest(
                "fhirServer is required when fhirAuthorization is given", expression=["fhirServer"]
            )
        for name, typ in _FHIR_AUTH_FIELDS.items():
            v = auth.get(name)
            if isinstance(v, bool) or not isinstance(v, typ) or v == "":
                raise BadRequest(
                    f"fhirAuthorization.{name} is required ({'number' if name == 'expires_in' else 'string'})",
                    expression=[f"fhirAuthorization.{name}"],
                )
        if auth["token_type"].lower() != "bearer":
            raise BadRequest(
                "fhirAuthorization.token_type must be Bearer", expression=["fhirAuthorization.token_type"]
            )
    if hook not in HOOK_CONTEXT:
        raise BadRequest(f"unsupported hook {hook}", expression=["hook"])
    context = _check_context(hook, body.get("context"), settings)
    prefetch, resources, skipped = _check_prefetch(body.get("prefetch"), context["patientId"], settings)
    return HookRequest(
        service_id=service_id,
        hook=hook,
        hook_instance=hook_instance,
        context=context,
        prefetch=prefetch,
        prefetch_resources=tuple(resources),
        skipped=tuple(skipped),
        fhir_server=fhir_server,
        fhir_authorization=auth,
        base_url=base_url,
    )
