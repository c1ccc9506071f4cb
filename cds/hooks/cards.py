"""Cards: a small typed model that can only produce spec-valid CDS Hooks 2.0 JSON.

Validation happens at construction, so a service that builds a bad card fails in its own tests,
not in an EHR. Optional fields that are empty are omitted from the JSON, never sent as null.
Besides the spec fields a card carries `kind` (the rule, measure or band that produced it; sent
as `source.topic` so clients and QA scenarios can tell cards apart), and `score` and
`model_version`, which the service records (for feedback and analytics) but never sends.
"""

from __future__ import annotations

import uuid as _uuid
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

Indicator = Literal["info", "warning", "critical"]
INDICATORS: tuple[str, ...] = ("info", "warning", "critical")
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}

OVERRIDE_SYSTEM = "https://cds.example.org/CodeSystem/override-reason"
# Card kinds travel as `source.topic` (the spec's categorisation "for filtering, searching or
# ordered display"), so EHRs, QA scenarios and analytics can tell cards apart without the summary.
CARD_KIND_SYSTEM = "https://cds.example.org/CodeSystem/card-kind"


def _new_uuid() -> str:
    return str(_uuid.uuid4())


def _absolute(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


@dataclass(frozen=True)
class Coding:
    code: str
    system: str
    display: str | None = None

    def __post_init__(self) -> None:
        if not self.code or not self.system:
            raise ValueError("Coding needs a code and a system")

    def to_json(self) -> dict[str, Any]:
        d = {"system": self.system, "code": self.code}
        if self.display:
            d["display"] = self.display
        return d


@dataclass(frozen=True)
class Source:
    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None

    def __post_init__(self) -> None:
        if not self.label:
            raise ValueError("Source.label is required")
        for u in (self.url, self.icon):
            if u is not None and not _absolute(u):
                raise ValueError(f"Source url/icon must be absolute: {u!r}")

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"label": self.label}
        if self.url:
            d["url"] = self.url
        if self.icon:
            d["icon"] = self.icon
        if self.topic:
            d["topic"] = self.topic.to_json()
        return d


@dataclass(frozen=True)
class Action:
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resource_id: str | None = None

    def __post_init__(self) -> None:
        if self.type not in ("create", "update", "delete"):
            raise ValueError(f"Action.type must be create, update or delete, not {self.type!r}")
        if not self.description:
            raise ValueError("Action.description is required")
        if self.type in ("create", "update") and not (
            isinstance(self.resource, dict) and self.resource.get("resourceType")
        ):
            raise ValueError(f"a {self.type} action needs a complete FHIR resource")
        if self.type == "delete" and not (self.resource_id and "/" in self.resource_id):
            raise ValueError("a delete action needs resourceId as a relative reference Type/id")

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.resource is not None:
            d["resource"] = self.resource
        if self.resource_id:
            d["resourceId"] = self.resource_id
        return d


@dataclass(frozen=True)
class Suggestion:
    label: str
    actions: tuple[Action, ...] = ()
    is_recommended: bool | None = None
    uuid: str = field(default_factory=_new_uuid)

    def __post_init__(self) -> None:
        if not self.label:
            raise ValueError("Suggestion.label is required")

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"label": self.label, "uuid": self.uuid}
        if self.is_recommended is not None:
            d["isRecommended"] = self.is_recommended
        if self.actions:
            d["actions"] = [a.to_json() for a in self.actions]
        return d


@dataclass(frozen=True)
class Link:
    label: str
    url: str
    type: Literal["absolute", "smart"] = "absolute"
    app_context: str | None = None

    def __post_init__(self) -> None:
        if not self.label or not self.url:
            raise ValueError("Link needs a label and a url")
        if self.type not in ("absolute", "smart"):
            raise ValueError("Link.type must be absolute or smart")
        if self.type == "absolute" and not _absolute(self.url):
            raise ValueError(f"an absolute link needs an absolute URL: {self.url!r}")
        if self.app_context is not None and self.type != "smart":
            raise ValueError("appContext is only valid on smart links")

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"label": self.label, "url": self.url, "type": self.type}
        if self.app_context:
            d["appContext"] = self.app_context
        return d


@dataclass(frozen=True)
class Card:
    """One CDS Hooks card. `kind` names the rule/measure/band that produced it; it is sent as
    `source.topic` (system CARD_KIND_SYSTEM) unless the source carries its own topic."""

    summary: str
    indicator: Indicator
    source: Source
    kind: str
    detail: str | None = None
    suggestions: tuple[Suggestion, ...] = ()
    selection_behavior: Literal["at-most-one", "any"] | None = None
    override_reasons: tuple[Coding, ...] = ()
    links: tuple[Link, ...] = ()
    uuid: str = field(default_factory=_new_uuid)
    score: float | None = None
    model_version: str | None = None

    def __post_init__(self) -> None:
        if not self.summary or not self.summary.strip():
            raise ValueError("Card.summary is required")
        if len(self.summary) >= 140:
            raise ValueError(f"Card.summary must be under 140 characters ({len(self.summary)})")
        if self.indicator not in INDICATORS:
            raise ValueError(f"Card.indicator must be one of {INDICATORS}")
        if not self.kind:
            raise ValueError("Card.kind is required (for feedback and analytics)")
        if self.suggestions and self.selection_behavior is None:
            # The spec makes selectionBehavior mandatory with suggestions; one choice is the safe default.
            object.__setattr__(self, "selection_behavior", "at-most-one")
        if self.selection_behavior not in (None, "at-most-one", "any"):
            raise ValueError("selectionBehavior must be at-most-one or any")
        if (
            self.selection_behavior == "at-most-one"
            and sum(bool(s.is_recommended) for s in self.suggestions) > 1
        ):
            raise ValueError("at most one suggestion may be recommended with at-most-one")
        for r in self.override_reasons:
            if not r.display:
                raise ValueError("overrideReasons must each have a display")

    def suggestion_uuids(self) -> tuple[str, ...]:
        return tuple(s.uuid for s in self.suggestions)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "uuid": self.uuid,
            "summary": self.summary,
            "indicator": self.indicator,
            "source": self.source.to_json(),
        }
        if self.source.topic is None:
            d["source"]["topic"] = {"system": CARD_KIND_SYSTEM, "code": self.kind}
        if self.detail:
            d["detail"] = self.detail
        if self.suggestions:
            d["suggestions"] = [s.to_json() for s in self.suggestions]
            d["selectionBehavior"] = self.selection_behavior
        if self.override_reasons:
            d["overrideReasons"] = [r.to_json() for r in self.override_reasons]
        if self.links:
            d["links"] = [link.to_json() for link in self.links]
        return d


def override_reason(code: str, display: str) -> Coding:
    """An override reason in this service's own code system."""
    return Coding(code=code, system=OVERRIDE_SYSTEM, display=display)


def truncate_summary(text: str, limit: int = 139) -> str:
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
