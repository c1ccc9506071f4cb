"""Validation of a feedback request body (CDS Hooks 2.0.1, "Feedback"), before any database work.

Every problem is reported as `feedback[i].field: why`, so an EHR developer can fix the entry.
Checks that need the issued card (is the uuid ours, are the suggestions of that card) happen in
the store, inside the transaction that stores the entries.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from cds.feedback.records import FeedbackRecord, IssuedCard

OUTCOMES = ("accepted", "overridden")
MAX_ENTRIES = 1000
MAX_SUGGESTIONS = 100
# Clocks of EHR workstations drift; a timestamp further ahead than this is an error, not drift.
FUTURE_TOLERANCE_MS = 3600 * 1000
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_TEXT = r"^[^\x00]*[^\s\x00][^\x00]*$"  # not blank, no NUL (a database would refuse or cut it)


Uuid = Annotated[str, Meta(pattern=_TEXT, min_length=1, max_length=128)]


# --- the body, declared once (CDS Hooks 2.0.1 "Feedback"); the OpenAPI components come from here ---
class FeedbackCoding(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The override reason chosen: one of the card's `overrideReasons` (system and code)."""

    system: Annotated[
        str, Meta(pattern=_TEXT, min_length=1, max_length=512, description="A code system URI.")
    ]
    code: Annotated[str, Meta(pattern=_TEXT, min_length=1, max_length=256)]
    display: str | UnsetType = UNSET
    version: str | UnsetType = UNSET
    userSelected: bool | UnsetType = UNSET


