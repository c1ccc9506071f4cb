"""Errors as FHIR OperationOutcome: every non-2xx answer says what the caller must fix."""

from __future__ import annotations

from typing import Any

import orjson
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
