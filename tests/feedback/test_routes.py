"""The HTTP endpoints, through ASGI, on both backends: status codes, OperationOutcome bodies,
idempotency and the summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette

from cds.feedback.store import FeedbackStore
from cds.web.feedback_routes import feedback_routes

from .helpers import ISSUER, AsCaller, a_card, accepted, overridden

pytestmark = pytest.mark.anyio

SERVICE = "medication-risk"


def client(app: Starlette, iss: str = ISSUER, tenant: str | None = None) -> httpx.AsyncClient:
    """A client authenticated as `iss` (and `tenant`)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=AsCaller(app, iss, tenant)), base_url="http://cds.test"
    )


async def post(store: FeedbackStore, body: object, service: str = SERVICE, **kw: object) -> httpx.Response:
    async with client(Starlette(routes=feedback_routes(store))) as c:
        if isinstance(body, bytes):
            return await c.post(f"/cds-services/{service}/feedback", content=body, **kw)  # type: ignore[arg-type]
        return await c.post(f"/cds-services/{service}/feedback", json=body)


def issue() -> list:
    return [a_card(), a_card(kind="renal:metformin", indicator="critical", version="2.0.0")]


def when(minutes: int = 1) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


async def test_feedback_is_stored_once(store: FeedbackStore) -> None:
    cards = issue()
    await store.filter_and_record(SERVICE, "pk1", cards, datetime.now(UTC), issuer=ISSUER)
    body = {"feedback": [accepted(cards[0], when()), overridden(cards[1], when())]}
    r = await post(store, body)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": 2, "stored": 2}
    r = await post(store, body)
    assert r.status_code == 200 and r.json() == {"received": 2, "stored": 0}
    assert await store.counts() == (2, 2)


async def test_bad_entry_is_a_400_operation_outcome_and_nothing_is_stored(store: FeedbackStore) -> None:
    cards = issue()
    await store.filter_and_record(SERVICE, "pk1", cards, datetime.now(UTC), issuer=ISSUER)
    bad = dict(accepted(cards[1], when()))
    del bad["acceptedSuggestions"]
    r = await post(store, {"feedback": [accepted(cards[0], when()), bad]})
    assert r.status_code == 400
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue_ = outcome["issue"][0]
    assert issue_["severity"] == "error" and issue_["code"] == "invalid"
    assert issue_["diagnostics"].startswith("feedback[1].acceptedSuggestions: required")
    assert issue_["expression"] == ["feedback[1].acceptedSuggestions"]
    unknown = await post(store, {"feedback": [accepted(cards[0], when()), overridden(a_card(), when())]})
    assert unknown.status_code == 400
    assert "feedback[1].card" in unknown.json()["issue"][0]["diagnostics"]
    assert await store.counts() == (2, 0)


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"{not json", {"content-type": "application/json"}, 400),
        (b'{"feedback": []}', {"content-type": "text/plain"}, 415),
        (b"", {"content-type": "application/json"}, 400),
        (b"[]", {"content-type": "application/json"}, 400),
    ],
)
async def test_malformed_requests(store: FeedbackStore, content: bytes, headers: dict, status: int) -> None:
    r = await post(store, content, headers=headers)
    assert r.status_code == status
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_unknown_service_is_a_404(store: FeedbackStore) -> None:
    r = await post(store, {"feedback": []}, service="no-such-service")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_no_store_is_a_503() -> None:
    async with client(Starlette(routes=feedback_routes(lambda: None))) as c:
        r = await c.post("/cds-services/care-gaps/feedback", json={"feedback": []})
        s = await c.get("/feedback/summary")
    assert r.status_code == s.status_code == 503
    assert r.headers["retry-after"]


async def test_summary(store: FeedbackStore) -> None:
    cards = issue()
    await store.filter_and_record(SERVICE, "pk1", cards, datetime.now(UTC), issuer=ISSUER)
    assert (await post(store, {"feedback": [overridden(cards[1], when())]})).status_code == 200
    async with client(Starlette(routes=feedback_routes(lambda: store))) as c:
        r = await c.get("/feedback/summary", params={"since": "1d", "service": SERVICE})
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["service"] == SERVICE and report["bucket"] == "hour"
        assert report["totals"] == {
            "issued": 2, "accepted": 0, "overridden": 1, "ignored": 1, "acceptance_rate": 0.0, "override_rate": 0.5,
        }  # fmt: skip
        renal = next(k for k in report["kinds"] if k["kind"] == "renal:metformin")
        assert renal["top_override_reasons"] == [
            {"code": "benefit", "cards": 1, "system": "https://cds.example.org/CodeSystem/override-reason"}
        ]
        assert renal["by_model_version"][0]["model_version"] == "2.0.0"
        assert renal["series"][0]["override_rate"] == 1.0
        for params in (
            {"since": "yesterday"},
            {"since": "now", "until": "1d"},
            {"service": "nope"},
            {"x": "1"},
        ):
            bad = await c.get("/feedback/summary", params=params)
            assert bad.status_code == 400, params
            assert bad.json()["resourceType"] == "OperationOutcome"


async def test_feedback_and_summary_are_scoped_to_the_caller(store: FeedbackStore) -> None:
    """Issue 15, finding 8: a client posts feedback only on cards issued to it (issuer and tenant),
    and its summary counts only those; the card uuid of another client's card reveals nothing."""
    mine, theirs, other_tenant = issue(), issue(), issue()
    now = datetime.now(UTC)
    await store.filter_and_record(SERVICE, "pk1", mine, now, issuer=ISSUER, tenant="t1")
    await store.filter_and_record(
        SERVICE, "pk2", theirs, now, issuer="https://other-ehr.example", tenant="t1"
    )
    await store.filter_and_record(SERVICE, "pk3", other_tenant, now, issuer=ISSUER, tenant="t2")
    app = Starlette(routes=feedback_routes(store))
    async with client(app, ISSUER, "t1") as c:
        path = f"/cds-services/{SERVICE}/feedback"
        for card in (theirs[0], other_tenant[0]):
            r = await c.post(path, json={"feedback": [overridden(card, when())]})
            assert r.status_code == 400, r.text
            assert "not a card issued by the medication-risk service to this client" in r.text
        assert (await c.post(path, json={"feedback": [overridden(mine[0], when())]})).status_code == 200
        report = (await c.get("/feedback/summary", params={"since": "1d"})).json()
    assert report["totals"]["issued"] == 2 and report["totals"]["overridden"] == 1
    async with client(app, "https://other-ehr.example", "t1") as c:
        report = (await c.get("/feedback/summary", params={"since": "1d"})).json()
    assert report["totals"]["issued"] == 2 and report["totals"]["overridden"] == 0
    assert await store.counts() == (6, 1)


async def test_an_override_reason_the_card_did_not_offer_is_a_400(store: FeedbackStore) -> None:
    cards = issue()
    await store.filter_and_record(SERVICE, "pk1", cards, datetime.now(UTC), issuer=ISSUER)
    free_text = overridden(cards[0], when(), code="Jane Doe MRN 123456")
    r = await post(store, {"feedback": [free_text]})
    assert r.status_code == 400
    assert "overrideReason.reason: not one of the overrideReasons" in r.text and "Jane" not in r.text
    assert await store.counts() == (2, 0)
