"""Cards and feedback entries for the feedback tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from starlette.types import ASGIApp, Receive, Scope, Send

from cds.auth.caller import Caller
from cds.auth.clients import TrustedClient
from cds.feedback.store import FeedbackStore
from cds.feedback.validate import parse_feedback
from cds.hooks.cards import Card, Source, Suggestion, override_reason

SERVICE = "medication-risk"
ISSUER = "https://ehr.example.org"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PATIENT_ID = "Patient-5b3e1c"


def a_card(
    kind: str = "ddi:warfarin-nsaid", indicator: str = "warning", version: str | None = "1.0.0"
) -> Card:
    return Card(
        summary="Warfarin + ibuprofen: bleeding risk",
        indicator=indicator,  # type: ignore[arg-type]
        source=Source("cds test"),
        kind=kind,
        suggestions=(Suggestion("Stop ibuprofen"), Suggestion("Use paracetamol")),
        override_reasons=(override_reason("benefit", "Benefit outweighs risk"),),
        score=0.42,
        model_version=version,
    )


def accepted(card: Card, when: str = "2026-03-01T12:05:00Z", n: int = 0) -> dict:
    return {
        "card": card.uuid,
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": card.suggestions[n].uuid}],
        "outcomeTimestamp": when,
    }


def overridden(card: Card, when: str = "2026-03-01T12:05:00Z", code: str | None = "benefit") -> dict:
    entry = {"card": card.uuid, "outcome": "overridden", "outcomeTimestamp": when}
    if code:
        entry["overrideReason"] = {
            "reason": {"system": "https://cds.example.org/CodeSystem/override-reason", "code": code},
            "userComment": "Patient Jane Doe, MRN 123456, INR 2.1",
        }
    return entry


async def send(store: FeedbackStore, *entries: dict, service: str = SERVICE) -> int:
    parsed = parse_feedback({"feedback": list(entries)}, int(time.time() * 1000))
    return (await store.record_feedback(service, parsed)).stored


class AsCaller:
    """ASGI wrapper that marks every request as authenticated for `iss`/`tenant` (what the AuthGate
    does after checking the JWT), for tests of the routes alone."""

    def __init__(self, app: ASGIApp, iss: str = ISSUER, tenant: str | None = None) -> None:
        self.app = app
        self.caller = Caller(iss=iss, sub=None, tenant=tenant, jti="test", client=TrustedClient(iss=iss))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})["caller"] = self.caller
        await self.app(scope, receive, send)
