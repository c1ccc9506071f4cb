"""The CDS Hooks request, declared once.

The msgspec `Struct`s below are the wire contract of a hook call (CDS Hooks 2.0.1 "Calling a CDS
Service" and the hook pages in ../shared/reference: patient-view 1.0, order-sign 1.1, order-select
1.0). The raw body is decoded and its shape validated in one pass
(`cds.hooks.validation.decode_hook_request`); the OpenAPI components are generated from the same
declarations (`cds.web.openapi`); `cds.hooks.validation` keeps only the rules that span fields
(hook vs service, `fhirServer` with a token, the limits, the patient check). A body that does not
match is a 400 naming the field, with msgspec's path (`shape_error`). FHIR resources stay plain
dicts, read through `cds.fhir.value` and `cds.fhir.patientref`.

`HookRequest` is what a service sees: the decoded call plus the prefetch flattened and checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

import msgspec
from msgspec import Meta, Struct

from cds.runtime.errors import BadRequest

# Who may be the user of each hook (the hook pages' `userId` rows).
USER_TYPES: dict[str, tuple[str, ...]] = {
    "patient-view": ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson"),
    "order-sign": ("Practitioner", "PractitionerRole"),
    "order-select": ("Practitioner", "PractitionerRole"),
}

NonEmpty = Annotated[str, Meta(min_length=1)]
# A FHIR R4 resource stays JSON (a dict); its resourceType is checked in code, where the error can
# name the prefetch key or the draft order.
FHIR_RESOURCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A FHIR R4 resource (JSON).",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string", "minLength": 1}},
}
FhirResource: TypeAlias = Annotated[dict[str, Any], Meta(extra_json_schema=FHIR_RESOURCE_SCHEMA)]
PatientId = Annotated[
    str, Meta(min_length=1, pattern="^[^/]+$", description="A Patient id, not a reference.")
]
AbsoluteUrl = Annotated[str, Meta(pattern="^https?://[^/?#]+", extra_json_schema={"format": "uri"})]
# uuid.UUID() decides (it also takes the braced and urn: forms); the schema says "uuid".
HookInstance = Annotated[str, Meta(extra_json_schema={"format": "uuid"})]


def _user_ref(hook: str) -> Any:
    users = "|".join(USER_TYPES[hook])
    return Annotated[str, Meta(pattern=f"^({users})/[^/]+$", description=f"{users} reference.")]


class FhirAuthorization(Struct, frozen=True):
    """OAuth 2.0 bearer token for `fhirServer`; used only to fetch missing prefetch, never stored
    or logged."""

    access_token: NonEmpty
    token_type: Annotated[str, Meta(pattern="^[Bb][Ee][Aa][Rr][Ee][Rr]$")]
    expires_in: float
    scope: NonEmpty
    subject: NonEmpty
    patient: str | None = None

    def __repr__(self) -> str:  # the token must never reach a log line
        return "FhirAuthorization(<redacted>)"


class BundleEntry(Struct, frozen=True):
    resource: FhirResource
    fullUrl: str | None = None


class Bundle(Struct, frozen=True):
    """A FHIR Bundle of resources (as `context.draftOrders`: the draft orders, each about
    `patientId`)."""

    resourceType: Literal["Bundle"]
    entry: list[BundleEntry] = []


DraftOrders = Bundle


class PatientViewContext(Struct, frozen=True):
    userId: _user_ref("patient-view")  # type: ignore[valid-type]
    patientId: PatientId
    encounterId: NonEmpty | None = None


class OrderSignContext(Struct, frozen=True, kw_only=True):
    userId: _user_ref("order-sign")  # type: ignore[valid-type]
    patientId: PatientId
    encounterId: NonEmpty | None = None
    draftOrders: DraftOrders


class OrderSelectContext(Struct, frozen=True, kw_only=True):
    userId: _user_ref("order-select")  # type: ignore[valid-type]
    patientId: PatientId
    encounterId: NonEmpty | None = None
    selections: list[str]
    draftOrders: DraftOrders


Context: TypeAlias = PatientViewContext | OrderSignContext | OrderSelectContext


class _Call(Struct, frozen=True, kw_only=True):
    """A call of a CDS service (CDS Hooks 2.0.1 "HTTP Request")."""

    # The rule spanning fields, for the OpenAPI document (checked in cds.hooks.validation).
    JSON_SCHEMA_RULES: ClassVar[dict[str, Any]] = {"dependentRequired": {"fhirAuthorization": ["fhirServer"]}}
    hook: NonEmpty
    hookInstance: HookInstance
    fhirServer: AbsoluteUrl | None = None
    fhirAuthorization: FhirAuthorization | None = None
    # key -> FHIR resource or null; each value is checked in code, so an error can name its key.
    prefetch: dict[str, Any] | None = None


class PatientViewRequest(_Call, frozen=True, kw_only=True):
    context: PatientViewContext


class OrderSignRequest(_Call, frozen=True, kw_only=True):
    context: OrderSignContext


class OrderSelectRequest(_Call, frozen=True, kw_only=True):
    context: OrderSelectContext


HookCall: TypeAlias = PatientViewRequest | OrderSignRequest | OrderSelectRequest
# The request declaration of each hook this service can answer.
REQUEST_TYPES: dict[str, type[HookCall]] = {
    "patient-view": PatientViewRequest,
    "order-sign": OrderSignRequest,
    "order-select": OrderSelectRequest,
}
CONTEXT_TYPES: dict[str, type[Context]] = {
    "patient-view": PatientViewContext,
    "order-sign": OrderSignContext,
    "order-select": OrderSelectContext,
}
# Context field -> required, per hook (discovery checks prefetch templates against it).
HOOK_CONTEXT: dict[str, dict[str, bool]] = {
    hook: {f.name: f.required for f in msgspec.structs.fields(t)} for hook, t in CONTEXT_TYPES.items()
}


class Envelope(Struct):
    """The top-level fields whose errors are reported first (read only on the error path)."""

    hook: Any = None
    fhirServer: Any = None
    fhirAuthorization: Any = None


_DECODERS = {hook: msgspec.json.Decoder(t) for hook, t in REQUEST_TYPES.items()}
_ENVELOPE = msgspec.json.Decoder(Envelope)


def decode_call(raw: bytes, hook: str) -> HookCall:
    """The body decoded against the declaration of `hook` (one pass, no intermediate dicts but the
    FHIR resources); msgspec.ValidationError / DecodeError as raised."""
    return _DECODERS[hook].decode(raw)


def convert_call(body: Any, hook: str) -> HookCall:
    """The same, from an already parsed body (tests, the sandbox)."""
    return msgspec.convert(body, REQUEST_TYPES[hook])


def envelope(body: bytes | Any) -> Envelope | None:
    """Only on the error path: the top-level fields of a raw or parsed body (None when it is no
    JSON object)."""
    try:
        if isinstance(body, bytes):
            return _ENVELOPE.decode(body)
        return msgspec.convert(body, Envelope)
    except msgspec.DecodeError:
        return None


def draft_order_resources(bundle: DraftOrders, base: str = "context.draftOrders") -> tuple[FhirResource, ...]:
    """The resources of a decoded draftOrders Bundle in entry order; BadRequest for an entry
    whose resource has no resourceType."""
    out = []
    for i, e in enumerate(bundle.entry):
        if not isinstance(e.resource.get("resourceType"), str):
            raise BadRequest(
                f"{base}.entry[{i}] has no resource with a resourceType",
                expression=[f"{base}.entry[{i}]"],
            )
        out.append(e.resource)
    return tuple(out)


@dataclass(frozen=True)
class HookRequest:
    """The parts of a hook call a service may use. Built by `cds.hooks.validation` (or by tests).

    `base_url` is this service's public base URL (for absolute links to model cards);
    `fhir_authorization` is never logged, stored or echoed.
    """

    service_id: str
    hook: str
    hook_instance: str
    context: dict[str, Any]
    prefetch: dict[str, Any] = field(default_factory=dict)
    fhir_server: str | None = None
    fhir_authorization: dict[str, Any] | None = field(default=None, repr=False)
    base_url: str = "http://127.0.0.1:8080"
    # The prefetch's resources, flattened and checked to be about this patient (by validation).
    prefetch_resources: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    # Prefetch resources left out as (prefetch key, index in that key, reason): logged and counted.
    skipped: tuple[tuple[str, int, str], ...] = ()
    # context.draftOrders, decoded and checked once by validation; None: not decoded yet.
    orders: tuple[dict[str, Any], ...] | None = field(default=None, repr=False)

    @property
    def patient_id(self) -> str:
        return str(self.context["patientId"])

    @property
    def draft_orders(self) -> tuple[dict[str, Any], ...]:
        """The resources of context.draftOrders in entry order (order-sign), else empty.

        Decoded by validation on the hook path; a request built by hand is decoded here against
        the same declaration (BadRequest naming the entry when it is malformed)."""
        if self.orders is not None:
            return self.orders
        bundle = self.context.get("draftOrders")
        if bundle is None:
            return ()
        try:
            decoded = msgspec.convert(bundle, DraftOrders)
        except msgspec.ValidationError as e:
            raise shape_error(e, self.hook, base="context.draftOrders") from None
        return draft_order_resources(decoded)


_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_INDEX = re.compile(r"\[\d+\]")


def shape_error(e: msgspec.ValidationError, hook: str, base: str = "") -> BadRequest:
    """A 400 for a body that does not match the declaration: a sentence naming the field, then
    msgspec's own finding with its path. `base` prefixes the paths of a part decoded on its own."""
    m = _AT.match(str(e))
    what, path = (m["what"], m["path"] or "") if m else (str(e), "")
    at = (f".{base}" if base else "") + path
    missing = _MISSING.match(what)
    field_path = (at + (f".{missing['name']}" if missing else "")).lstrip(".")
    if what.startswith("Number out of range"):  # e.g. 1e999, anywhere in the body
        sentence = "request body holds a number out of range (a JSON number must fit a 64-bit float)"
    else:
        sentence = _sentence(field_path, hook, missing is not None or "got `null`" in what)
    return BadRequest(f"{sentence} ({what} at `${at}`)", expression=[field_path] if field_path else None)


