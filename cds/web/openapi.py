"""The OpenAPI 3.1 description of this service, built from the code's own definitions.

Paths come from the discovery document (hooks.json via `Discovery`): one POST path per service,
with the request schema of its hook (context fields from `cds.hooks.validation.HOOK_CONTEXT`, prefetch
keys from the service's prefetch templates). The card schema states the rules `cds.hooks.cards`
enforces, the feedback schema those of CDS Hooks 2.0.1 "Feedback", errors are OperationOutcome.
Served at `GET /openapi.json`; `python -m cds.web.openapi > openapi.json` writes the committed copy,
which a test keeps equal to what this module generates.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cds import __version__
from cds.hooks.cards import INDICATORS
from cds.hooks.discovery import Discovery, ServiceEntry
from cds.hooks.request import HOOK_CONTEXT
from cds.hooks.request import USER_TYPES as _USER_TYPES
from cds.runtime.settings import Settings

OPENAPI_VERSION = "3.1.0"
SPEC = "https://cds-hooks.hl7.org/2.0/"
SUMMARY_MAX = 139  # CDS Hooks: "<140-character summary"; enforced by cds.hooks.cards.Card
# The statuses each kind of operation can answer with besides its success (cds.runtime.errors, cds.web.body,
# cds.hooks.validation, cds.web.authgate, cds.web.feedback_routes).
HOOK_ERRORS = (400, 401, 404, 405, 412, 413, 415, 503)
FEEDBACK_ERRORS = (400, 401, 404, 405, 413, 415, 503)
_ERROR_TEXT = {
    400: "The request is malformed or violates CDS Hooks 2.0; the OperationOutcome names the field.",
    401: "No valid signed JWT from a trusted CDS client for this exact URL (`WWW-Authenticate: Bearer`).",
    404: "No such service (or endpoint).",
    405: "Method not allowed on this path.",
    412: "Required FHIR data could be had neither from prefetch nor from `fhirServer`; names the keys.",
    413: "The body, the prefetch or the draft orders exceed the configured limits.",
    415: "The body is not JSON (`Content-Type` must be `application/json`).",
    503: "The service is not ready (model not loaded), shutting down, or its store is unavailable.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(status: int) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/E{status}"}


ABSOLUTE_URL = {"type": "string", "format": "uri", "pattern": "^https?://[^/?#]+"}
FHIR_RESOURCE = {
    "type": "object",
    "description": "A FHIR R4 resource (JSON).",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string", "minLength": 1}},
}


def _schemas() -> dict[str, Any]:
    """Components shared by every service: cards, actions, feedback, errors, FHIR basics."""
    coding = {
        "type": "object",
        "description": "CDS Hooks Coding (a trimmed FHIR Coding).",
        "required": ["system", "code"],
        "properties": {
            "system": {"type": "string", "minLength": 1},
            "code": {"type": "string", "minLength": 1},
            "display": {"type": "string"},
        },
    }
    action = {
        "type": "object",
        "description": "A change the CDS client applies: `create`/`update` carry the full resource, "
        "`delete` the relative reference `Type/id` of the resource in `resourceId`.",
        "required": ["type", "description"],
        "properties": {
            "type": {"type": "string", "enum": ["create", "update", "delete"]},
            "description": {"type": "string", "minLength": 1},
            "resource": FHIR_RESOURCE,
            "resourceId": {"type": "string", "pattern": "^[A-Za-z]+/.+"},
        },
        "allOf": [
            {
                "if": {"properties": {"type": {"enum": ["create", "update"]}}},
                "then": {"required": ["resource"]},
            },
            {"if": {"properties": {"type": {"const": "delete"}}}, "then": {"required": ["resourceId"]}},
        ],
    }
    suggestion = {
        "type": "object",
        "required": ["label"],
        "properties": {
            "label": {"type": "string", "minLength": 1},
            "uuid": {"type": "string", "format": "uuid"},
            "isRecommended": {"type": "boolean"},
            "actions": {"type": "array", "items": _ref("Action"), "minItems": 1},
        },
    }
    link = {
        "type": "object",
        "required": ["label", "url", "type"],
        "properties": {
            "label": {"type": "string", "minLength": 1},
            "url": {"type": "string", "minLength": 1},
            "type": {"type": "string", "enum": ["absolute", "smart"]},
            "appContext": {"type": "string", "description": "Only on `smart` links."},
        },
        "allOf": [
            {
                "if": {"properties": {"type": {"const": "absolute"}}},
                "then": {"properties": {"url": ABSOLUTE_URL}, "not": {"required": ["appContext"]}},
            }
        ],
    }
    source = {
        "type": "object",
        "required": ["label"],
        "properties": {
            "label": {"type": "string", "minLength": 1},
            "url": ABSOLUTE_URL,
            "icon": ABSOLUTE_URL,
            "topic": {
                **_ref("Coding"),
                "description": "The kind of card (rule, measure or risk band) in "
                "https://cds.example.org/CodeSystem/card-kind, unless the source names its own topic.",
            },
        },
    }
    card = {
        "type": "object",
        "description": "A CDS Hooks card. Optional fields are omitted, never null or empty.",
        "required": ["uuid", "summary", "indicator", "source"],
        "properties": {
            "uuid": {"type": "string", "format": "uuid", "description": "Quote it in feedback."},
            "summary": {"type": "string", "minLength": 1, "maxLength": SUMMARY_MAX, "pattern": r"\S"},
            "detail": {"type": "string", "minLength": 1, "description": "GitHub Flavored Markdown."},
            "indicator": {"type": "string", "enum": list(INDICATORS)},
            "source": _ref("Source"),
            "suggestions": {"type": "array", "items": _ref("Suggestion"), "minItems": 1},
            "selectionBehavior": {"type": "string", "enum": ["at-most-one", "any"]},
            "overrideReasons": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "allOf": [_ref("Coding")],
                    "required": ["display"],
                    "properties": {"display": {"minLength": 1}},
                },
            },
            "links": {"type": "array", "items": _ref("Link"), "minItems": 1},
        },
        "dependentRequired": {"suggestions": ["selectionBehavior"], "selectionBehavior": ["suggestions"]},
        "additionalProperties": False,
    }
    response = {
        "type": "object",
        "required": ["cards"],
        "properties": {
            "cards": {"type": "array", "items": _ref("Card")},
            "systemActions": {"type": "array", "items": _ref("Action")},
        },
        "additionalProperties": False,
    }
    fhir_authorization = {
        "type": "object",
        "description": "OAuth 2.0 bearer token for `fhirServer`; used only to fetch missing prefetch, never stored or logged.",
        "required": ["access_token", "token_type", "expires_in", "scope", "subject"],
        "properties": {
            "access_token": {"type": "string", "minLength": 1},
            "token_type": {"type": "string", "pattern": "^[Bb][Ee][Aa][Rr][Ee][Rr]$"},
            "expires_in": {"type": "number"},
            "scope": {"type": "string", "minLength": 1},
            "subject": {"type": "string", "minLength": 1},
            "patient": {"type": "string"},
        },
    }
    bundle = {
        "type": "object",
        "required": ["resourceType"],
        "properties": {
            "resourceType": {"const": "Bundle"},
            "entry": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["resource"],
                    "properties": {"resource": FHIR_RESOURCE},
                },
            },
        },
    }
    feedback = {
        "type": "object",
        "required": ["card", "outcome", "outcomeTimestamp"],
        "properties": {
            "card": {"type": "string", "minLength": 1, "maxLength": 128, "description": "The card's uuid."},
            "outcome": {"type": "string", "enum": ["accepted", "overridden"]},
            "acceptedSuggestions": {
                "type": "array",
                "minItems": 1,
                "maxItems": 100,
                "items": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {
                        "id": {"type": "string", "minLength": 1, "maxLength": 128},
                        "extension": {},
                    },
                    "additionalProperties": False,
                },
            },
            "overrideReason": {
                "type": "object",
                "minProperties": 1,
                "properties": {
                    "reason": {
                        "type": "object",
                        "required": ["system", "code"],
                        "properties": {
                            "system": {"type": "string", "minLength": 1, "maxLength": 512},
                            "code": {"type": "string", "minLength": 1, "maxLength": 256},
                            "display": {"type": "string"},
                            "version": {},
                            "userSelected": {},
                        },
                        "additionalProperties": False,
                    },
                    "userComment": {"type": "string"},
                    "extension": {},
                },
                "additionalProperties": False,
            },
            "outcomeTimestamp": {
                "type": "string",
                "format": "date-time",
                "description": "RFC 3339 section 5.6 date-time, with a zone.",
            },
            "extension": {},
        },
        "additionalProperties": False,
        "allOf": [
            {
                "if": {"properties": {"outcome": {"const": "accepted"}}},
                "then": {"required": ["acceptedSuggestions"], "not": {"required": ["overrideReason"]}},
                "else": {"not": {"required": ["acceptedSuggestions"]}},
            }
        ],
    }
    operation_outcome = {
        "type": "object",
        "description": "FHIR OperationOutcome: what the caller must fix.",
        "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"const": "OperationOutcome"},
            "issue": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["severity", "code", "diagnostics"],
                    "properties": {
                        "severity": {"enum": ["fatal", "error", "warning", "information"]},
                        "code": {"type": "string", "minLength": 1},
                        "diagnostics": {"type": "string", "minLength": 1},
                        "expression": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    },
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    }
    service = {
        "type": "object",
        "required": ["hook", "description", "id"],
        "properties": {
            "hook": {"type": "string"},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "id": {"type": "string"},
            "prefetch": {"type": "object", "additionalProperties": {"type": "string"}},
            "usageRequirements": {"type": "string"},
        },
        "additionalProperties": False,
    }
    return {
        "Coding": coding,
        "Action": action,
        "Suggestion": suggestion,
        "Link": link,
        "Source": source,
        "Card": card,
        "CdsServiceResponse": response,
        "FhirAuthorization": fhir_authorization,
        "FhirResource": FHIR_RESOURCE,
        "Bundle": bundle,
        "Feedback": feedback,
        "FeedbackRequest": {
            "type": "object",
            "required": ["feedback"],
            "properties": {
                "feedback": {"type": "array", "items": _ref("Feedback"), "minItems": 1, "maxItems": 1000},
                "extension": {},
            },
            "additionalProperties": False,
        },
        "FeedbackResponse": {
            "type": "object",
            "required": ["received", "stored"],
            "properties": {
                "received": {"type": "integer", "minimum": 1},
                "stored": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "New entries (repeats are stored once).",
                },
            },
        },
        "OperationOutcome": operation_outcome,
        "CdsService": service,
        "Discovery": {
            "type": "object",
            "required": ["services"],
            "properties": {"services": {"type": "array", "items": _ref("CdsService")}},
            "additionalProperties": False,
        },
    }


def context_schema(hook: str, settings: Settings) -> dict[str, Any]:
    """The `context` of a hook, from the field table the validator uses (`HOOK_CONTEXT`)."""
    fields = HOOK_CONTEXT[hook]
    users = "|".join(_USER_TYPES[hook])
    props: dict[str, Any] = {}
    for name in fields:
        if name == "userId":
            props[name] = {
                "type": "string",
                "pattern": f"^({users})/[^/]+$",
                "description": f"{users} reference.",
            }
        elif name == "patientId":
            props[name] = {
                "type": "string",
                "pattern": "^[^/]+$",
                "description": "A Patient id, not a reference.",
            }
        elif name == "draftOrders":
            props[name] = {
                "allOf": [_ref("Bundle")],
                "properties": {"entry": {"maxItems": settings.max_draft_orders}},
                "description": "Draft orders; each resource must be about `patientId`.",
            }
        elif name == "selections":
            props[name] = {"type": "array", "items": {"type": "string"}}
        else:
            props[name] = {"type": "string", "minLength": 1}
    return {
        "type": "object",
        "required": [n for n, required in fields.items() if required],
        "properties": props,
    }


def request_schema(entry: ServiceEntry, settings: Settings) -> dict[str, Any]:
    """The body of a call to one service: its hook, context and prefetch keys."""
    prefetch_props = {
        key: {
            "description": f"`{template}` (null when the client could not fetch it)",
            "anyOf": [_ref("Bundle") if "?" in template else _ref("FhirResource"), {"type": "null"}],
        }
        for key, template in entry.prefetch.items()
    }
    return {
        "type": "object",
        "required": ["hook", "hookInstance", "context"],
        "properties": {
            "hook": {"const": entry.hook},
            "hookInstance": {"type": "string", "format": "uuid"},
            "fhirServer": {"type": "string", "format": "uri", "pattern": "^https?://[^/?#]+"},
            "fhirAuthorization": _ref("FhirAuthorization"),
            "context": context_schema(entry.hook, settings),
            "prefetch": {
                "type": "object",
                "properties": prefetch_props,
                "additionalProperties": {"anyOf": [_ref("FhirResource"), {"type": "null"}]},
                "description": "Resources the client prefetched; keys it omits are fetched from fhirServer.",
            },
        },
        "dependentRequired": {"fhirAuthorization": ["fhirServer"]},
    }


def _responses(ok: dict[str, Any], errors: tuple[int, ...]) -> dict[str, Any]:
    return {"200": ok, **{str(s): _error(s) for s in errors}}


def build_openapi(discovery: Discovery, settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document for these services and settings."""
    secured = [{"cdsClientJwt": []}]
    paths: dict[str, Any] = {
        "/cds-services": {
            "get": {
                "operationId": "discovery",
                "summary": "Discovery: the CDS services offered",
                "tags": ["CDS Hooks"],
                "security": secured,
                "responses": _responses(
                    {
                        "description": "The services, hooks and prefetch templates.",
                        "content": _json(_ref("Discovery")),
                    },
                    (401,),
                ),
            }
        }
    }
    for sid, entry in discovery.services.items():
        doc = entry.document
        paths[f"/cds-services/{sid}"] = {
            "post": {
                "operationId": f"call-{sid}",
                "summary": f"{doc.get('title', sid)} ({entry.hook})",
                "description": doc.get("description", ""),
                "tags": ["CDS Hooks"],
                "security": secured,
                "requestBody": {"required": True, "content": _json(request_schema(entry, settings))},
                "responses": _responses(
                    {"description": "Cards (possibly none).", "content": _json(_ref("CdsServiceResponse"))},
                    HOOK_ERRORS,
                ),
            }
        }
        paths[f"/cds-services/{sid}/feedback"] = {
            "post": {
                "operationId": f"feedback-{sid}",
                "summary": f"Feedback on cards of {sid}",
                "description": "Accepted or overridden cards (CDS Hooks 2.0.1 Feedback). Stored once "
                "committed; repeating a request stores nothing twice.",
                "tags": ["CDS Hooks"],
                "security": secured,
                "requestBody": {"required": True, "content": _json(_ref("FeedbackRequest"))},
                "responses": _responses(
                    {"description": "Committed.", "content": _json(_ref("FeedbackResponse"))}, FEEDBACK_ERRORS
                ),
            }
        }
    paths["/feedback/summary"] = {
        "get": {
            "operationId": "feedbackSummary",
            "summary": "Feedback analytics: acceptance and override rates per card kind",
            "tags": ["Operations"],
            "security": secured,
            "parameters": [
                {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                for n in ("since", "until", "service")
            ],
            "responses": _responses(
                {"description": "The report.", "content": _json({"type": "object"})}, (400, 401, 503)
            ),
        }
    }
    paths["/fhir/Measure/$care-gaps"] = {
        "post": {
            "operationId": "measureCareGaps",
            "summary": "Da Vinci DEQM gaps-in-care report ($care-gaps)",
            "description": "A FHIR Parameters body with periodStart, periodEnd (valueDate), one or more `bundle` "
            "resources holding the patients' data, and optionally status, measureId, subject. Answers a "
            "Parameters resource with one DEQM gaps-in-care Bundle per patient.",
            "tags": ["Quality measures"],
            "security": secured,
            "requestBody": {"required": True, "content": _json({"type": "object"})},
            "responses": _responses(
                {"description": "The gaps-in-care report.", "content": _json({"type": "object"})},
                (400, 401, 413, 415),
            ),
        }
    }
    status = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    ops = {
        "/healthz": ("healthz", "Liveness", {"200": {"description": "Alive.", "content": _json(status)}}),
        "/readyz": (
            "readyz",
            "Readiness: every service loaded (models verified against the manifest)",
            {
                "200": {"description": "Ready.", "content": _json(status)},
                "503": {
                    "description": "Not ready; `services` maps each failed service to the reason.",
                    "content": _json(status),
                },
            },
        ),
        "/metrics": (
            "metrics",
            "Prometheus metrics",
            {
                "200": {
                    "description": "Prometheus text format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        ),
        "/openapi.json": (
            "openapi",
            "This document",
            {"200": {"description": "OpenAPI 3.1.", "content": _json({"type": "object"})}},
        ),
    }
    for path, (op_id, summary, responses) in ops.items():
        paths[path] = {
            "get": {"operationId": op_id, "summary": summary, "tags": ["Operations"], "responses": responses}
        }
    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    paths["/models/{name}"] = {
        "get": {
            "operationId": "modelCard",
            "summary": "A model card, as HTML (the basis of a score, for clinicians)",
            "tags": ["Operations"],
            "parameters": [name_param],
            "responses": {
                "200": {"description": "The card.", "content": {"text/html": {"schema": {"type": "string"}}}},
                "404": _error(404),
            },
        }
    }
    paths["/models/{name}/{file}"] = {
        "get": {
            "operationId": "modelFile",
            "summary": "A file of a model card listed in the manifest (plot, metrics)",
            "tags": ["Operations"],
            "parameters": [
                name_param,
                {"name": "file", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": "The file.",
                    "content": {
                        "image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}},
                        "application/json": {"schema": {}},
                        "text/markdown": {"schema": {"type": "string"}},
                    },
                },
                "404": _error(404),
            },
        }
    }
    responses = {
        f"E{s}": {
            "description": _ERROR_TEXT[s],
            "content": _json(_ref("OperationOutcome")),
            **(
                {
                    "headers": {
                        "WWW-Authenticate": {
                            "schema": {"type": "string", "const": "Bearer"},
                            "required": True,
                        }
                    }
                }
                if s == 401
                else {}
            ),
        }
        for s in sorted(set(HOOK_ERRORS) | set(FEEDBACK_ERRORS))
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "cds: CDS Hooks 2.0 service",
            "version": __version__,
            "summary": "Deterioration risk, medication risk and care gaps as CDS Hooks 2.0 cards.",
            "description": "Decision support for clinicians, for research and development; validate locally "
            f"before any clinical use; never a diagnosis. Implements CDS Hooks 2.0.1 ({SPEC}).",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "externalDocs": {"description": "CDS Hooks 2.0.1", "url": SPEC},
        "tags": [{"name": "CDS Hooks"}, {"name": "Operations"}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "responses": responses,
            "securitySchemes": {
                "cdsClientJwt": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A JWT signed by a trusted CDS client (ES384/RS384 by default; never `none` "
                    "or HMAC), `aud` the exact URL called, `iss` and `jku` allow-listed, a `jti` used once, "
                    "lifetime at most 1 hour.",
                }
            },
        },
    }


def document_bytes(discovery: Discovery, settings: Settings) -> bytes:
    """The document as indented JSON with a final newline (the form committed as openapi.json)."""
    return orjson.dumps(build_openapi(discovery, settings), option=orjson.OPT_INDENT_2) + b"\n"


def default_document() -> bytes:
    """The document for the repository's hooks.json and default settings."""
    settings = Settings()
    return document_bytes(Discovery.load(settings.hooks_file), settings)


def openapi_route(discovery: Discovery, settings: Settings) -> Route:
    """`GET /openapi.json` (no authentication): the document for the running configuration."""
    body = document_bytes(discovery, settings)

    async def endpoint(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Route("/openapi.json", endpoint, methods=["GET"])


def main() -> int:
    sys.stdout.buffer.write(default_document())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
