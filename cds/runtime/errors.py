"""Errors as FHIR OperationOutcome: every non-2xx answer says what the caller must fix."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from msgspec import UNSET, Meta, Struct, UnsetType
from starlette.responses import Response

# FHIR issue-type codes per status.
_ISSUE_CODE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    412: "incomplete",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    500: "exception",
    503: "transient",
}


class ServiceLoadError(RuntimeError):
    """A service cannot start: missing or tampered model, invalid knowledge base.

    Defined here, below every layer that raises it (the model manifest among them); services
    import it through `cds.hooks.service`, the service contract.
    """


# The error statuses each kind of endpoint answers with besides its success, and what each means:
# the one table the OpenAPI document (cds.web.openapi) and the tests read. A new status raised by
# an endpoint is added here (its row), not in the document.
ENDPOINT_ERRORS: dict[str, tuple[int, ...]] = {
    # body (cds.web.body): 413, 415, 400; request (cds.hooks.validation): 400, 413; auth gate: 401;
    # unknown service: 404; method: 405; prefetch unavailable: 412; not ready or draining: 503.
    "hook": (400, 401, 404, 405, 412, 413, 415, 503),
    # cds.web.feedback_routes: the body, the feedback shape, the auth gate, the store.
    "feedback": (400, 401, 404, 405, 413, 415, 503),
    "discovery": (401,),
    "feedback-summary": (400, 401, 503),
    "care-gaps": (400, 401, 413, 415),
    "model-card": (404,),
}
ERROR_TEXT: dict[int, str] = {
    400: "The request is malformed or violates CDS Hooks 2.0; the OperationOutcome names the field.",
    401: "No valid signed JWT from a trusted CDS client for this exact URL (`WWW-Authenticate: Bearer`).",
    404: "No such service (or endpoint).",
    405: "Method not allowed on this path.",
    412: "Required FHIR data could be had neither from prefetch nor from `fhirServer`; names the keys.",
    413: "The body, the prefetch or the draft orders exceed the configured limits.",
    415: "The body is not JSON (`Content-Type` must be `application/json`).",
    503: "The service is not ready (model not loaded), shutting down, or its store is unavailable.",
}


class OperationOutcomeIssue(Struct, forbid_unknown_fields=True, omit_defaults=True):
    severity: Literal["fatal", "error", "warning", "information"]
    code: Annotated[str, Meta(min_length=1)]
    diagnostics: Annotated[str, Meta(min_length=1)]
    expression: Annotated[list[str], Meta(min_length=1)] | UnsetType = UNSET


class OperationOutcome(Struct, forbid_unknown_fields=True):
    """FHIR OperationOutcome: what the caller must fix."""

    resourceType: Literal["OperationOutcome"]
    issue: Annotated[list[OperationOutcomeIssue], Meta(min_length=1)]


class HTTPProblem(Exception):
    """An error with an HTTP status and a message for the caller."""

    status = 400

    def __init__(self, message: str, status: int | None = None, expression: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.expression = expression


class BadRequest(HTTPProblem):
    status = 400


class PreconditionFailed(HTTPProblem):
    """412: required FHIR data could be had neither from prefetch nor from the FHIR server."""

    status = 412


class PayloadTooLarge(HTTPProblem):
    status = 413


def outcome_body(status: int, message: str, expression: list[str] | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "severity": "error" if status < 500 else "fatal",
        "code": _ISSUE_CODE.get(status, "processing"),
        "diagnostics": message,
    }
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def operation_outcome(
    status: int, message: str, expression: list[str] | None = None, headers: dict[str, str] | None = None
) -> Response:
    """A JSON OperationOutcome response."""
    return Response(
        orjson.dumps(outcome_body(status, message, expression)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def problem_response(exc: HTTPProblem) -> Response:
    return operation_outcome(exc.status, exc.message, exc.expression)
