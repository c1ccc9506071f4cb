"""Cards, declared once: msgspec `Struct`s that can only produce spec-valid CDS Hooks 2.0 JSON.

The declarations below are the wire contract of a service's answer (CDS Hooks 2.0.1 "CDS Service
Response"): the encoder (`omit_defaults`: an empty optional field is omitted, never null), the
OpenAPI components (`cds.web.openapi` asks msgspec for their JSON Schema, plus the cross-field
rules each struct states in `JSON_SCHEMA_RULES`) and the QA scenarios' card check
(`cds.sandbox.scenarios`, which decodes an answer's cards against `WireCard`) all come from here.
The same rules are checked at construction (`__post_init__`), so a service that builds a bad card
fails in its own tests, not in an EHR.

Besides the spec fields a card carries `kind` (the rule, measure or band that produced it; sent
as `source.topic` so clients and QA scenarios can tell cards apart), and `score` and
`model_version`, which the service records (for feedback and analytics) but never sends.
"""

from __future__ import annotations

import uuid as _uuid
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias, get_args
from urllib.parse import urlsplit

import msgspec
import orjson
from msgspec import UNSET, Meta, Struct, UnsetType

Indicator = Literal["info", "warning", "critical"]
INDICATORS: tuple[str, ...] = get_args(Indicator)
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
SelectionBehavior = Literal["at-most-one", "any"]
ActionType = Literal["create", "update", "delete"]
SUMMARY_MAX = 139  # CDS Hooks: "<140-character summary"

OVERRIDE_SYSTEM = "https://cds.example.org/CodeSystem/override-reason"
# Card kinds travel as `source.topic` (the spec's categorisation "for filtering, searching or
# ordered display"), so EHRs, QA scenarios and analytics can tell cards apart without the summary.
CARD_KIND_SYSTEM = "https://cds.example.org/CodeSystem/card-kind"

if TYPE_CHECKING:
    Omitted: TypeAlias = UnsetType | None  # a builder may pass None for an optional field
else:
    Omitted = UnsetType  # the wire (and its JSON Schema) knows no null: the field is omitted
NonEmpty = Annotated[str, Meta(min_length=1)]
Summary = Annotated[str, Meta(min_length=1, max_length=SUMMARY_MAX, pattern=r"\S")]
Uuid = Annotated[str, Meta(extra_json_schema={"format": "uuid"})]
AbsoluteUrl = Annotated[str, Meta(pattern="^https?://[^/?#]+", extra_json_schema={"format": "uri"})]
ResourceRef = Annotated[str, Meta(pattern="^[A-Za-z]+/.+")]
FhirResource = Annotated[
    dict[str, Any],
    Meta(
        description="A FHIR R4 resource (JSON).",
        extra_json_schema={
            "required": ["resourceType"],
            "properties": {"resourceType": {"type": "string", "minLength": 1}},
        },
    ),
]


def _new_uuid() -> str:
    return str(_uuid.uuid4())


