"""The sandbox's HTTP surface: the page at /sandbox and the small JSON API it uses.

Mounted by the app only when `settings.sandbox_enabled` (dev mode by default). The API serves
sample patients and builds hook requests; it never calls the hook itself, the page does, exactly
as an EHR would, so what QA sees is what an EHR gets. Tokens are minted here only in dev mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from cds.hooks.discovery import Discovery
from cds.runtime.errors import operation_outcome
from cds.runtime.settings import Settings
from cds.sandbox.patients import sample_patients
from cds.sandbox.requestbuilder import RequestBuildError, build_request

STATIC = Path(__file__).resolve().parents[1] / "sandbox" / "static"

# The page loads nothing but its own files and talks only to this service; card text can never
# become script (the renderer builds DOM nodes), and this policy would block it if it did.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _base_url(settings: Settings, request: Request) -> str:
    return (settings.public_base_url or str(request.base_url)).rstrip("/")


def sandbox_routes(settings: Settings) -> list[BaseRoute]:
    """Routes for /sandbox (page, static files, JSON API). Mount them when sandbox_enabled."""
    discovery = Discovery.load(settings.hooks_file)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=_SECURITY_HEADERS)

    async def to_page(request: Request) -> Response:
        return RedirectResponse(str(request.url_for("sandbox_page")), status_code=307)

    async def config(request: Request) -> Response:
        return _json(
            {
                "dev": settings.dev,
                "baseUrl": _base_url(settings, request),
                "services": [e.document for e in discovery.services.values()],
            }
        )

    async def patients(request: Request) -> Response:
        return _json({"patients": [p.summary() for p in sample_patients()]})

    async def hook_request(request: Request) -> Response:
        if request.method == "POST":
            try:
                body = orjson.loads(await request.body())
            except orjson.JSONDecodeError as e:
                return operation_outcome(400, f"request body is not JSON: {e}")
            if not isinstance(body, dict):
                return operation_outcome(400, "request body must be a JSON object")
        else:
            q = request.query_params
            body = {"patient": q.get("patient"), "service": q.get("service")}
            if "orders" in q:
                body["orders"] = [o for o in q["orders"].split(",") if o]
            body["prefetch"] = q.get("prefetch", "true").lower() != "false"
        patient, service = body.get("patient"), body.get("service")
        if not isinstance(patient, str) or not isinstance(service, str):
            return operation_outcome(400, "give a sample patient id (patient) and a service id (service)")
        orders = body.get("orders")
        drafts = body.get("draftOrders")
        if orders is not None and not (isinstance(orders, list) and all(isinstance(o, str) for o in orders)):
            return operation_outcome(400, "orders must be a list of draft order ids")
        if drafts is not None and not (isinstance(drafts, list) and all(isinstance(o, dict) for o in drafts)):
            return operation_outcome(400, "draftOrders must be a list of FHIR request resources")
        try:
            built = build_request(
                discovery,
                service,
                patient,
                order_ids=orders,
                draft_orders=drafts,
                include_prefetch=bool(body.get("prefetch", True)),
            )
        except RequestBuildError as e:
            return operation_outcome(400, str(e))
        return _json(
            {
                "url": f"{_base_url(settings, request)}/cds-services/{service}",
                "request": built,
            }
        )

    async def token(request: Request) -> Response:
        if not settings.dev:
            return operation_outcome(
                403, "tokens are minted only in development mode; paste a token signed by a trusted client"
            )
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        aud = body.get("aud") if isinstance(body, dict) else None
        base = _base_url(settings, request)
        if not isinstance(aud, str) or urlsplit(aud).query or not aud.startswith(base + "/cds-services"):
            return operation_outcome(400, f"aud must be this service's own URL under {base}/cds-services")
        from cds.auth import mint_dev_token  # the dev signing key lives with the auth code

        return _json({"token": mint_dev_token(settings, aud), "aud": aud})

    return [
        Route("/sandbox", page, methods=["GET"], name="sandbox_page"),
        Route("/sandbox/", to_page, methods=["GET"]),
        Route("/sandbox/api/config", config, methods=["GET"]),
        Route("/sandbox/api/patients", patients, methods=["GET"]),
        Route("/sandbox/api/request", hook_request, methods=["GET", "POST"]),
        Route("/sandbox/api/token", token, methods=["POST"]),
        Mount("/sandbox/static", app=StaticFiles(directory=STATIC), name="sandbox_static"),
    ]
