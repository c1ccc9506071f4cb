"""The Starlette application: discovery, hook calls, operations endpoints.

Request flow: CORS -> AuthGate (JWT) -> route. A hook call: read (limits) -> decode and validate
(msgspec, cds.hooks.request; cross-field rules in cds.hooks.validation) ->
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
from urllib.parse import urlsplit

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cds.feedback.store import open_store
from cds.feedback.suppression import OPTION_KEYS as SUPPRESSION_OPTIONS
from cds.fhir.record import PatientRecord
from cds.fhir.terminology.maps import MAX_SYSTEM_LABELS, MapError, TerminologyMaps, unmapped_systems
from cds.hooks.cards import Card, could_not_evaluate_card, encode_response
from cds.hooks.discovery import Discovery
from cds.hooks.fhirfetch import FhirFetcher, missing_medication_references
from cds.hooks.prefetch import missing_keys
from cds.hooks.registry import load_service
from cds.hooks.service import Service, ServiceLoadError
from cds.hooks.validation import decode_hook_request, flatten_about
from cds.runtime.errors import HTTPProblem, PreconditionFailed, operation_outcome, problem_response
from cds.runtime.gcpolicy import collect_periodically, freeze_startup_state
from cds.runtime.metrics import Metrics
from cds.runtime.outbound import STRICT, OutboundClient
from cds.runtime.privacy import hmac_key, make_private_dir, patient_hash
from cds.runtime.settings import Settings, SettingsError
from cds.smart.backend import public_jwks
from cds.smart.scopes import system_scope
from cds.smart.tokens import BackendTokens
from cds.web.authgate import AuthGate
from cds.web.body import read_body
from cds.web.care_gaps_operation import care_gaps_routes
from cds.web.feedback_routes import feedback_routes
from cds.web.frontdoor import BodyLimit
from cds.web.hooksfirst import HooksFirst
from cds.web.modelcards import model_card_routes
from cds.web.openapi import openapi_route

log = logging.getLogger("cds.web.app")

JSON = "application/json"


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON)


class CDSApp:
    """State shared by the handlers: settings, discovery, loaded services, clients, metrics."""

    def __init__(self, settings: Settings) -> None:
        from cds.auth import Authenticator
        from cds.auth.replay_store import SharedReplayCache

        self.settings = settings
        try:
            self.terminology = TerminologyMaps.load(settings.terminology_maps)
        except MapError as e:
            raise SettingsError(str(e)) from None
        self.discovery = Discovery.load(settings.hooks_file)
        if self.terminology:  # LOINC-filtered prefetch queries must also ask for the mapped local codes
            self.discovery = self.discovery.with_prefetch(self.terminology.widen_template)
        self.metrics = Metrics()
        # Replay protection across workers and instances: the seen-set in the feedback database.
        replay = SharedReplayCache(settings, on_fallback=self.metrics.replay_fallback.inc)
        self.authenticator = Authenticator(settings, replay=replay)
        self.backend_clients = [c.backend for c in self.authenticator.clients.values() if c.backend]
        outbound = OutboundClient(connect_timeout=settings.fhir_timeout_seconds)
        tokens = None
        if self.backend_clients:
            queries = [t for e in self.discovery.services.values() for t in e.prefetch.values()]
            tokens = BackendTokens(
                outbound, self.metrics, system_scope(queries), settings.fhir_timeout_seconds
            )
        self.fetcher = FhirFetcher(settings, outbound, tokens)
        self.services: dict[str, Service] = {}
        self.load_errors: dict[str, str] = {}
        self.store: Any = None
        self.hmac_key = b""  # read at start-up
        self.draining = False
        self._gc_task: asyncio.Task[None] | None = None
        self._systems_seen: set[str] = set()

    def load_services(self) -> None:
        for sid in sorted(set(self.settings.services) - set(self.discovery.services)):
            log.warning("options for a service the discovery file does not offer", extra={"service": sid})
        for sid, entry in self.discovery.services.items():
            try:
                self.services[sid] = load_service(entry, self.settings, SUPPRESSION_OPTIONS)
            except ServiceLoadError as e:
                self.load_errors[sid] = str(e)
                log.error("service not loaded", extra={"service": sid, "reason": str(e)})
            except Exception as e:  # a broken install must show at /readyz, not crash the others
                self.load_errors[sid] = f"{type(e).__name__}: {e}"
                log.exception("service failed to load", extra={"service": sid})

    async def startup(self) -> None:
        make_private_dir(self.settings.data_dir)  # 0700: the database and development key live here
        # The key (kept outside data_dir) is readable, or start-up stops here; read once, not per hook.
        self.hmac_key = hmac_key(self.settings)
        self.load_services()
        freeze_startup_state()  # see cds/runtime/gcpolicy.py: the collector cost 3/4 of the hook time
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
            raw = await read_body(request, self.settings.max_body_bytes, self.settings.max_json_depth)
            req = decode_hook_request(raw, sid, entry.hook, self.settings, self.base_url(request))
            hook_instance = req.hook_instance
            service = self.services.get(sid)
            if service is None:
                raise HTTPProblem(
                    f"service {sid} is not ready: {self.load_errors.get(sid, 'not loaded')}", 503
                )
            resources = list(req.prefetch_resources)
            for key, index, reason in req.skipped:
                self._skipped(sid, f"prefetch.{key}", index, reason)
            missing = missing_keys(entry.prefetch, req.prefetch)
            if missing and not req.fhir_server:  # keys a service can do without (it says so) need no 412
                optional = getattr(service, "optional_prefetch", ())
                missing = [k for k in missing if k not in optional]
            if missing:
                fetched = await self._fallback(request, req, entry.prefetch, missing)
                # A server answering with another patient's data (or an unreadable patient
                # reference) must not reach a card.
                unread: list[tuple[str, int, str]] = []
                ours, others = flatten_about(fetched, req.patient_id, unread)
                resources += ours
                for key, i, _, _ in others:
                    self._skipped(sid, f"fetched.{key}", i, "not-this-patient")
                for key, i, reason in unread:
                    self._skipped(sid, f"fetched.{key}", i, reason)
            resources += await self._referenced_medications(request, req, resources)
            record = PatientRecord.from_resources(
                resources, patient_id=req.patient_id, terminology=self.terminology
            )
            for system in unmapped_systems(record.valid("Observation")):
                self.metrics.unmapped_codes.labels(service=sid, system=self._system_label(system)).inc()
            cards = self._evaluate(service, req, record)
            if self.store is not None and cards:
                caller = request.scope.get("state", {}).get("caller")
                cards = await self.store.filter_and_record(
                    sid,
                    patient_hash(self.hmac_key, req.patient_id),
                    cards,
                    record.now,
                    issuer=caller.iss if caller else None,
                    tenant=caller.tenant if caller else None,
                )
            for c in cards:
                self.metrics.cards.labels(service=sid, indicator=c.indicator).inc()
                if c.kind.startswith("not-checked:"):
                    self.metrics.not_checked.labels(service=sid, reason=c.kind[12:]).inc()
            return Response(encode_response(cards), media_type=JSON)
        except HTTPProblem as e:
            status = e.status
            if status == 412:
                self.metrics.precondition_failed.labels(service=sid).inc()
            return problem_response(e)
        except ClientDisconnect:
            # The EHR gave up (timeout, closed tab): nobody to answer and nothing wrong here.
            status = 499
            self.metrics.client_disconnects.labels(service=sid).inc()
            return Response(status_code=499)
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

    def _skipped(self, sid: str, where: str, index: int, reason: str) -> None:
        """Log (key and index, never content) and count a resource left out of the record."""
        log.warning(
            "resource skipped", extra={"service": sid, "where": where, "index": index, "reason": reason}
        )
        self.metrics.skipped_resources.labels(service=sid, reason=reason).inc()

    def _evaluate(self, service: Service, req: Any, record: PatientRecord) -> list[Card]:
        """The service's cards; when it raises on data it could not read, a card that says the
        patient was not checked (silence would read as "nothing found") and an ERROR log."""
        try:
            return service.evaluate(req, record)
        except HTTPProblem:
            raise
        except Exception:
            sid = req.service_id
            log.exception("service could not evaluate this chart", extra={"service": sid})
            self.metrics.evaluation_failures.labels(service=sid).inc()
            entry = self.discovery.services[sid]
            return [could_not_evaluate_card(sid, entry.document.get("title") or sid)]

    async def _referenced_medications(self, request: Request, req: Any, resources: list) -> list:
        """Medications that the chart's orders reference but that did not come with them (a server
        that ignores `_include`), read from `fhirServer` when the caller may fetch from it. Best
        effort: what cannot be read stays out, and the service says it could not check it."""
        wanted = missing_medication_references(resources)
        if not wanted or not req.fhir_server:
            return []
        caller = request.scope.get("state", {}).get("caller")
        if caller is None or not caller.allows_fhir_server(req.fhir_server):
            return []
        found = await self.fetcher.read_many(req, wanted, caller.reach, caller.client)
        self.metrics.fallback.labels(service=req.service_id, outcome="medication-read").inc(len(found))
        return found

    def _system_label(self, system: str) -> str:
        """A bounded set of metric label values: the first MAX_SYSTEM_LABELS systems, then 'other'."""
        seen = self._systems_seen
        if system in seen or len(seen) < MAX_SYSTEM_LABELS:
            seen.add(system)
            return system[:200]
        return "other"

    async def _fallback(
        self, request: Request, req: Any, templates: dict[str, str], missing: list[str]
    ) -> dict:
        sid = req.service_id
        caller = request.scope.get("state", {}).get("caller")
        if req.fhir_server and (caller is None or not caller.allows_fhir_server(req.fhir_server)):
            self.metrics.fallback.labels(service=sid, outcome="refused").inc()
            raise PreconditionFailed(
                f"prefetch is missing {', '.join(missing)} and fhirServer is not allow-listed for this client "
                "(or is not https); nothing was fetched",
                expression=[f"prefetch.{k}" for k in missing],
            )
        try:
            reach = caller.reach if caller is not None else STRICT
            fetched = await self.fetcher.fetch(
                req, templates, missing, reach, caller.client if caller is not None else None
            )
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

    async def jwks_endpoint(self, request: Request) -> Response:
        """Our backend-services public keys, for an EHR registering the service by JWKS URL."""
        return Response(
            orjson.dumps(public_jwks(self.backend_clients)),
            media_type="application/json",
            headers={"Cache-Control": "max-age=300"},
        )

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


async def _client_left(request: Request, exc: Exception) -> Response:
    """The client went away mid-request: not an error (an INFO line), and nobody reads the answer.
    Registered for ClientDisconnect itself, so Starlette's error middleware never sees it."""
    log.info("client disconnected", extra={"path": request.url.path})
    return Response(status_code=499)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path})
    return operation_outcome(500, "internal error; it has been logged")


