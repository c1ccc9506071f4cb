"""The OpenAPI 3.1 description of this service, built from the code's own declarations.

Paths come from the discovery document (hooks.json via `Discovery`): one POST path per service,
with the request schema of its hook. The request, card and error components are the JSON Schema
msgspec generates from the declarations the service decodes and encodes with (`cds.hooks.request`,
`cds.hooks.cards`, `cds.runtime.errors`), plus the cross-field rules each declaration states in
`JSON_SCHEMA_RULES`; the error statuses per endpoint come from `cds.runtime.errors.ENDPOINT_ERRORS`.
The feedback schema states the rules of CDS Hooks 2.0.1 "Feedback". Served at `GET /openapi.json`;
`python -m cds.web.openapi > openapi.json` writes the committed copy, which a test keeps equal to
what this module generates.
"""

from __future__ import annotations

import copy
import sys
from functools import cache
from typing import Any

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cds import __version__
from cds.feedback.validate import CROSS_FIELD_SCHEMA, FeedbackRequest, FeedbackResponse, SummaryQuery
from cds.hooks.cards import SUMMARY_MAX, WIRE_TYPES
from cds.hooks.discovery import Discovery, DiscoveryDocument, ServiceDefinition, ServiceEntry
from cds.hooks.request import CONTEXT_TYPES, FHIR_RESOURCE_SCHEMA, REQUEST_TYPES, Bundle, FhirAuthorization
from cds.runtime.errors import ENDPOINT_ERRORS, ERROR_TEXT, OperationOutcome
from cds.runtime.settings import Settings

OPENAPI_VERSION = "3.1.0"
SPEC = "https://cds-hooks.hl7.org/2.0/"
__all__ = ["HOOK_ERRORS", "SUMMARY_MAX", "build_openapi", "default_document", "openapi_route"]
HOOK_ERRORS = ENDPOINT_ERRORS["hook"]
FEEDBACK_ERRORS = ENDPOINT_ERRORS["feedback"]
_ERROR_TEXT = ERROR_TEXT
REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(status: int) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/E{status}"}


FHIR_RESOURCE = FHIR_RESOURCE_SCHEMA
# Declarations whose JSON Schema becomes a component (the types they use come along).
DECLARED: tuple[type[Any], ...] = (
    *WIRE_TYPES,
    FhirAuthorization,
    Bundle,
    OperationOutcome,
    *REQUEST_TYPES.values(),
    DiscoveryDocument,
)
# Components published under the name the CDS Hooks spec gives them, not the declaration's.
PUBLISHED_NAMES = {ServiceDefinition.__name__: "CdsService", DiscoveryDocument.__name__: "Discovery"}


def _clean(schema: Any) -> Any:
    """msgspec's schema without `title` (the component's name says it) and `default` (a field at
    its default is omitted from the JSON, so a default says nothing to a client); descriptions
    (docstrings) on one line; references to a renamed component follow it (PUBLISHED_NAMES)."""
    if isinstance(schema, dict):
        out: dict[str, Any] = {}
        for k, v in schema.items():
            if k == "properties":  # field names, never keywords (a service has a `title` field)
                out[k] = {name: _clean(field) for name, field in v.items()}
            elif k == "description" and isinstance(v, str):
                out[k] = " ".join(v.split())
            elif k == "$ref" and isinstance(v, str):
                name = v.rpartition("/")[2]
                out[k] = REF.format(name=PUBLISHED_NAMES.get(name, name))
            elif k not in ("title", "default"):
                out[k] = _clean(v)
        return out
    if isinstance(schema, list):
        return [_clean(v) for v in schema]
    return schema


@cache
def declared_components() -> dict[str, dict[str, Any]]:
    """JSON Schema of every declaration, by name, with each one's cross-field rules merged in."""
    _, components = msgspec.json.schema_components(DECLARED, ref_template=REF)
    by_name = {t.__name__: t for t in (*DECLARED, *CONTEXT_TYPES.values())}
    out = {}
    for name, schema in components.items():
        schema = _clean(schema)
        for key, value in getattr(by_name.get(name), "JSON_SCHEMA_RULES", {}).items():
            schema[key] = sorted({*schema.get(key, []), *value}) if key == "required" else value
        out[PUBLISHED_NAMES.get(name, name)] = schema
    return out


