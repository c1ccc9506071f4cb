"""JWK Sets: parsing public keys, and fetching them over HTTP without ever stalling a hook.

Only URLs the operator allow-listed reach `JwksCache.get_key` (the authenticator checks first),
and every fetch goes through the outbound gate (`cds.runtime.outbound`) with the client's reach: https to
public addresses unless the client allows local servers, no redirects, the whole body read up to
`max_bytes` (a JWK Set of many RSA keys easily passes 100 KB).
Fetches are asynchronous with a short timeout, single-flight per URL
and at most one attempt per URL every `min_refetch_seconds` (so an unknown `kid` or a dead issuer
cannot make every call wait). A set older than its cache lifetime is still served while a refresh
runs in the background, and for up to `stale_grace_seconds` while the issuer is unreachable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from cds.runtime.outbound import STRICT, OutboundClient, Reach, Target

log = logging.getLogger("cds.auth")

# Default cap on a JWK Set (fetched or read from a file); `jwks_max_bytes` in the settings.
MAX_JWKS_BYTES = 1024 * 1024
MIN_RSA_BITS = 2048
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_ALG_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


class JwksUnavailable(Exception):
    """No usable JWK Set could be obtained from a URL (and none is cached)."""


@dataclass(frozen=True)
class VerifyKey:
    """A public signing key from a JWK Set."""

    kid: str
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    alg: str | None  # the JWK's own "alg", when it declares one

    def suits(self, alg: str) -> bool:
        """Whether a token signed with `alg` may be verified with this key."""
        if self.alg is not None and self.alg != alg:
            return False
        if alg.startswith("ES"):
            return isinstance(self.key, ec.EllipticCurvePublicKey) and (
                _CURVES.get(self.key.curve.name) == _ALG_CURVE.get(alg)
            )
        return alg.startswith(("RS", "PS")) and isinstance(self.key, rsa.RSAPublicKey)


def parse_jwk(jwk: Any) -> VerifyKey | None:
    """A `VerifyKey` from one JWK, or None for keys we never verify with (HMAC, no kid, weak...)."""
    if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or not jwk["kid"]:
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    alg = jwk.get("alg")
    if alg is not None and not isinstance(alg, str):
        return None
    key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey | rsa.RSAPrivateKey | rsa.RSAPublicKey
    try:
        if jwk.get("kty") == "EC":
            key = ECAlgorithm.from_jwk(jwk)
        elif jwk.get("kty") == "RSA":
            key = RSAAlgorithm.from_jwk(jwk)
        else:
            return None  # "oct" (HMAC) and anything else: never a CDS client key
    except (InvalidKeyError, ValueError, TypeError, KeyError):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        key = key.public_key()  # some published sets carry the private part too; use only the public
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        return None
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in _CURVES:
        return None
    return VerifyKey(kid=jwk["kid"], key=key, alg=alg)


def parse_jwks(data: Any) -> dict[str, VerifyKey]:
    """kid -> key for the usable keys of a JWK Set document; ValueError if it is not a JWK Set."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError('not a JWK Set (expected {"keys": [...]})')
    keys: dict[str, VerifyKey] = {}
    for jwk in data["keys"]:
        parsed = parse_jwk(jwk)
        if parsed is not None:
            keys.setdefault(parsed.kid, parsed)
    return keys


def load_jwks_file(path: Path, max_bytes: int = MAX_JWKS_BYTES) -> dict[str, VerifyKey]:
    """Keys from a JWK Set file (air-gapped sites); ValueError/OSError when unreadable."""
    with open(path, "rb") as fh:
        raw = fh.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ValueError(f"larger than {max_bytes} bytes")
    keys = parse_jwks(json.loads(raw))
    if not keys:
        raise ValueError("holds no usable signing key (EC P-256/384/521 or RSA >= 2048 with a kid)")
    return keys


