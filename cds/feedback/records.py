"""The rows the feedback store keeps: what we remember of an issued card, and of one feedback entry.

Nothing here identifies a patient: `patient_key` is an HMAC (cds.runtime.privacy.patient_key), and a
clinician's free-text comment is never kept, only whether there was one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CardRecord:
    """An issued card, as remembered for feedback, suppression and analytics."""

    uuid: str
    service: str
    kind: str
    indicator: str
    issued_ms: int  # epoch milliseconds, UTC
    patient_key: str
    model_version: str | None = None
    score: float | None = None
    suggestions: tuple[str, ...] = ()  # suggestion uuids
    issuer: str | None = None  # the client (JWT iss) it was issued to; None: no caller (tests, tools)
    tenant: str = ""  # the token's tenant claim, "" when none
    override_reasons: tuple[tuple[str, str], ...] = ()  # (system, code) of the reasons the card offered


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """One validated feedback entry. `entry_key` makes a repeated entry a no-op (idempotency)."""

    card_uuid: str
    service: str
    outcome: str  # accepted | overridden
    outcome_ms: int
    received_ms: int
    entry_key: str
    accepted_suggestions: tuple[str, ...] = ()
    reason_system: str | None = None
    reason_code: str | None = None
    has_comment: bool = False


@dataclass(frozen=True, slots=True)
class FeedbackRequest:
    """One feedback request: stored all or nothing, possibly in a transaction shared with others."""

    service: str
    entries: tuple[Any, ...]  # validate.FeedbackEntry
    received_ms: int
    issuer: str | None = None  # the caller's JWT iss: only its own cards; None: unscoped (tools, tests)
    tenant: str = ""


@dataclass(frozen=True, slots=True)
class IssuedCard:
    """What feedback on a card is checked against: its suggestions, owner and override reasons."""

    suggestions: tuple[str, ...]
    issuer: str | None
    tenant: str
    override_reasons: frozenset[tuple[str, str]]

    def issued_to(self, issuer: str | None, tenant: str) -> bool:
        """Whether a caller (None: unscoped tools) may give feedback on this card or see it."""
        return issuer is None or (self.issuer == issuer and self.tenant == tenant)


@dataclass(frozen=True, slots=True)
class RecentCard:
    """A card recently shown to the same patient, with whether it was overridden (suppression)."""

    kind: str
    indicator: str
    issued_ms: int
    overridden: bool


def card_params(r: CardRecord) -> dict[str, Any]:
    """Parameters of queries.INSERT_CARD."""
    score = r.score if r.score is not None and math.isfinite(r.score) else None
    return {
        "uuid": r.uuid,
        "service": r.service,
        "kind": r.kind,
        "indicator": r.indicator,
        "model_version": r.model_version,
        "score": score,
        "issued_ms": r.issued_ms,
        "patient_key": r.patient_key,
        "suggestions": json.dumps(list(r.suggestions)),
        "issuer": r.issuer,
        "tenant": r.tenant,
        "override_reasons": json.dumps([list(c) for c in r.override_reasons]),
    }


def feedback_params(r: FeedbackRecord) -> dict[str, Any]:
    """Row values (by queries.FEEDBACK_COLUMNS) for a FeedbackRecord."""
    return {
        "card_uuid": r.card_uuid,
        "service": r.service,
        "outcome": r.outcome,
        "accepted_suggestions": json.dumps(list(r.accepted_suggestions)),
        "reason_system": r.reason_system,
        "reason_code": r.reason_code,
        "has_comment": bool(r.has_comment),
        "outcome_ms": r.outcome_ms,
        "received_ms": r.received_ms,
        "entry_key": r.entry_key,
    }