def _feedback_schemas() -> dict[str, Any]:
    """Feedback, FeedbackRequest, FeedbackResponse and their parts: from the declarations the
    feedback endpoint decodes with, plus the cross-field rules it checks in code."""
    _, components = msgspec.json.schema_components(
        [FeedbackRequest, FeedbackResponse], ref_template="#/components/schemas/{name}"
    )
    for name, rules in CROSS_FIELD_SCHEMA.items():
        components[name].update(rules)
    return components


def _schemas() -> dict[str, Any]:
    """Components shared by every service: the declared ones (cards, request parts, errors,
    discovery), and feedback and FHIR basics."""
    declared = {
        name: schema
        for name, schema in declared_components().items()
        if name not in {t.__name__ for t in (*REQUEST_TYPES.values(), *CONTEXT_TYPES.values())}
    }
    return {
        **declared,
        "FhirResource": FHIR_RESOURCE,
        **_feedback_schemas(),
    }


def context_schema(hook: str, settings: Settings) -> dict[str, Any]:
    """The `context` of a hook: its declaration (`cds.hooks.request`), with the configured limit
    on draft orders."""
    schema = copy.deepcopy(declared_components()[CONTEXT_TYPES[hook].__name__])
    props = schema["properties"]
    if "draftOrders" in props:
        props["draftOrders"] = {
            "allOf": [props["draftOrders"]],
            "properties": {"entry": {"maxItems": settings.max_draft_orders}},
            "description": "Draft orders; each resource must be about `patientId`.",
        }
    return schema


def request_schema(entry: ServiceEntry, settings: Settings) -> dict[str, Any]:
    """The body of a call to one service: the declaration of its hook's request, with the hook
    named, the context inlined and the service's prefetch keys."""
    schema = copy.deepcopy(declared_components()[REQUEST_TYPES[entry.hook].__name__])
    props = schema["properties"]
    props["hook"] = {"const": entry.hook}
    props["context"] = context_schema(entry.hook, settings)
    props["prefetch"] = {
        "type": "object",
        "properties": {
            key: {
                "description": f"`{template}` (null when the client could not fetch it)",
                "anyOf": [_ref("Bundle") if "?" in template else _ref("FhirResource"), {"type": "null"}],
            }
            for key, template in entry.prefetch.items()
        },
        "additionalProperties": {"anyOf": [_ref("FhirResource"), {"type": "null"}]},
        "description": "Resources the client prefetched; keys it omits are fetched from fhirServer.",
    }
    return schema


def query_parameters(query: type[msgspec.Struct]) -> list[dict[str, Any]]:
    """The query parameters of a GET endpoint from the declaration its handler decodes the query
    into: one per field, a field that may be absent (None) not required, and no null (a query
    parameter is text or missing)."""
    _, components = msgspec.json.schema_components([query], ref_template=REF)
    schema = _clean(components[query.__name__])
    params = []
    for field in msgspec.structs.fields(query):
        prop = dict(schema["properties"][field.encode_name])
        description = prop.pop("description", None)
        variants = [v for v in prop.get("anyOf", [prop]) if v.get("type") != "null"]
        param: dict[str, Any] = {
            "name": field.encode_name,
            "in": "query",
            "required": field.encode_name in schema.get("required", []),
            "schema": variants[0] if len(variants) == 1 else {"anyOf": variants},
        }
        params.append(param | ({"description": description} if description else {}))
    return params


def _responses(ok: dict[str, Any], errors: tuple[int, ...]) -> dict[str, Any]:
    return {"200": ok, **{str(s): _error(s) for s in errors}}


def build_openapi(discovery: Discovery, settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document for these services and settings."""
    secured: list[dict[str, list[str]]] = [{"cdsClientJwt": []}]
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
                    ENDPOINT_ERRORS["discovery"],
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
            "parameters": query_parameters(SummaryQuery),
            "responses": _responses(
                {"description": "The report.", "content": _json({"type": "object"})},
                ENDPOINT_ERRORS["feedback-summary"],
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
                ENDPOINT_ERRORS["care-gaps"],
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
                **{str(s): _error(s) for s in ENDPOINT_ERRORS["model-card"]},
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
                **{str(s): _error(s) for s in ENDPOINT_ERRORS["model-card"]},
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
        for s in sorted({s for statuses in ENDPOINT_ERRORS.values() for s in statuses})
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