def _absolute(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


class _Wire(Struct, frozen=True, omit_defaults=True, rename="camel"):
    """Shared configuration: camelCase on the wire, defaults (empty) omitted. A builder may pass
    None or "" for an optional field: it becomes UNSET, i.e. omitted."""

    def _omit_empty(self, *names: str) -> None:
        for name in names:
            if getattr(self, name) in (None, ""):
                msgspec.structs.force_setattr(self, name, UNSET)


class Coding(_Wire, frozen=True):
    """CDS Hooks Coding (a trimmed FHIR Coding)."""

    code: NonEmpty
    system: NonEmpty
    display: NonEmpty | Omitted = UNSET

    def __post_init__(self) -> None:
        if not self.code or not self.system:
            raise ValueError("Coding needs a code and a system")
        self._omit_empty("display")


class OverrideReason(Coding, frozen=True):
    """A reason a clinician may give for overriding a card: a Coding with a display."""

    display: NonEmpty

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.display:
            raise ValueError("overrideReasons must each have a display")


class Source(_Wire, frozen=True):
    label: NonEmpty
    url: AbsoluteUrl | Omitted = UNSET
    icon: AbsoluteUrl | Omitted = UNSET
    topic: (
        Annotated[
            Coding,
            Meta(
                description="The kind of card (rule, measure or risk band) in "
                f"{CARD_KIND_SYSTEM}, unless the source names its own topic."
            ),
        ]
        | Omitted
    ) = UNSET

    def __post_init__(self) -> None:
        if not self.label:
            raise ValueError("Source.label is required")
        self._omit_empty("url", "icon", "topic")
        for u in (self.url, self.icon):
            if isinstance(u, str) and not _absolute(u):
                raise ValueError(f"Source url/icon must be absolute: {u!r}")


class Action(_Wire, frozen=True):
    """A change the CDS client applies: `create`/`update` carry the full resource, `delete` the
    relative reference `Type/id` of the resource in `resourceId`."""

    type: ActionType
    description: NonEmpty
    resource: FhirResource | Omitted = UNSET
    resource_id: ResourceRef | Omitted = UNSET

    JSON_SCHEMA_RULES: ClassVar[dict[str, Any]] = {
        "allOf": [
            {
                "if": {"properties": {"type": {"enum": ["create", "update"]}}},
                "then": {"required": ["resource"]},
            },
            {"if": {"properties": {"type": {"const": "delete"}}}, "then": {"required": ["resourceId"]}},
        ]
    }

    def __post_init__(self) -> None:
        self._omit_empty("resource", "resource_id")
        if self.type not in get_args(ActionType):
            raise ValueError(f"Action.type must be create, update or delete, not {self.type!r}")
        if not self.description:
            raise ValueError("Action.description is required")
        if self.type in ("create", "update") and not (
            isinstance(self.resource, dict) and self.resource.get("resourceType")
        ):
            raise ValueError(f"a {self.type} action needs a complete FHIR resource")
        if self.type == "delete" and not (isinstance(self.resource_id, str) and "/" in self.resource_id):
            raise ValueError("a delete action needs resourceId as a relative reference Type/id")


SystemAction = Action  # CDS Hooks 2.0 systemActions are Actions the client applies without a card


class Suggestion(_Wire, frozen=True):
    label: NonEmpty
    actions: Annotated[tuple[Action, ...], Meta(min_length=1)] = ()
    is_recommended: bool | Omitted = UNSET
    uuid: Uuid = msgspec.field(default_factory=_new_uuid)

    JSON_SCHEMA_RULES: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        if not self.label:
            raise ValueError("Suggestion.label is required")
        self._omit_empty("is_recommended")


class Link(_Wire, frozen=True):
    label: NonEmpty
    url: NonEmpty
    # Required on the wire; a builder that names none makes an absolute link (set in __post_init__,
    # so that omit_defaults never drops it).
    type: Literal["absolute", "smart"] | Omitted = UNSET
    app_context: Annotated[str, Meta(description="Only on `smart` links.")] | Omitted = UNSET

    JSON_SCHEMA_RULES: ClassVar[dict[str, Any]] = {
        "required": ["type"],
        "allOf": [
            {
                "if": {"properties": {"type": {"const": "absolute"}}},
                "then": {
                    "properties": {
                        "url": {"type": "string", "format": "uri", "pattern": "^https?://[^/?#]+"}
                    },
                    "not": {"required": ["appContext"]},
                },
            }
        ],
    }

    def __post_init__(self) -> None:
        self._omit_empty("app_context")
        if self.type is UNSET:
            msgspec.structs.force_setattr(self, "type", "absolute")
        if not self.label or not self.url:
            raise ValueError("Link needs a label and a url")
        if self.type not in ("absolute", "smart"):
            raise ValueError("Link.type must be absolute or smart")
        if self.type == "absolute" and not _absolute(self.url):
            raise ValueError(f"an absolute link needs an absolute URL: {self.url!r}")
        if self.app_context is not UNSET and self.type != "smart":
            raise ValueError("appContext is only valid on smart links")


def _card_rules(card: Any) -> None:
    """The card rules one field cannot state alone (for the builder and the wire card alike)."""
    if not card.summary or not card.summary.strip():
        raise ValueError("Card.summary is required")
    if len(card.summary) > SUMMARY_MAX:
        raise ValueError(f"Card.summary must be under 140 characters ({len(card.summary)})")
    if card.indicator not in INDICATORS:
        raise ValueError(f"Card.indicator must be one of {INDICATORS}")
    if card.selection_behavior not in (UNSET, "at-most-one", "any"):
        raise ValueError("selectionBehavior must be at-most-one or any")
    if bool(card.suggestions) != (card.selection_behavior is not UNSET):
        raise ValueError("selectionBehavior is required with suggestions, and only with them")
    if (
        card.selection_behavior == "at-most-one"
        and sum(s.is_recommended is True for s in card.suggestions) > 1
    ):
        raise ValueError("at most one suggestion may be recommended with at-most-one")
    for r in card.override_reasons:
        if not r.display:
            raise ValueError("overrideReasons must each have a display")


class Card(_Wire, frozen=True):
    """One CDS Hooks card as a service builds it (CDS Hooks 2.0.1 "Card Attributes"). `kind` names
    the rule/measure/band that produced it; it is sent as `source.topic` (system CARD_KIND_SYSTEM)
    unless the source carries its own topic. `score` and `model_version` stay on this side of the
    wire: `WireCard`, the card as sent, is derived from these fields without them."""

    summary: Summary
    indicator: Indicator
    source: Source
    kind: str
    detail: Annotated[str, Meta(min_length=1, description="GitHub Flavored Markdown.")] | Omitted = UNSET
    suggestions: Annotated[tuple[Suggestion, ...], Meta(min_length=1)] = ()
    selection_behavior: SelectionBehavior | Omitted = UNSET
    override_reasons: Annotated[tuple[OverrideReason, ...], Meta(min_length=1)] = ()
    links: Annotated[tuple[Link, ...], Meta(min_length=1)] = ()
    uuid: Annotated[Uuid, Meta(description="Quote it in feedback.")] = msgspec.field(
        default_factory=_new_uuid
    )
    score: float | None = None
    model_version: str | None = None

    def __post_init__(self) -> None:
        self._omit_empty("detail", "selection_behavior")
        if not self.kind:
            raise ValueError("Card.kind is required (for feedback and analytics)")
        if self.suggestions and self.selection_behavior is UNSET:
            # The spec makes selectionBehavior mandatory with suggestions; one choice is the safe default.
            msgspec.structs.force_setattr(self, "selection_behavior", "at-most-one")
        if not self.suggestions:
            msgspec.structs.force_setattr(self, "selection_behavior", UNSET)
        _card_rules(self)

    def suggestion_uuids(self) -> tuple[str, ...]:
        return tuple(s.uuid for s in self.suggestions)

    def wire(self) -> Any:
        """The card as sent (a WireCard: its kind as source.topic; score and model version left out)."""
        source = self.source
        if source.topic is UNSET:
            source = msgspec.structs.replace(source, topic=Coding(code=self.kind, system=CARD_KIND_SYSTEM))
        return WireCard(
            uuid=self.uuid,
            summary=self.summary,
            indicator=self.indicator,
            source=source,
            detail=self.detail,
            suggestions=self.suggestions,
            selection_behavior=self.selection_behavior,
            override_reasons=self.override_reasons,
            links=self.links,
        )

    def to_json(self) -> dict[str, Any]:
        """The card as JSON data (what `encode_response` sends)."""
        return orjson.loads(_ENCODER.encode(self.wire()))


_INTERNAL = ("kind", "score", "model_version")  # never sent
# The card as sent, derived from Card's declaration: the OpenAPI `Card` component and the QA card
# check decode against it. Its uuid is required (a client quotes it in feedback).
WireCard: Any = msgspec.defstruct(
    "Card",
    [
        (f.name, f.type) if f.name == "uuid" else (f.name, f.type, f.default)
        for f in sorted(msgspec.structs.fields(Card), key=lambda f: f.name != "uuid")
        if f.name not in _INTERNAL
    ],
    bases=(_Wire,),
    kw_only=True,
    frozen=True,
    forbid_unknown_fields=True,
    module=__name__,
    namespace={
        "__post_init__": _card_rules,
        "__doc__": "A CDS Hooks card. Optional fields are omitted, never null or empty.",
        "JSON_SCHEMA_RULES": {
            "dependentRequired": {"suggestions": ["selectionBehavior"], "selectionBehavior": ["suggestions"]},
        },
    },
)


class CdsServiceResponse(_Wire, frozen=True, forbid_unknown_fields=True):
    """The answer to a hook call."""

    cards: list[WireCard]
    system_actions: Annotated[tuple[SystemAction, ...], Meta(min_length=1)] = ()


_ENCODER = msgspec.json.Encoder()
WIRE_TYPES: tuple[type[Struct], ...] = (
    Coding,
    OverrideReason,
    Action,
    Suggestion,
    Link,
    Source,
    WireCard,
    CdsServiceResponse,
)


def encode_response(cards: list[Card]) -> bytes:
    """The JSON body of a hook answer: `{"cards": [...]}`, encoded by msgspec from the declarations."""
    return _ENCODER.encode(CdsServiceResponse(cards=[c.wire() for c in cards]))


def override_reason(code: str, display: str) -> OverrideReason:
    """An override reason in this service's own code system."""
    return OverrideReason(code=code, system=OVERRIDE_SYSTEM, display=display)


def truncate_summary(text: str, limit: int = SUMMARY_MAX) -> str:
    """Shorten a summary to fit the spec's limit, on a word boundary, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def could_not_evaluate_card(service_id: str, title: str) -> Card:
    """The card sent when a service could not evaluate a chart (data it could not read): the
    clinician must know the patient was not checked, rather than read silence as "all clear"."""
    return Card(
        summary=truncate_summary(f"{title}: not checked for this patient (chart data could not be read)"),
        indicator="warning",
        source=Source(label=f"{title} (cds)"),
        kind=f"{service_id}:not-evaluated",
        detail=(
            "The service could not evaluate this patient's record because part of the data it "
            "received was malformed. No result is not a normal result: check manually. The error "
            "has been logged for the service's operators."
        ),
    )
