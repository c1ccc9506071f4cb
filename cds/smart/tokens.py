"""Access tokens from the EHR's authorization server, by SMART Backend Services.

For one trusted client and one of its FHIR servers: find the token endpoint (configured, or the
`token_endpoint` of `{fhirServer}/.well-known/smart-configuration`, which must be on the FHIR
server's own origin), sign a client assertion (`iss` = `sub` = client_id, `aud` = the token URL,
`exp` within 5 minutes, a unique `jti`, `kid` in the header, RS384 or ES384), POST the
client-credentials grant, and cache the token until shortly before `expires_in`. One request at a
time per cache entry: concurrent hooks wait for the same token. Every request goes through the
outbound gate (`cds.runtime.outbound`), with the client's reach; nothing here ever logs a token or an
assertion. Errors are `BackendTokenError` with a message safe to show in a 412.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from cds.runtime.metrics import Metrics
from cds.runtime.outbound import Failed, OutboundClient, Reach, Refused, Target
from cds.smart.backend import BackendClient

log = logging.getLogger("cds.smart")

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 240  # SMART: exp no more than five minutes in the future
# A token is renewed this long before it expires (or at half its life, if shorter), so a token
# handed to a hook does not expire on its way to the FHIR server.
RENEW_BEFORE_S = 60
DEFAULT_EXPIRES_IN_S = 300  # when the server omits expires_in (RFC 6749 5.1: recommended)
DISCOVERY_CACHE_S = 3600
MAX_RESPONSE_BYTES = 64 * 1024


class BackendTokenError(Exception):
    """No token could be obtained; `reason` is a short metric label, the message safe to show."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class _Token:
    access_token: str
    expires_at: float
    scope: str | None  # as granted; None when the server did not say (= as requested)


@dataclass
class _Entry:
    lock: asyncio.Lock
    token: _Token | None = None