class FeedbackOverrideReason(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Why the card was overridden: a coded reason and/or a comment (never stored, only whether any)."""

    reason: FeedbackCoding | UnsetType = UNSET
    userComment: str | UnsetType = UNSET
    extension: Any = UNSET


class AcceptedSuggestion(Struct, forbid_unknown_fields=True, omit_defaults=True):
    id: Annotated[Uuid, Meta(description="The suggestion's uuid.")]
    extension: Any = UNSET


class Feedback(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One card's outcome. `acceptedSuggestions` goes with `accepted`, `overrideReason` with `overridden`."""

    card: Annotated[Uuid, Meta(description="The card's uuid.")]
    outcome: Literal["accepted", "overridden"]
    outcomeTimestamp: Annotated[
        str,
        Meta(
            pattern=_RFC3339.pattern,
            extra_json_schema={"format": "date-time"},
            description="RFC 3339 section 5.6 date-time, with a zone.",
        ),
    ]
    acceptedSuggestions: (
        Annotated[list[AcceptedSuggestion], Meta(min_length=1, max_length=MAX_SUGGESTIONS)] | UnsetType
    ) = UNSET
    overrideReason: FeedbackOverrideReason | UnsetType = UNSET
    extension: Any = UNSET


# Not records.FeedbackRequest (a batch the store commits): this is what the EHR sends.
class FeedbackRequest(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The body of `POST /cds-services/{id}/feedback`."""

    feedback: Annotated[list[Feedback], Meta(min_length=1, max_length=MAX_ENTRIES)]
    extension: Any = UNSET


class FeedbackResponse(Struct):
    """The answer to a committed feedback request."""

    received: Annotated[int, Meta(ge=1)]
    stored: Annotated[int, Meta(ge=0, description="New entries (repeats are stored once).")]


_WHEN = "YYYY-MM-DD, an RFC 3339 date-time, `now`, or an age before now (`90m`, `12h`, `7d`, `2w`)."


class SummaryQuery(Struct, forbid_unknown_fields=True):
    """The query of `GET /feedback/summary`: a time range (see report.time_range) and a service id."""

    since: Annotated[str | None, Meta(description=_WHEN + " Default: 30 days before `until`.")] = None
    until: Annotated[str | None, Meta(description=_WHEN + " Default: now.")] = None
    service: Annotated[str | None, Meta(description="Only the cards of this service (its id).")] = None


def parse_summary_query(params: Mapping[str, str]) -> SummaryQuery:
    """The summary query from URL parameters (empty means absent), or FeedbackError for an unknown one."""
    allowed = [f.encode_name for f in msgspec.structs.fields(SummaryQuery)]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise FeedbackError(f"unknown query parameter(s) {', '.join(unknown)}; use {', '.join(allowed)}")
    return msgspec.convert({k: v or None for k, v in params.items()}, SummaryQuery)


# The cross-field rules `_entry` enforces, in JSON Schema for the OpenAPI components.
CROSS_FIELD_SCHEMA: dict[str, dict[str, Any]] = {
    "Feedback": {
        "allOf": [
            {
                "if": {"properties": {"outcome": {"const": "accepted"}}},
                "then": {"required": ["acceptedSuggestions"], "not": {"required": ["overrideReason"]}},
                "else": {"not": {"required": ["acceptedSuggestions"]}},
            }
        ]
    },
    "FeedbackOverrideReason": {"anyOf": [{"required": ["reason"]}, {"required": ["userComment"]}]},
}

# What each field must be, said the way an EHR developer can fix it (path with [] for any index).
_HINTS = {
    "": 'the body must be a JSON object {"feedback": [...]}',
    "feedback": "required, a non-empty array of Feedback objects",
    "feedback[]": "must be an object",
    "feedback[].card": "required, the uuid of a card this service returned",
    "feedback[].outcome": "must be 'accepted' or 'overridden', not {value!r}",
    "feedback[].outcomeTimestamp": (
        "required, an RFC 3339 date-time with a zone (e.g. 2021-12-11T10:05:31Z), not {value!r}"
    ),
    "feedback[].acceptedSuggestions": 'must be a non-empty array of {"id": uuid}',
    "feedback[].acceptedSuggestions[]": "must be an object with an id (suggestion uuid)",
    "feedback[].acceptedSuggestions[].id": "must be an object with an id (suggestion uuid)",
    "feedback[].overrideReason": "must be an object with reason and/or userComment",
    "feedback[].overrideReason.reason": "must be a Coding object",
    "feedback[].overrideReason.reason.system": "required, a code system URI",
    "feedback[].overrideReason.reason.code": "required, a non-empty string",
    "feedback[].overrideReason.reason.display": "must be a string",
    "feedback[].overrideReason.reason.version": "must be a string",
    "feedback[].overrideReason.reason.userSelected": "must be a boolean",
    "feedback[].overrideReason.userComment": "must be a string",
}
_OBJECTS: dict[str, type[Struct]] = {
    "": FeedbackRequest,
    "feedback[]": Feedback,
    "feedback[].acceptedSuggestions[]": AcceptedSuggestion,
    "feedback[].overrideReason": FeedbackOverrideReason,
    "feedback[].overrideReason.reason": FeedbackCoding,
}
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?$", re.S)
_FIELD = re.compile(r"`([^`]+)`")


class FeedbackError(ValueError):
    """A feedback request that cannot be accepted; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    """One syntactically valid feedback entry, not yet checked against the issued card."""

    index: int
    card: str
    outcome: str
    outcome_ms: int
    accepted_suggestions: tuple[str, ...] = ()
    reason_system: str | None = None
    reason_code: str | None = None
    has_comment: bool = False

    def entry_key(self, service_id: str) -> str:
        """A digest of everything stored of the entry: equal entries are stored once."""
        parts = (
            service_id,
            self.card,
            self.outcome,
            ",".join(sorted(set(self.accepted_suggestions))),
            self.reason_system or "",
            self.reason_code or "",
            "1" if self.has_comment else "0",
            str(self.outcome_ms),
        )
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def parse_rfc3339(value: Any) -> datetime | None:
    """A UTC datetime for an RFC 3339 section 5.6 date-time (zone required); None if not one."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        return None
    text = value.upper().replace("Z", "+00:00")
    date_time, sep, rest = text.partition(".")
    if sep:  # datetime.fromisoformat takes at most 6 fractional digits
        digits = re.match(r"\d+", rest)
        assert digits is not None
        text = f"{date_time}.{digits.group()[:6].ljust(6, '0')}{rest[digits.end() :]}"
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        return None


def _shape_error(error: msgspec.ValidationError, body: Any) -> FeedbackError:
    """msgspec's first problem, said with the entry's index and the field's hint."""
    m = _AT.match(str(error))
    assert m is not None
    msg, path = m.group("msg"), m.group("path") or ""
    general = re.sub(r"\[\d+\]", "[]", path)
    field = _FIELD.search(msg)
    if msg.startswith("Object contains unknown field") and field and general in _OBJECTS:
        allowed = sorted(f.encode_name for f in msgspec.structs.fields(_OBJECTS[general]))
        if general == "":
            return FeedbackError(f'unknown field(s) {field.group(1)}; the body is {{"feedback": [...]}}')
        return FeedbackError(f"{path}: unknown field(s) {field.group(1)} (allowed: {', '.join(allowed)})")
    if msg.startswith("Object missing required field") and field:
        path = f"{path}.{field.group(1)}" if path else field.group(1)
        general = f"{general}.{field.group(1)}" if general else field.group(1)
    if general == "feedback" and "length <=" in msg:
        return FeedbackError(
            f"feedback: at most {MAX_ENTRIES} entries per request ({len(body['feedback'])} sent)"
        )
    if general == "feedback[].acceptedSuggestions" and "length <=" in msg:
        return FeedbackError(f"{path}: more than {MAX_SUGGESTIONS} entries")
    hint = _HINTS.get(general, msg)
    value = _value(body, path)
    text = hint.format(value=value) if "{value" in hint else hint
    return FeedbackError(f"{path}: {text}" if path else text)


def _value(body: Any, path: str) -> Any:
    """The value at a path like feedback[1].outcome (None if absent): for messages only."""
    node = body
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        if index:
            node = node[int(index)] if isinstance(node, list) and int(index) < len(node) else None
        else:
            node = node.get(name) if isinstance(node, dict) else None
    return node


def _entry(i: int, f: Feedback, now_ms: int) -> FeedbackEntry:
    """The cross-field rules of one decoded entry (the declaration checked everything else)."""
    where = f"feedback[{i}]"
    when = parse_rfc3339(f.outcomeTimestamp)
    if when is None:  # matches the pattern but is no date (month 13, ...)
        raise FeedbackError(
            f"{where}.outcomeTimestamp: required, an RFC 3339 date-time with a zone "
            f"(e.g. 2021-12-11T10:05:31Z), not {f.outcomeTimestamp!r}"
        )
    outcome_ms = int(when.timestamp() * 1000)
    if outcome_ms > now_ms + FUTURE_TOLERANCE_MS:
        raise FeedbackError(f"{where}.outcomeTimestamp: {f.outcomeTimestamp} is in the future")
    if f.acceptedSuggestions is not UNSET and f.outcome != "accepted":
        raise FeedbackError(f"{where}.acceptedSuggestions: only allowed with outcome 'accepted'")
    if f.acceptedSuggestions is UNSET and f.outcome == "accepted":
        raise FeedbackError(f"{where}.acceptedSuggestions: required when the outcome is 'accepted'")
    accepted = tuple(s.id for s in f.acceptedSuggestions or ())
    system = code = None
    has_comment = False
    reason = f.overrideReason
    if reason is not UNSET:
        if f.outcome != "overridden":
            raise FeedbackError(f"{where}.overrideReason: only allowed with outcome 'overridden'")
        if reason.reason is UNSET and reason.userComment is UNSET:
            raise FeedbackError(f"{where}.overrideReason: needs a reason (Coding) and/or a userComment")
        if reason.reason is not UNSET:
            system, code = reason.reason.system, reason.reason.code
        has_comment = reason.userComment is not UNSET and bool(reason.userComment.strip())
    return FeedbackEntry(
        index=i,
        card=f.card,
        outcome=f.outcome,
        outcome_ms=outcome_ms,
        accepted_suggestions=accepted,
        reason_system=system,
        reason_code=code,
        has_comment=has_comment,
    )


def parse_feedback(body: Any, now_ms: int) -> list[FeedbackEntry]:
    """The entries of a feedback request body, or FeedbackError naming the first bad entry."""
    try:
        request = msgspec.convert(body, FeedbackRequest)
    except msgspec.ValidationError as e:
        raise _shape_error(e, body) from None
    return [_entry(i, f, now_ms) for i, f in enumerate(request.feedback)]


def match_cards(
    service_id: str,
    entries: list[FeedbackEntry] | tuple[FeedbackEntry, ...],
    cards: dict[str, IssuedCard],
    received_ms: int,
    *,
    issuer: str | None = None,
    tenant: str = "",
) -> list[FeedbackRecord]:
    """The rows to store, checked against the issued cards (uuid -> what the card was).

    A card this service did not issue to this caller (`issuer` and `tenant`; None: unscoped tools),
    or one deleted after the retention period, is a 400 that does not say which (another client's
    card uuid reveals nothing), as is an accepted suggestion that is not one of that card's, or an
    override reason the card did not offer: the request is wrong, not the URL.
    """
    rows = []
    for e in entries:
        card = cards.get(e.card)
        if card is None or not card.issued_to(issuer, tenant):
            raise FeedbackError(
                f"feedback[{e.index}].card: {e.card} is not a card issued by the {service_id} service to "
                f"this client (unknown uuid, another client's card, or deleted after the retention period)"
            )
        for j, sid in enumerate(e.accepted_suggestions):
            if sid not in card.suggestions:
                raise FeedbackError(
                    f"feedback[{e.index}].acceptedSuggestions[{j}].id: {sid} is not a suggestion "
                    f"of card {e.card}"
                )
        if e.reason_code is not None and (e.reason_system, e.reason_code) not in card.override_reasons:
            offered = ", ".join(sorted(c for _, c in card.override_reasons)) or "none"
            # The value sent is not echoed: it is free text from the client (it might hold anything).
            raise FeedbackError(
                f"feedback[{e.index}].overrideReason.reason: not one of the overrideReasons card {e.card} "
                f"offered (codes offered: {offered}); put free text in userComment, which is never stored"
            )
        rows.append(
            FeedbackRecord(
                card_uuid=e.card,
                service=service_id,
                outcome=e.outcome,
                outcome_ms=e.outcome_ms,
                received_ms=received_ms,
                entry_key=e.entry_key(service_id),
                accepted_suggestions=e.accepted_suggestions,
                reason_system=e.reason_system,
                reason_code=e.reason_code,
                has_comment=e.has_comment,
            )
        )
    return rows
