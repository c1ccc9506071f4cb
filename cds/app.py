"""The Starlette application: discovery, hook calls, operations endpoints.

Request flow: CORS -> AuthGate (JWT) -> route. A hook call: parse (orjson, limits) -> validate ->
prefetch (+ FHIR fallback for missing keys) -> PatientRecord -> service.evaluate -> repeat-alert
suppression and card memory -> cards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cds.authgate import AuthGate
from cds.care_gaps_operation import care_gaps_routes
from cds.discovery import Discovery
from cds.errors import HTTPProblem, PreconditionFailed, operation_outcome, problem_response
from cds.feedback.routes import feedback_routes
from cds.feedback.store import open_store
from cds.fhirfetch import FhirFetcher
from cds.gcpolicy import collect_periodically, freeze_startup_state
from cds.hooksfirst import HooksFirst
from cds.jsonbody import read_json
from cds.metrics import Metrics
from cds.modelcards import model_card_routes
from cds.openapi import openapi_route
from cds.prefetch import missing_keys
from cds.privacy import patient_key
from cds.record import PatientRecord, resources_of
from cds.services.base import Service, ServiceLoadError
from cds.services.registry import service_class
from cds.settings import Settings
from cds.validation import is_about, validate_hook_request

log = logging.getLogger("cds.app")

JSON = "application/json"


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON)


class CDSApp:
    """State shared by the handlers: settings, discovery, loaded services, clients, metrics."""

    def __init__(self, settings: Settings) -> None:
        from cds.auth import Authenticator

        self.settings = settings
        self.discovery = Discovery.load(settings.hooks_file)
        self.metrics = Metrics()
        self.fetcher = FhirFetcher(settings)
        self.authenticator = Authenticator(settings)
        self.services: dict[str, Service] = {}
        self.load_errors: dict[str, str] = {}
        self.store: Any = None
        self.draining = False
        self._gc_task: asyncio.Task[None] | None = None

    def load_services(self) -> None:
        for sid in self.discovery.services:
            try:
                self.services[sid] = service_class(sid)(self.settings)
            except ServiceLoadError as e:
                self.load_errors[sid] = str(e)
                log.error("service not loaded", extra={"service": sid, "reason": str(e)})
            except Exception as e:  # a broken install must show at /readyz, not crash the others
                self.load_errors[sid] = f"{type(e).__name__}: {e}"
                log.exception("service failed to load", extra={"service": sid})

    async def startup(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.load_services()
        freeze_startup_state()  # see cds/gcpolicy.py: the collector cost 3/4 of the hook time
        self._gc_task = asyncio.create_task(collect_periodically())
        await self.fetcher.start()
        await self.authenticator.start()
        message = getattr(self.authenticator, "startup_message", lambda: None)()
        if message:
            log.warning(message)
        try:
            self.store = await open_store(self.settings)
        except Exception as e:  # the hook path keeps answering without a feedback store
            log.error("feedback store unavailable; hooks answer without card memory", extra={"error": str(e)})
            self.store = None

    async def shutdown(self) -> None:
        self.draining = True
        if self._gc_task is not None:
            self._gc_task.cancel()
        if self.store is not None:
            await self.store.close()
        await self.fetcher.close()
        await self.authenticator.close()

    def base_url(self, request: Request) -> str:
        if self.settings.public_base_url:
            return self.settings.public_base_url.rstrip("/")
        return f"{request.url.scheme}://{request.url.netloc}"

    # --- endpoints ----------------------------------------------------------------------------
    async def discovery_endpoint(self, request: Request) -> Response:
        return Response(self.discovery.body, media_type=JSON)

    async def hook_endpoint(self, request: Request) -> Response:
        sid = request.path_params["service_id"]
        entry = self.discovery.services.get(sid)
        if entry is None:
            return operation_outcome(404, f"no CDS service with id {sid!r}; GET /cds-services lists them")
        started = time.perf_counter()
        status = 200
        hook_instance = None
        try:
            if self.draining:
                raise HTTPProblem("the service is shutting down; retry on another instance", status=503)
            body = await read_json(request, self.settings.max_body_bytes, self.settings.max_json_depth)
            req = validate_hook_request(body, sid, entry.hook, self.settings, self.base_url(request))
            hook_instance = req.hook_instance
            service = self.services.get(sid)
            if service is None:
                raise HTTPProblem(
                    f"service {sid} is not ready: {self.load_errors.get(sid, 'not loaded')}", 503
                )
            resources = list(req.prefetch_resources)
            missing = missing_keys(entry.prefetch, req.prefetch)
            if missing:
                fetched = await self._fallback(request, req, entry.prefetch, missing)
                # A server answering with another patient's data must not reach a card.
                resources += [
                    r for v in fetched.values() for r in resources_of(v) if is_about(r, req.patient_id)
                ]
            record = PatientRecord.from_resources(resources, patient_id=req.patient_id)
            cards = service.evaluate(req, record)
            if self.store is not None and cards:
                cards = await self.store.filter_and_record(
                    sid, patient_key(self.settings, req.patient_id), cards, record.now
                )
            for c in cards:
                self.metrics.cards.labels(service=sid, indicator=c.indicator).inc()
            return Response(orjson.dumps({"cards": [c.to_json() for c in cards]}), media_type=JSON)
        except HTTPProblem as e:
            status = e.status
            if status == 412:
                self.metrics.precondition_failed.labels(service=sid).inc()
            return problem_response(e)
        except Exception:
            status = 500
            log.exception("hook evaluation failed", extra={"service": sid, "hookInstance": hook_instance})
            return operation_outcome(500, "internal error while evaluating the hook; it has been logged")
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(service=sid, status=str(status)).inc()
            self.metrics.latency.labels(service=sid).observe(elapsed)
            log.info(
                "hook",
                extra={
                    "service": sid,
                    "hookInstance": hook_instance,
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                },
            )

    async def _fallback(
        self, request: Request, req: Any, templates: dict[str, str], missing: list[str]
    ) -> dict:
        sid = req.service_id
        if req.fhir_server:
            caller = request.scope.get("state", {}).get("caller")
            if caller is None or not caller.allows_fhir_server(req.fhir_server):
                self.metrics.fallback.labels(service=sid, outcome="refused").inc()
                raise PreconditionFailed(
                    f"prefetch is missing {', '.join(missing)} and fhirServer is not allow-listed for this client "
                    "(or is not https); nothing was fetched",
                    expression=[f"prefetch.{k}" for k in missing],
                )
        try:
            fetched = await self.fetcher.fetch(req, templates, missing)
        except PreconditionFailed:
            self.metrics.fallback.labels(service=sid, outcome="failed").inc()
            raise
        self.metrics.fallback.labels(service=sid, outcome="ok").inc(len(fetched))
        return fetched

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if self.load_errors or len(self.services) != len(self.discovery.services):
            return json_response({"status": "not ready", "services": self.load_errors}, status=503)
        return json_response({"status": "ready", "services": sorted(self.services)})

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {
        404: f"no such endpoint: {request.url.path}",
        405: f"method {request.method} is not allowed on {request.url.path}",
    }
    return operation_outcome(exc.status_code, messages.get(exc.status_code, str(exc.detail)))


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPProblem)
    return problem_response(exc)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path})
    return operation_outcome(500, "internal error; it has been logged")


def create_app(settings: Settings) -> Starlette:
    """The ASGI app for these settings."""
    state = CDSApp(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.startup()
        try:
            yield
        finally:
            await state.shutdown()

    routes: list[BaseRoute] = [
        Route("/cds-services", state.discovery_endpoint, methods=["GET"]),
        Route("/cds-services/{service_id}", state.hook_endpoint, methods=["POST"]),
        Route("/healthz", state.healthz, methods=["GET"]),
        Route("/readyz", state.readyz, methods=["GET"]),
        Route("/metrics", state.metrics_endpoint, methods=["GET"]),
        openapi_route(state.discovery, settings),
        *model_card_routes(settings),
    ]
    routes += feedback_routes(lambda: state.store)
    routes += care_gaps_routes(settings)  # POST /fhir/Measure/$care-gaps (DEQM), behind the JWT gate
    if settings.sandbox_enabled:
        from cds.sandbox.routes import sandbox_routes

        routes += sandbox_routes(settings)

    middleware = [Middleware(HooksFirst)]
    if settings.cors_origins:  # none by default; the middleware would still wrap every answer
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type"],
                max_age=600,
            )
        )
    middleware.append(
        Middleware(
            AuthGate,
            authenticator=state.authenticator,
            metrics=state.metrics,
            public_base_url=settings.public_base_url,
        )
    )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, HTTPProblem: _problem, Exception: _unexpected},
    )
    app.state.cds = state
    return app


def app_from_env() -> Starlette:
    """Factory for uvicorn workers: settings from `CDS_CONFIG` and `CDS_*` variables."""
    from cds.logs import configure_logging
    from cds.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
