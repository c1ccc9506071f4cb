"""Authenticating CDS clients by the signed JWT on every call (CDS Hooks 2.0, "Trusting CDS
Clients"; cds-hooks.org best practices, "JWT").

The order matters: `none` and HMAC algorithms are refused before anything else is looked at; the
issuer must be trusted and its `jku` (if any) allow-listed before any key is fetched; the `jti`
is recorded only once everything else has passed, so strangers cannot fill the replay cache.
Failures raise AuthError naming the check, which is logged (never the token) but not sent: the
caller gets a bare 401.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import orjson
from jwt import exceptions as jwterr

from cds.auth.caller import Caller
from cds.auth.clients import SUPPORTED_ALGORITHMS, TrustedClient, parse_trusted_clients
from cds.auth.devkeys import DEV_ISSUER, dev_client, dev_key_path
from cds.auth.jwks import JwksCache, JwksUnavailable, VerifyKey
from cds.auth.replay import ReplayCache, ReplayQuotaFull
from cds.auth.replay_store import SharedReplayCache
from cds.runtime.settings import Settings, SettingsError

log = logging.getLogger("cds.auth")

MAX_TOKEN_CHARS = 16 * 1024
MAX_JTI_CHARS = 256
_REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]
# Signature checks of calls nobody waits on (feedback) run on these threads, off the event loop:
# OpenSSL releases the GIL while it verifies (~0.5 ms for ES384), so hooks keep being answered
# meanwhile, on another core. Hook calls verify inline: the hand-over would add to their latency.
VERIFY_THREADS = 2

NO_CLIENTS_MESSAGE = """\
No trusted CDS client is configured: every call will be refused with 401.
Trust an EHR by adding to the config file (CDS_CONFIG):
    [[trusted_clients]]
    iss = "https://ehr.example.org"                           # issuer, exactly as in its tokens
    jku = ["https://ehr.example.org/.well-known/jwks.json"]   # its JWK Set URL(s)
    fhir_servers = ["https://ehr.example.org/fhir"]           # FHIR base URL(s) we may query
