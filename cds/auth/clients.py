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
    backend        a table: SMART Backend Services credentials for this client's FHIR servers
                   (client_id, private_key_file, kid, token_url, scope; see cds/smart/backend.py)
    allow_local_fhir   true: this client's FHIR servers, key URLs and token endpoint may use
                   plain http and loopback/private addresses (a hospital's test network); never
                   link-local. Default false: https to public addresses only (see cds/runtime/outbound.py)

At least one of jku, jwks_url, jwks_file. Anything invalid stops start-up with a SettingsError.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cds.auth.jwks import VerifyKey, load_jwks_file
from cds.auth.urls import normalize_base_url
from cds.runtime.outbound import Reach, Target
from cds.runtime.settings import Settings, SettingsError
from cds.smart.backend import BackendClient, parse_backend

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
    "allow_local_fhir",
    "backend",
}


_UNREACHABLE = (
    "which is never fetched from here (allow_local_fhir = true opens loopback and private "
    "addresses for one client; link-local never)"
)


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
    allow_local_fhir: bool = False  # http and loopback/private addresses for this client
    backend: BackendClient | None = None  # SMART Backend Services credentials, when configured

    def reach(self, dev: bool) -> Reach:
        """Which schemes and addresses requests made for this client may use."""
        return Reach.for_caller(dev=dev, allow_local=self.allow_local_fhir)


def parse_trusted_clients(settings: Settings) -> list[TrustedClient]:
    """The configured trusted clients, validated; SettingsError naming the entry and problem."""
    raw = settings.trusted_clients
    if not isinstance(raw, list):
        raise SettingsError("trusted_clients must be a list of tables ({iss, jku|jwks_url|jwks_file, ...})")
    clients: list[TrustedClient] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        client = _parse_one(entry, i, dev=settings.dev, max_jwks_bytes=settings.jwks_max_bytes)
        if client.iss in seen:
            raise SettingsError(f"trusted_clients: issuer {client.iss!r} is listed twice")
        seen.add(client.iss)
        clients.append(client)
    return clients


def _parse_one(entry: Any, i: int, *, dev: bool, max_jwks_bytes: int) -> TrustedClient:
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

    allow_local = entry.get("allow_local_fhir", False)
    if not isinstance(allow_local, bool):
        raise fail("allow_local_fhir must be true or false")
    reach = Reach.for_caller(dev=dev, allow_local=allow_local)
    jku = tuple(_url_list(entry.get("jku", []), "jku", fail, reach=reach))
    jwks_url = entry.get("jwks_url")
    if jwks_url is not None:
        jwks_url = _key_url(jwks_url, "jwks_url", fail, reach=reach)
    local_keys: dict[str, VerifyKey] = {}
    jwks_file = entry.get("jwks_file")
    if jwks_file is not None:
        if not isinstance(jwks_file, str | Path) or not str(jwks_file):
            raise fail("jwks_file must be a path to a JWK Set file")
        path = BUILTIN_JWKS.get(str(jwks_file), Path(jwks_file))
        try:
            local_keys = load_jwks_file(path, max_jwks_bytes)
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
        if norm.startswith("http://") and not reach.http:
            raise fail(
                f"fhir_servers entry {s!r} must use https "
                "(plain http only in development mode or with allow_local_fhir = true)"
            )
        problem = _literal_problem(norm, reach)
        if problem:
            raise fail(f"fhir_servers entry {s!r} names {problem}, {_UNREACHABLE}")
        fhir_servers.add(norm)

    lifetime = entry.get("max_token_lifetime_seconds", DEFAULT_MAX_TOKEN_LIFETIME)
    if not isinstance(lifetime, int) or isinstance(lifetime, bool) or not 0 < lifetime <= 86400:
        raise fail("max_token_lifetime_seconds must be an integer between 1 and 86400")

    backend = None
    if "backend" in entry:
        backend = parse_backend(entry["backend"], where, reach)
        if not fhir_servers:
            raise fail("backend credentials need fhir_servers: the servers they are used for")

    return TrustedClient(
        iss=iss,
        algorithms=frozenset(algs),
        jku=jku,
        jwks_url=jwks_url,
        local_keys=local_keys,
        tenants=tenants,
        fhir_servers=frozenset(fhir_servers),
        max_token_lifetime_seconds=lifetime,
        allow_local_fhir=allow_local,
        backend=backend,
    )


def _literal_problem(url: str, reach: Reach) -> str | None:
    """Why an address written in `url` is out of `reach` (names are checked when resolved)."""
    host = (urlsplit(url).hostname or "").strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return reach.address_problem(host)


def _url_list(value: Any, name: str, fail: Any, *, reach: Reach) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list):
        raise fail(f"{name} must be a list of URLs")
    return [_key_url(v, name, fail, reach=reach) for v in values]


def _key_url(url: Any, name: str, fail: Any, *, reach: Reach) -> str:
    """A JWK Set URL: https (http only in dev mode or with allow_local_fhir), no user info or
    fragment, inside the client's reach."""
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        ok = bool(parts and parts.scheme.lower() in ("http", "https") and parts.hostname and parts.port != 0)
        Target.parse(url.split("?", 1)[0] if ok else "")
    except ValueError:
        ok = False
    if not ok or parts is None or parts.username is not None or parts.fragment or url != url.strip():
        raise fail(f"{name} entry {url!r} is not a plain http(s) URL")
    if url.lower().startswith("http://") and not reach.http:
        raise fail(
            f"{name} entry {url!r} must use https (keys fetched over plain http could be forged; "
            "plain http only in development mode or with allow_local_fhir = true)"
        )
    problem = _literal_problem(url, reach)
    if problem:
        raise fail(f"{name} entry {url!r} names {problem}, {_UNREACHABLE}")
    return url
