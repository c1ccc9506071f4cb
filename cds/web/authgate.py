"""ASGI middleware that authenticates every CDS Hooks call (discovery, hooks, feedback) by its JWT.

It runs inside the CORS middleware (so preflight requests are answered before it) and in front
of the routes, so no endpoint can forget to check. A failure is a 401 with `WWW-Authenticate:
Bearer` and a generic body; the log line names the failed check, never the token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from cds.runtime.errors import operation_outcome
from cds.web.hooksfirst import can_wait

if TYPE_CHECKING:
    from cds.auth import Authenticator
    from cds.runtime.metrics import Metrics

PROTECTED_PREFIXES = ("/cds-services", "/feedback", "/fhir/Measure/$care-gaps")


class AuthGate:
    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator,
        metrics: Metrics,
        public_base_url: str | None,
        extra_prefixes: tuple[str, ...] = (),
    ):
        self.app = app
        self.prefixes = PROTECTED_PREFIXES + tuple(extra_prefixes)
        self.authenticator = authenticator
        self.metrics = metrics
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None

    def called_url(self, scope: Scope) -> str:
        """The exact URL the client called (without query): what `aud` must equal."""
        path = scope.get("root_path", "") + scope["path"]
        if self.public_base_url:
            return self.public_base_url + scope["path"]
        scheme = scope.get("scheme", "http")
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        if host is None:
            server = scope.get("server") or ("localhost", None)
            host = server[0] if server[1] in (None, 80, 443) else f"{server[0]}:{server[1]}"
        return f"{scheme}://{host}{path}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        from cds.auth import AuthError

        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        try:
            caller = await self.authenticator.authenticate(
                header, self.called_url(scope), off_loop=can_wait(scope)
            )
        except AuthError as e:
            check = getattr(e, "check", "unknown")
            # The Authenticator has logged which check failed (never the token); count it here.
            self.metrics.auth_failures.labels(check=check).inc()
            response = operation_outcome(
                401,
                "a valid signed JWT from a trusted CDS client is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)
