"""Trusted CDS clients: who may call, with which keys and algorithms, for which tenants, and
which FHIR servers the service may fetch from on their behalf.

Read from `settings.trusted_clients`, a list of tables:

    iss            the issuer, compared exactly (required)
    jku            allow-listed JWK Set URLs a token's `jku` header may name (fetched on demand)
    jwks_url       a JWK Set URL fetched whatever the token says (keys shared out of band)
    jwks_file      a JWK Set file (air-gapped sites); "builtin:cds-hooks-sandbox" for the sandbox
    algorithms     default ["ES384", "RS384"]; ES256/RS256 (and 512, PS*) only when listed
    tenant         optional allow-list (string or list) of `tenant` claim values
    fhir_servers   fhirServer base URLs the service may fetch from for this client
    max_token_lifetime_seconds   longest exp - iat accepted (default 300; see DEFAULT_MAX_TOKEN_LIFETIME)

At least one of jku, jwks_url, jwks_file. Anything invalid stops start-up with a SettingsError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cds.auth.jwks import VerifyKey, load_jwks_file
from cds.auth.urls import is_loopback, normalize_base_url
from cds.settings import Settings, SettingsError

DEFAULT_ALGORITHMS = ("ES384", "RS384")
# Asymmetric JWS algorithms a client may be configured for; none and HMAC are never accepted.
SUPPORTED_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
# Stricter than CDS Hooks requires (it only recommends short-lived tokens): the official sandbox
# and common EHRs sign 5-minute tokens, and the lifetime bounds how long a captured token could be
# replayed if replay protection ever fell back to one process, and how long seen-set rows live.
DEFAULT_MAX_TOKEN_LIFETIME = 300
# The official CDS Hooks Sandbox's PUBLIC key set, as published at SANDBOX_JKU and in
# github.com/cds-hooks/sandbox (.well-known/jwks.json), so a site can trust it without network.
# Its private key is public too: trusting this issuer is for testing only, never real patients.
BUILTIN_JWKS = {"builtin:cds-hooks-sandbox": Path(__file__).with_name("sandbox-jwks.json")}
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"

_KEYS = {
    "iss",
    "jku",
    "jwks_url",
    "jwks_file",
    "algorithms",
    "tenant",
    "fhir_servers",
    "max_token_lifetime_seconds",
}


@dataclass(frozen=True)
class TrustedClient:
    """One trusted CDS client (an EHR, the sandbox, or the local development issuer)."""

    iss: str
    algorithms: frozenset[str] = frozenset(DEFAULT_ALGORITHMS)
    jku: tuple[str, ...] = ()
    jwks_url: str | None = None
    local_keys: Mapping[str, VerifyKey] = field(default_factory=dict)  # from jwks_file (or dev key)
    tenants: frozenset[str] | None = None  # None: any tenant, or none
    fhir_servers: frozenset[str] = frozenset()  # normalised base URLs
    max_token_lifetime_seconds: int = DEFAULT_MAX_TOKEN_LIFETIME
    any_fhir_server: bool = False  # only the development issuer


def parse_trusted_clients(settings: Settings) -> list[TrustedClient]:
    """The configured trusted clients, validated; SettingsError naming the entry and problem."""
    raw = settings.trusted_clients
    if not isinstance(raw, list):
        raise SettingsError("trusted_clients must be a list of tables ({iss, jku|jwks_url|jwks_file, ...})")
    clients: list[TrustedClient] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        client = _parse_one(entry, i, dev=settings.dev)
        if client.iss in seen:
            raise SettingsError(f"trusted_clients: issuer {client.iss!r} is listed twice")
        seen.add(client.iss)
        clients.append(client)
    return clients


def _parse_one(entry: Any, i: int, *, dev: bool) -> TrustedClient:
    if not isinstance(entry, dict):
        raise SettingsError(f"trusted_clients[{i}] must be a table, not {type(entry).__name__}")
    iss = entry.get("iss")
    where = f"trusted_clients[{i}]" + (f" ({iss})" if isinstance(iss, str) else "")

    def fail(msg: str) -> SettingsError:
        return SettingsError(f"{where}: {msg}")

    unknown = set(entry) - _KEYS
    if unknown:
        raise fail(f"unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_KEYS))}")
    if not isinstance(iss, str) or not iss.strip() or iss != iss.strip():
        raise fail("iss must be a non-empty string (the issuer exactly as it appears in the tokens)")

    jku = tuple(_url_list(entry.get("jku", []), "jku", fail, dev=dev))
    jwks_url = entry.get("jwks_url")
    if jwks_url is not None:
        jwks_url = _key_url(jwks_url, "jwks_url", fail, dev=dev)
    local_keys: dict[str, VerifyKey] = {}
    jwks_file = entry.get("jwks_file")
    if jwks_file is not None:
        if not isinstance(jwks_file, str | Path) or not str(jwks_file):
            raise fail("jwks_file must be a path to a JWK Set file")
        path = BUILTIN_JWKS.get(str(jwks_file), Path(jwks_file))
        try:
            local_keys = load_jwks_file(path)
        except FileNotFoundError:
            raise fail(f"jwks_file {path} not found") from None
        except (OSError, ValueError) as e:
            raise fail(f"jwks_file {path} is not a usable JWK Set: {e}") from None
    if not (jku or jwks_url or local_keys):
        raise fail("needs at least one key source: jku (allow-listed URLs), jwks_url or jwks_file")

    algs = entry.get("algorithms", list(DEFAULT_ALGORITHMS))
    if not isinstance(algs, list) or not algs or not all(isinstance(a, str) for a in algs):
        raise fail('algorithms must be a non-empty list such as ["ES384", "RS384"]')
    bad = [a for a in algs if a not in SUPPORTED_ALGORITHMS]
    if bad:
        raise fail(
            f"algorithm(s) {', '.join(bad)} not accepted; choose from "
            f"{', '.join(sorted(SUPPORTED_ALGORITHMS))} (none and HMAC are forbidden by CDS Hooks)"
        )

    tenant = entry.get("tenant")
    tenants: frozenset[str] | None = None
    if tenant is not None:
        values = [tenant] if isinstance(tenant, str) else tenant
        if not isinstance(values, list) or not values or not all(isinstance(t, str) and t for t in values):
            raise fail("tenant must be a string or a non-empty list of strings")
        tenants = frozenset(values)

    servers = entry.get("fhir_servers", [])
    if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
        raise fail("fhir_servers must be a list of FHIR base URLs")
    fhir_servers: set[str] = set()
    for s in servers:
        norm = normalize_base_url(s)
        if norm is None:
            raise fail(f"fhir_servers entry {s!r} is not a plain http(s) base URL")
        if norm.startswith("http://") and not dev:
            raise fail(f"fhir_servers entry {s!r} must use https (plain http only in development mode)")
        fhir_servers.add(norm)

    lifetime = entry.get("max_token_lifetime_seconds", DEFAULT_MAX_TOKEN_LIFETIME)
    if not isinstance(lifetime, int) or isinstance(lifetime, bool) or not 0 < lifetime <= 86400:
        raise fail("max_token_lifetime_seconds must be an integer between 1 and 86400")

    return TrustedClient(
        iss=iss,
        algorithms=frozenset(algs),
        jku=jku,
        jwks_url=jwks_url,
        local_keys=local_keys,
        tenants=tenants,
        fhir_servers=frozenset(fhir_servers),
        max_token_lifetime_seconds=lifetime,
    )


def _url_list(value: Any, name: str, fail: Any, *, dev: bool) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list):
        raise fail(f"{name} must be a list of URLs")
    return [_key_url(v, name, fail, dev=dev) for v in values]


def _key_url(url: Any, name: str, fail: Any, *, dev: bool) -> str:
    """A JWK Set URL: https (http only for loopback or in dev mode), no user info/query/fragment."""
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        ok = bool(parts and parts.scheme.lower() in ("http", "https") and parts.hostname and parts.port != 0)
    except ValueError:
        ok = False
    if not ok or parts is None or parts.username is not None or parts.fragment or url != url.strip():
        raise fail(f"{name} entry {url!r} is not a plain http(s) URL")
    if url.lower().startswith("http://") and not (dev or is_loopback(url)):
        raise fail(f"{name} entry {url!r} must use https (keys fetched over plain http could be forged)")
    return url