DEV_HOSTS = ("127.0.0.1", "localhost")


def dev_allowed_hosts(settings: Settings) -> list[str]:
    """The Host header values development mode answers: loopback names, and public_base_url's."""
    hosts = list(DEV_HOSTS)
    if settings.public_base_url:
        host = urlsplit(settings.public_base_url).hostname
        if host and host not in hosts:
            hosts.append(host)
    return hosts


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
        Route("/.well-known/jwks.json", state.jwks_endpoint, methods=["GET"]),
        openapi_route(state.discovery, settings),
        *model_card_routes(settings),
    ]
    routes += feedback_routes(lambda: state.store)
    routes += care_gaps_routes(settings)  # POST /fhir/Measure/$care-gaps (DEQM), behind the JWT gate
    if settings.sandbox_enabled:
        from cds.web.sandbox_routes import sandbox_routes

        routes += sandbox_routes(settings)

    middleware = [
        Middleware(HooksFirst),
        Middleware(
            BodyLimit,
            max_body_bytes=settings.max_body_bytes,
            max_other_body_bytes=settings.max_other_body_bytes,
        ),
    ]
    if settings.dev:
        # Development mode trusts the Host header for token audiences and the sandbox's token
        # minting: answer only local names, so a page whose DNS name rebinds to 127.0.0.1
        # cannot drive the service (or mint tokens) through the user's browser.
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=dev_allowed_hosts(settings)))
    if settings.cors_origins:  # none by default; the middleware would still wrap every answer
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type"],
                max_age=600,
                # Chrome's Private Network Access preflight (a public page calling a service on
                # the hospital network): allowed for the configured origins only.
                allow_private_network=True,
            )
        )
    middleware.append(
        Middleware(
            AuthGate,
            authenticator=state.authenticator,
            metrics=state.metrics,
            public_base_url=settings.public_base_url,
            # Outside dev mode the sandbox API is behind the JWT check like the CDS endpoints.
            extra_prefixes=("/sandbox/api",) if settings.sandbox_enabled and not settings.dev else (),
        )
    )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_error,
            HTTPProblem: _problem,
            ClientDisconnect: _client_left,
            Exception: _unexpected,
        },
    )
    app.state.cds = state
    return app


def app_from_env() -> Starlette:
    """Factory for uvicorn workers: settings from `CDS_CONFIG` and `CDS_*` variables."""
    from cds.runtime.logs import configure_logging
    from cds.runtime.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
