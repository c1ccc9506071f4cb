"""HTTP endpoints: `POST /cds-services/{id}/feedback` (CDS Hooks 2.0.1) and `GET /feedback/summary`.

Authentication is the app's middleware's job (these run behind it like the hook calls). Every
error is an OperationOutcome: 400 for a bad request (naming the entry and field), 404 for an
unknown service, 503 (with Retry-After) when the database cannot take the feedback right now.
A 200 means the entries are committed; repeating a request stores nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cds.feedback.report import build_report, time_range
from cds.feedback.store import FeedbackStore, to_ms
from cds.feedback.validate import FeedbackError, FeedbackResponse, parse_feedback, parse_summary_query
from cds.runtime.errors import HTTPProblem, operation_outcome, problem_response
from cds.runtime.settings import Settings
from cds.web.body import read_json

StoreRef = FeedbackStore | Callable[[], FeedbackStore | None]


def _service_ids(settings: Settings) -> frozenset[str]:
    from cds.hooks.discovery import Discovery

    return frozenset(Discovery.load(settings.hooks_file).services)


def _error(e: FeedbackError) -> Response:
    expression = [e.message.split(":", 1)[0]] if e.message.startswith("feedback") else None
    headers = {"Retry-After": "5"} if e.status == 503 else None
    return operation_outcome(e.status, e.message, expression, headers)


def _unavailable() -> Response:
    return operation_outcome(503, "the feedback store is unavailable (see the service log); retry later",
                             headers={"Retry-After": "30"})  # fmt: skip


def _owner(request: Request) -> tuple[str, str] | None:
    """The authenticated caller's (iss, tenant): feedback and summaries are scoped to it."""
    caller = request.scope.get("state", {}).get("caller")
    if caller is None:
        return None
    return caller.iss, caller.tenant or ""


def _no_caller() -> Response:
    return operation_outcome(401, "a valid signed JWT from a trusted CDS client is required",
                             headers={"WWW-Authenticate": "Bearer"})  # fmt: skip


def feedback_routes(store: StoreRef) -> list[Route]:
    """The routes, for a store or a getter returning it (None while it is unavailable)."""
    get_store: Callable[[], FeedbackStore | None] = (
        (lambda: store) if isinstance(store, FeedbackStore) else store
    )
    known: dict[int, frozenset[str]] = {}

    def services(s: FeedbackStore) -> frozenset[str]:
        if id(s) not in known:
            known[id(s)] = _service_ids(s.settings)
        return known[id(s)]

    async def post_feedback(request: Request) -> Response:
        s = get_store()
        if s is None:
            return _unavailable()
        owner = _owner(request)
        if owner is None:  # the AuthGate sets it: never reached unless the app is wired wrongly
            return _no_caller()
        sid = request.path_params["service_id"]
        if sid not in services(s):
            return operation_outcome(404, f"no CDS service with id {sid!r}; GET /cds-services lists them")
        try:
            body = await read_json(request, s.settings.max_body_bytes, s.settings.max_json_depth)
            now = datetime.now(UTC)
            entries = parse_feedback(body, to_ms(now))
            result = await s.record_feedback(sid, entries, now, issuer=owner[0], tenant=owner[1])
        except HTTPProblem as e:
            return problem_response(e)
        except FeedbackError as e:
            return _error(e)
        answer = FeedbackResponse(received=result.received, stored=result.stored)
        return Response(msgspec.json.encode(answer), media_type="application/json")

    async def summary(request: Request) -> Response:
        s = get_store()
        if s is None:
            return _unavailable()
        owner = _owner(request)
        if owner is None:
            return _no_caller()
        try:
            query = parse_summary_query(request.query_params)
        except FeedbackError as e:
            return operation_outcome(400, e.message)
        service = query.service
        if service is not None and service not in services(s):
            return operation_outcome(400, f"service: no CDS service with id {service!r}", ["service"])
        try:
            since, until = time_range(query.since, query.until, datetime.now(UTC))
        except ValueError as e:
            return operation_outcome(400, f"since/until: {e}", ["since", "until"])
        try:
            report = await build_report(s, since, until, service, issuer=owner[0], tenant=owner[1])
        except Exception:
            return operation_outcome(
                503, "the feedback database is unavailable; retry later", headers={"Retry-After": "5"}
            )
        return Response(orjson.dumps(report), media_type="application/json")

    return [
        Route("/cds-services/{service_id}/feedback", post_feedback, methods=["POST"]),
        Route("/feedback/summary", summary, methods=["GET"]),
    ]