def _sentence(field_path: str, hook: str, absent: bool) -> str:
    """What is wrong with one field, in the words the API documentation uses."""
    generic = _INDEX.sub("[]", field_path)
    if not field_path:
        return "the request body must be a JSON object"
    if field_path == "hookInstance":
        return "hookInstance must be a UUID"
    if field_path == "fhirServer":
        return "fhirServer must be an absolute http(s) URL"
    if field_path == "fhirAuthorization":
        return "fhirAuthorization must be an object"
    if field_path == "fhirAuthorization.token_type" and not absent:
        return "fhirAuthorization.token_type must be Bearer"
    if field_path.startswith("fhirAuthorization."):
        kind = "number" if field_path.endswith("expires_in") else "string"
        return f"{field_path} is required ({kind})"
    if field_path == "prefetch" or field_path.startswith("prefetch"):
        return "prefetch must be a JSON object of key -> FHIR resource (or null)"
    if field_path == "context":
        return "context must be a JSON object" if not absent else f"context is required for the {hook} hook"
    if generic in ("context.draftOrders", "context.draftOrders.resourceType"):
        return (
            f"context.draftOrders is required for the {hook} hook"
            if absent and generic == "context.draftOrders"
            else "context.draftOrders must be a FHIR Bundle"
        )
    if generic == "context.draftOrders.entry":
        return "context.draftOrders.entry must be a list (a JSON array)"
    if generic.startswith("context.draftOrders.entry[]"):
        entry = field_path[: field_path.index("]") + 1]
        if generic in ("context.draftOrders.entry[]", "context.draftOrders.entry[].resource"):
            return f"{entry} has no resource with a resourceType"
        return f"{entry} is not a valid Bundle entry"
    if field_path.count(".") == 1 and field_path.startswith("context.") and absent:
        return f"{field_path} is required for the {hook} hook"
    if field_path == "context.userId":
        return (
            f"context.userId must be a reference like Practitioner/123 to one of "
            f"{', '.join(USER_TYPES[hook])}"
        )
    if field_path == "context.patientId":
        return "context.patientId must be a non-empty string: a Patient id, not a reference"
    if field_path == "context.selections":
        return "context.selections must be a list of strings"
    if field_path.startswith("context."):
        return f"{field_path} must be a non-empty string"
    if field_path == "hook":
        return "hook is required (the name of the hook that triggered this call)"
    return f"{field_path} is not valid"