class BackendTokens:
    """The token cache of the whole process, keyed by (issuer, FHIR server base URL)."""

    def __init__(
        self,
        outbound: OutboundClient,
        metrics: Metrics | None,
        default_scope: str,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbound = outbound
        self.metrics = metrics
        self.default_scope = default_scope
        self.timeout = timeout
        self.clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._endpoints: dict[str, tuple[str, float]] = {}  # fhir server -> (token url, fetched at)
        self.requests = 0  # token requests sent (tests and benchmarks read it)

    def scope_for(self, backend: BackendClient) -> str:
        return backend.scope or self.default_scope

    async def token(
        self, iss: str, backend: BackendClient, fhir_server: str, reach: Reach, *, stale: str | None = None
    ) -> tuple[str, str | None]:
        """(access token, granted scope) for `fhir_server`. `stale`: a token the FHIR server just
        refused (401); it is dropped and a new one requested, unless another caller already did."""
        entry = self._entries.setdefault((iss, fhir_server), _Entry(asyncio.Lock()))
        async with entry.lock:
            current = entry.token
            if current is not None and stale is not None and current.access_token == stale:
                entry.token = current = None
            if current is not None and self.clock() < current.expires_at:
                self._count("cache_hit")
                return current.access_token, current.scope
            token_url = backend.token_url or await self._discover(fhir_server, reach)
            entry.token = await self._request(backend, token_url, reach)
            return entry.token.access_token, entry.token.scope

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.backend_tokens.labels(outcome=outcome).inc()

    def _fail(self, message: str, reason: str) -> BackendTokenError:
        self._count(reason)
        log.warning("backend services token not obtained: %s", reason)
        return BackendTokenError(message, reason)

    async def _discover(self, fhir_server: str, reach: Reach) -> str:
        """The token endpoint from `{fhir_server}/.well-known/smart-configuration`, cached."""
        cached = self._endpoints.get(fhir_server)
        if cached is not None and self.clock() - cached[1] < DISCOVERY_CACHE_S:
            return cached[0]
        server = Target.parse(fhir_server)
        try:
            reply = await self.outbound.request(
                "GET",
                server.join(".well-known/smart-configuration"),
                target=server,
                reach=reach,
                headers={"Accept": "application/json"},
                max_bytes=MAX_RESPONSE_BYTES,
                timeout=self.timeout,
            )
            config = reply.json() if reply.status == 200 else None
        except (Refused, Failed) as e:
            raise self._fail(
                f"smart-configuration could not be read ({e}); configure token_url", "discovery"
            ) from None
        endpoint = config.get("token_endpoint") if isinstance(config, dict) else None
        if not isinstance(endpoint, str):
            raise self._fail("the FHIR server publishes no token_endpoint; configure token_url", "discovery")
        try:
            found = Target.parse(endpoint)
        except ValueError:
            raise self._fail(
                "the discovered token_endpoint is not a plain URL; configure token_url", "discovery"
            ) from None
        # Only a token endpoint on the FHIR server's own origin is trusted from discovery: the
        # document could otherwise send our signed assertions anywhere.
        if (found.scheme, found.host, found.port) != (server.scheme, server.host, server.port) or (
            found.scheme != "https" and not reach.http
        ):
            raise self._fail(
                "the discovered token_endpoint is not https on the FHIR server's own origin; configure token_url",
                "discovery",
            )
        self._endpoints[fhir_server] = (endpoint, self.clock())
        return endpoint

    def assertion(self, backend: BackendClient, token_url: str) -> str:
        """The signed client assertion (private_key_jwt) for one token request."""
        now = int(self.clock())
        claims = {
            "iss": backend.client_id,
            "sub": backend.client_id,
            "aud": token_url,
            "exp": now + ASSERTION_LIFETIME_S,
            "jti": str(uuid.uuid4()),
        }
        headers = {"kid": backend.kid, "typ": "JWT"}
        return jwt.encode(claims, backend.private_key, algorithm=backend.alg, headers=headers)

    async def _request(self, backend: BackendClient, token_url: str, reach: Reach) -> _Token:
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope_for(backend),
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(backend, token_url),
        }
        self.requests += 1
        try:
            reply = await self.outbound.request(
                "POST",
                token_url,
                target=Target.parse(token_url),
                reach=reach,
                headers={"Accept": "application/json"},
                data=form,
                max_bytes=MAX_RESPONSE_BYTES,
                timeout=self.timeout,
            )
        except Refused as e:
            raise self._fail(f"the token endpoint was not called: {e}", "refused") from None
        except Failed as e:
            raise self._fail(f"the token endpoint: {e}", "unreachable") from None
        try:
            body: Any = reply.json()
        except Failed:
            body = None
        if reply.status != 200:
            error = body.get("error") if isinstance(body, dict) else None
            code = error if isinstance(error, str) and error.isascii() and len(error) < 40 else None
            raise self._fail(
                f"the token endpoint refused the request ({code or f'HTTP {reply.status}'})",
                code or f"http_{reply.status}",
            )
        token = body.get("access_token") if isinstance(body, dict) else None
        token_type = body.get("token_type") if isinstance(body, dict) else None
        if (
            not isinstance(token, str)
            or not token
            or not isinstance(token_type, str)
            or token_type.lower() != "bearer"
        ):
            raise self._fail("the token endpoint answered without a bearer access_token", "malformed")
        expires_in = body.get("expires_in", DEFAULT_EXPIRES_IN_S)
        if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
            expires_in = DEFAULT_EXPIRES_IN_S
        scope = body.get("scope") if isinstance(body.get("scope"), str) else None
        renew = min(RENEW_BEFORE_S, expires_in / 2)
        self._count("obtained")
        log.info(
            "backend services token obtained",
            extra={"client_id": backend.client_id, "expires_in": int(expires_in)},
        )
        return _Token(token, self.clock() + expires_in - renew, scope)
