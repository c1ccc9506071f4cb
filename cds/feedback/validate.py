"""Validation of a feedback request body (CDS Hooks 2.0.1, "Feedback"), before any database work.

Every problem is reported as `feedback[i].field: why`, so an EHR developer can fix the entry.
Checks that need the issued card (is the uuid ours, are the suggestions of that card) happen in
the store, inside the transaction that stores the entries.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

from cds.feedback.records import FeedbackRecord, IssuedCard

OUTCOMES = ("accepted", "overridden")
MAX_ENTRIES = 1000
MAX_SUGGESTIONS = 100
# Clocks of EHR workstations drift; a timestamp further ahead than this is an error, not drift.
FUTURE_TOLERANCE_MS = 3600 * 1000
_ENTRY_KEYS = frozenset(
    {"card", "outcome", "acceptedSuggestions", "overrideReason", "outcomeTimestamp", "extension"}
)
_REASON_KEYS = frozenset({"reason", "userComment", "extension"})
_CODING_KEYS = frozenset({"system", "code", "display", "version", "userSelected"})
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


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


def _nonempty_str(value: Any, limit: int) -> TypeGuard[str]:
    return isinstance(value, str) and len(value.strip()) > 0 and len(value) <= limit and "\x00" not in value


def _unknown(obj: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise FeedbackError(
            f"{where}: unknown field(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})"
        )


def _entry(i: int, raw: Any, now_ms: int) -> FeedbackEntry:
    where = f"feedback[{i}]"
    if not isinstance(raw, dict):
        raise FeedbackError(f"{where}: must be an object")
    _unknown(raw, _ENTRY_KEYS, where)
    card = raw.get("card")
    if not _nonempty_str(card, 128):
        raise FeedbackError(f"{where}.card: required, the uuid of a card this service returned")
    outcome = raw.get("outcome")
    if outcome not in OUTCOMES:
        raise FeedbackError(f"{where}.outcome: must be 'accepted' or 'overridden', not {outcome!r}")
    ts = raw.get("outcomeTimestamp")
    when = parse_rfc3339(ts)
    if when is None:
        raise FeedbackError(
            f"{where}.outcomeTimestamp: required, an RFC 3339 date-time with a zone "
            f"(e.g. 2021-12-11T10:05:31Z), not {ts!r}"
        )
    outcome_ms = int(when.timestamp() * 1000)
    if outcome_ms > now_ms + FUTURE_TOLERANCE_MS:
        raise FeedbackError(f"{where}.outcomeTimestamp: {ts} is in the future")

    accepted: list[str] = []
    if "acceptedSuggestions" in raw:
        items = raw["acceptedSuggestions"]
        if outcome != "accepted":
            raise FeedbackError(f"{where}.acceptedSuggestions: only allowed with outcome 'accepted'")
        if not isinstance(items, list) or not items:
            raise FeedbackError(f'{where}.acceptedSuggestions: must be a non-empty array of {{"id": uuid}}')
        if len(items) > MAX_SUGGESTIONS:
            raise FeedbackError(f"{where}.acceptedSuggestions: more than {MAX_SUGGESTIONS} entries")
        for j, item in enumerate(items):
            if not isinstance(item, dict) or not _nonempty_str(item.get("id"), 128):
                raise FeedbackError(
                    f"{where}.acceptedSuggestions[{j}]: must be an object with an id (suggestion uuid)"
                )
            _unknown(item, frozenset({"id", "extension"}), f"{where}.acceptedSuggestions[{j}]")
            accepted.append(item["id"])
    elif outcome == "accepted":
        raise FeedbackError(f"{where}.acceptedSuggestions: required when the outcome is 'accepted'")

    system = code = None
    has_comment = False
    if "overrideReason" in raw:
        reason = raw["overrideReason"]
        if outcome != "overridden":
            raise FeedbackError(f"{where}.overrideReason: only allowed with outcome 'overridden'")
        if not isinstance(reason, dict):
            raise FeedbackError(f"{where}.overrideReason: must be an object with reason and/or userComment")
        _unknown(reason, _REASON_KEYS, f"{where}.overrideReason")
        if "reason" not in reason and "userComment" not in reason:
            raise FeedbackError(f"{where}.overrideReason: needs a reason (Coding) and/or a userComment")
        if "reason" in reason:
            coding = reason["reason"]
            if not isinstance(coding, dict):
                raise FeedbackError(f"{where}.overrideReason.reason: must be a Coding object")
            _unknown(coding, _CODING_KEYS, f"{where}.overrideReason.reason")
            if not _nonempty_str(coding.get("system"), 512):
                raise FeedbackError(f"{where}.overrideReason.reason.system: required, a code system URI")
            if not _nonempty_str(coding.get("code"), 256):
                raise FeedbackError(f"{where}.overrideReason.reason.code: required, a non-empty string")
            if "display" in coding and not isinstance(coding["display"], str):
                raise FeedbackError(f"{where}.overrideReason.reason.display: must be a string")
            system, code = coding["system"], coding["code"]
        if "userComment" in reason:
            if not isinstance(reason["userComment"], str):
                raise FeedbackError(f"{where}.overrideReason.userComment: must be a string")
            has_comment = bool(reason["userComment"].strip())
    return FeedbackEntry(
        index=i,
        card=card,
        outcome=outcome,
        outcome_ms=outcome_ms,
        accepted_suggestions=tuple(accepted),
        reason_system=system,
        reason_code=code,
        has_comment=has_comment,
    )


def parse_feedback(body: Any, now_ms: int) -> list[FeedbackEntry]:
    """The entries of a feedback request body, or FeedbackError naming the first bad entry."""
    if not isinstance(body, dict):
        raise FeedbackError('the body must be a JSON object {"feedback": [...]}')
    extra = sorted(set(body) - {"feedback", "extension"})
    if extra:
        raise FeedbackError(f'unknown field(s) {", ".join(extra)}; the body is {{"feedback": [...]}}')
    items = body.get("feedback")
    if not isinstance(items, list) or not items:
        raise FeedbackError("feedback: required, a non-empty array of Feedback objects")
    if len(items) > MAX_ENTRIES:
        raise FeedbackError(f"feedback: at most {MAX_ENTRIES} entries per request ({len(items)} sent)")
    return [_entry(i, raw, now_ms) for i, raw in enumerate(items)]


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