@dataclass
class _Entry:
    keys: dict[str, VerifyKey] = field(default_factory=dict)
    fetched_at: float | None = None  # None: never fetched successfully
    attempted_at: float = float("-inf")
    reach: Reach = STRICT
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class JwksCache:
    """Per-URL cache of fetched JWK Sets."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        cache_seconds: float,
        min_refetch_seconds: float = 30.0,
        stale_grace_seconds: float = 24 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int = MAX_JWKS_BYTES,
        outbound: OutboundClient | None = None,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.cache_seconds = cache_seconds
        self.min_refetch_seconds = min_refetch_seconds
        self.stale_grace_seconds = stale_grace_seconds
        self.clock = clock
        self.max_bytes = max_bytes
        self.outbound = outbound or OutboundClient(connect_timeout=timeout_seconds)
        self.fetches = 0  # attempts made, for tests and metrics
        self._entries: dict[str, _Entry] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.outbound.start()

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.outbound.close()

    def cached(self, url: str) -> Mapping[str, VerifyKey]:
        """The keys currently cached for `url` (empty when none)."""
        entry = self._entries.get(url)
        return entry.keys if entry else {}

    async def get_key(self, url: str, kid: str, reach: Reach = STRICT) -> VerifyKey | None:
        """The key `kid` from the JWK Set at `url`; None if the set has no such key.

        `reach` is the trusted client's (which schemes and addresses its key URLs may use).
        Raises JwksUnavailable when nothing usable is cached and the URL cannot be fetched now.
        """
        entry = self._entries.setdefault(url, _Entry())
        entry.reach = reach
        now = self.clock()
        if entry.fetched_at is None:
            await self._refresh(url, entry, now)
        elif now - entry.fetched_at > self.cache_seconds:
            if now - entry.fetched_at > self.cache_seconds + self.stale_grace_seconds:
                await self._refresh(url, entry, now)  # too old to serve: must refetch
            elif kid in entry.keys:
                self._refresh_in_background(url, entry, now)
            else:
                await self._refresh(url, entry, now)
        if entry.fetched_at is None:
            raise JwksUnavailable(url)
        key = entry.keys.get(kid)
        if key is None and self._may_attempt(entry, self.clock()):
            await self._refresh(url, entry, self.clock())  # a rotated key: refetch, rate-limited
            key = entry.keys.get(kid)
        return key

    def _may_attempt(self, entry: _Entry, now: float) -> bool:
        return now - entry.attempted_at >= self.min_refetch_seconds

    def _refresh_in_background(self, url: str, entry: _Entry, now: float) -> None:
        if entry.lock.locked() or not self._may_attempt(entry, now):
            return
        task = asyncio.get_running_loop().create_task(self._refresh(url, entry, now))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _refresh(self, url: str, entry: _Entry, now: float) -> None:
        """Fetch `url` once (single-flight, rate-limited); on failure keep what is cached."""
        async with entry.lock:
            if entry.attempted_at >= now or not self._may_attempt(entry, self.clock()):
                return  # another caller just tried, or we tried too recently
            entry.attempted_at = self.clock()
            self.fetches += 1
            try:
                keys = await self._fetch(url, entry.reach)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                age = "no cached copy" if entry.fetched_at is None else "serving the cached copy"
                log.warning("JWK Set fetch failed: url=%s error=%s (%s)", url, _describe(e), age)
                if (
                    entry.fetched_at is not None
                    and self.clock() - entry.fetched_at > self.cache_seconds + self.stale_grace_seconds
                ):
                    entry.keys, entry.fetched_at = {}, None  # too old to trust any longer
                return
            entry.keys, entry.fetched_at = keys, self.clock()

    async def _fetch(self, url: str, reach: Reach) -> dict[str, VerifyKey]:
        reply = await self.outbound.request(
            "GET",
            url,
            target=Target.parse(url.split("?", 1)[0]),
            reach=reach,
            headers={"Accept": "application/jwk-set+json, application/json"},
            max_bytes=self.max_bytes,
            timeout=self.timeout_seconds,
        )
        if reply.status != 200:
            raise ValueError(f"HTTP {reply.status}")
        return parse_jwks(json.loads(reply.body))


def _describe(e: Exception) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "timeout"
    return f"{type(e).__name__}: {e}"[:200]