or set CDS_TRUSTED_CLIENTS to the same as a JSON list. For local development: cds serve --dev."""


class AuthError(Exception):
    """Authentication failed; `check` names the check (for logs, never for the caller)."""

    def __init__(self, check: str, iss: str | None = None) -> None:
        super().__init__(check)
        self.check = check
        self.iss = iss


class Authenticator:
    """Verifies the `Authorization: Bearer <JWT>` of each call against the trusted clients."""

    def __init__(
        self,
        settings: Settings,
        *,
        jwks: JwksCache | None = None,
        replay: ReplayCache | SharedReplayCache | None = None,
    ) -> None:
        """`replay`: the in-process cache alone by default; the app passes the shared store."""
        self.settings = settings
        self.dev = settings.dev
        self.leeway = settings.clock_skew_seconds
        if self.leeway < 0 or self.leeway > 600:
            raise SettingsError("clock_skew_seconds must be between 0 and 600")
        if settings.jwks_timeout_seconds <= 0 or settings.jwks_cache_seconds < 0:
            raise SettingsError("jwks_timeout_seconds must be positive and jwks_cache_seconds not negative")
        clients = parse_trusted_clients(settings)
        if settings.dev:
            if any(c.iss == DEV_ISSUER for c in clients):
                raise SettingsError(f"trusted_clients: issuer {DEV_ISSUER!r} is reserved for dev mode")
            clients.append(dev_client(settings))
        self.clients: dict[str, TrustedClient] = {c.iss: c for c in clients}
        self.jwks = jwks or JwksCache(
            timeout_seconds=settings.jwks_timeout_seconds,
            cache_seconds=settings.jwks_cache_seconds,
            max_bytes=settings.jwks_max_bytes,
        )
        self.replay = replay if replay is not None else ReplayCache()
        self._verifier: ThreadPoolExecutor | None = None

    def startup_message(self) -> str | None:
        """What an operator must know at start-up (dev mode, or nothing trusted), else None."""
        if self.dev:
            return (
                f"DEVELOPMENT MODE: trusting issuer {DEV_ISSUER!r} signed with the local key "
                f"{dev_key_path(self.settings)} and any FHIR server, plain http included. "
                "Never use this mode with real patient data. Get a token with: cds token --aud URL"
            )
        if not self.clients:
            return NO_CLIENTS_MESSAGE
        return None

    async def start(self) -> None:
        """Open the HTTP session for key fetching and the replay store. (The app logs
        `startup_message()` at WARNING.)"""
        await self.jwks.start()
        if isinstance(self.replay, SharedReplayCache):
            await self.replay.start()
        if self.clients:
            log.info("trusting CDS client issuer(s): %s", ", ".join(sorted(self.clients)))

    async def close(self) -> None:
        await self.jwks.close()
        if isinstance(self.replay, SharedReplayCache):
            await self.replay.close()
        if self._verifier is not None:
            self._verifier.shutdown(wait=False)
            self._verifier = None

    async def authenticate(self, authorization: str | None, url: str, *, off_loop: bool = False) -> Caller:
        """The caller, if the `Authorization` header carries a valid JWT whose `aud` is `url`.

        `url` is the exact URL called (public base URL + path behind a proxy); `off_loop` verifies
        the signature on a worker thread. Raises AuthError.
        """
        try:
            return await self._authenticate(authorization, url, off_loop)
        except AuthError as e:
            if e.check == "replay-quota-full":
                log.error(
                    "authentication refused: check=%s iss=%s (this issuer's replay quota is full of live "
                    "tokens: it sends more than the quota allows within one token lifetime)",
                    e.check,
                    _safe(e.iss),
                )
            else:
                log.warning(
                    "authentication refused: check=%s iss=%s url=%s", e.check, _safe(e.iss), _safe(url)
                )
            raise

    async def _authenticate(self, authorization: str | None, url: str, off_loop: bool) -> Caller:
        if not self.clients:
            raise AuthError("no-trusted-clients")
        if not authorization or not authorization.strip():
            raise AuthError("missing-token")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise AuthError("malformed")
        header, unverified = _peek(token)
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise AuthError("malformed")
        if alg not in SUPPORTED_ALGORITHMS:  # none, HS*, anything unknown: before any key lookup
            raise AuthError("alg-not-allowed")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise AuthError("malformed")
        if "crit" in header:  # no JWS extensions are understood here
            raise AuthError("malformed")
        kid, jku = header.get("kid"), header.get("jku")
        if not isinstance(kid, str) or not kid:
            raise AuthError("missing-kid")
        if jku is not None and not isinstance(jku, str):
            raise AuthError("malformed")

        iss = unverified.get("iss")
        if iss is None:
            raise AuthError("missing-iss")
        if not isinstance(iss, str):
            raise AuthError("malformed")
        client = self.clients.get(iss)
        if client is None:
            raise AuthError("iss-not-trusted", iss)
        if alg not in client.algorithms:
            raise AuthError("alg-not-allowed", iss)
        if jku is not None and jku not in client.jku:
            raise AuthError("jku-not-allowed", iss)  # never fetched: not on this issuer's list

        key = await self._find_key(client, kid, jku, alg)
        if off_loop:
            if self._verifier is None:
                self._verifier = ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="cds-jwt-verify")
            claims = await asyncio.get_running_loop().run_in_executor(
                self._verifier, self._verify, token, key, alg, url, iss
            )
        else:
            claims = self._verify(token, key, alg, url, iss)

        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_CHARS:
            raise AuthError("malformed", iss)
        exp, iat = claims["exp"], claims["iat"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (exp, iat)):
            raise AuthError("malformed", iss)
        # PyJWT reads a numeric string ("0") as a time: RFC 7519 4.1.5 says NumericDate, a number.
        if "nbf" in claims and not isinstance(claims["nbf"], int | float):
            raise AuthError("malformed", iss)
        if exp - iat > client.max_token_lifetime_seconds:
            raise AuthError("lifetime-too-long", iss)
        tenant = claims.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise AuthError("malformed", iss)
        if client.tenants is not None and tenant not in client.tenants:
            raise AuthError("tenant-not-allowed", iss)
        try:
            fresh = await self.replay.remember(iss, jti, exp + self.leeway)
        except ReplayQuotaFull:
            raise AuthError("replay-quota-full", iss) from None
        if not fresh:
            raise AuthError("replayed-jti", iss)
        sub = claims.get("sub")
        sub = sub if isinstance(sub, str) else None
        return Caller(iss=iss, sub=sub, tenant=tenant, jti=jti, client=client, dev=self.dev)

    async def _find_key(self, client: TrustedClient, kid: str, jku: str | None, alg: str) -> VerifyKey:
        """The key for `kid`: local keys first, then the client's jwks_url, then its allow-listed jku."""
        key = client.local_keys.get(kid)
        if key is None:
            urls: list[str] = [client.jwks_url] if client.jwks_url else []
            if jku is not None:
                urls.append(jku)
            elif not urls and not client.local_keys:
                urls.extend(client.jku)  # no jku header: the configured set(s) are the out-of-band ones
            unavailable = 0
            for u in dict.fromkeys(urls):
                try:
                    key = await self.jwks.get_key(u, kid, client.reach(self.dev))
                except JwksUnavailable:
                    unavailable += 1
                    continue
                if key is not None:
                    break
            if key is None:
                check = "jwks-unavailable" if urls and unavailable == len(set(urls)) else "unknown-kid"
                raise AuthError(check, client.iss)
        if not key.suits(alg):
            raise AuthError("key-mismatch", client.iss)
        return key

    def _verify(self, token: str, key: VerifyKey, alg: str, url: str, iss: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=url,
                issuer=iss,
                leeway=self.leeway,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwterr.InvalidSignatureError:
            raise AuthError("bad-signature", iss) from None
        except jwterr.ExpiredSignatureError:
            raise AuthError("expired", iss) from None
        except jwterr.ImmatureSignatureError as e:
            raise AuthError("nbf-in-future" if "nbf" in str(e) else "iat-in-future", iss) from None
        except jwterr.InvalidAudienceError:
            raise AuthError("aud-mismatch", iss) from None
        except jwterr.InvalidIssuerError:
            raise AuthError("iss-not-trusted", iss) from None
        except jwterr.MissingRequiredClaimError as e:
            raise AuthError(f"missing-{e.claim}", iss) from None
        except jwterr.PyJWTError:
            raise AuthError("malformed", iss) from None


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, unverified: only to choose the client and key. PyJWT then parses the
    token again and verifies it (alg, issuer, signature) independently of this reading."""
    try:
        head, body, _ = token.split(".")
        header = orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        claims = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise AuthError("malformed") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AuthError("malformed")
    return header, claims


def _safe(value: str | None, limit: int = 120) -> str:
    """A caller-supplied string made safe for one log line."""
    if value is None:
        return "-"
    return repr(value[:limit])
