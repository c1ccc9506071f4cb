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
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from cds.auth.jwks import VerifyKey, load_jwks_file
from cds.auth.urls import normalize_base_url
from cds.runtime.outbound import Reach, Target
from cds.runtime.settings import Settings, SettingsError
from cds.smart.backend import BackendClient, parse_backend

# Asymmetric JWS algorithms a client may be configured for; none and HMAC are never accepted.
Algorithm = Literal["ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
SUPPORTED_ALGORITHMS: frozenset[str] = frozenset(get_args(Algorithm))
DEFAULT_ALGORITHMS: tuple[Algorithm, ...] = ("ES384", "RS384")
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


class ClientEntry(msgspec.Struct, forbid_unknown_fields=True):
    """One `[[trusted_clients]]` table as written (see the module docstring); URLs, reach and key
    files are checked by `_parse_one`, the backend table by cds.smart.backend."""

    iss: Annotated[str, Meta(pattern=r"^\S(.*\S)?$")]
    jku: str | list[str] = []
    jwks_url: str | None = None
    jwks_file: Annotated[str, Meta(min_length=1)] | None = None
    algorithms: Annotated[list[Algorithm], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: list(DEFAULT_ALGORITHMS)
    )
    tenant: (
        Annotated[str, Meta(min_length=1)]
        | Annotated[list[Annotated[str, Meta(min_length=1)]], Meta(min_length=1)]
        | None
    ) = None
    fhir_servers: list[str] = []
    max_token_lifetime_seconds: Annotated[int, Meta(ge=1, le=86400)] = DEFAULT_MAX_TOKEN_LIFETIME
    allow_local_fhir: bool = False
    backend: Any = None


# What each key must be, said so that the site's administrator can fix the table.
_HINTS = {
    "iss": "iss must be a non-empty string (the issuer exactly as it appears in the tokens)",
    "jku": "jku must be a list of URLs",
    "jwks_url": "jwks_url must be a URL",
    "jwks_file": "jwks_file must be a path to a JWK Set file",
    "algorithms": 'algorithms must be a non-empty list such as ["ES384", "RS384"]',
    "tenant": "tenant must be a string or a non-empty list of strings",
    "fhir_servers": "fhir_servers must be a list of FHIR base URLs",
    "max_token_lifetime_seconds": "max_token_lifetime_seconds must be an integer between 1 and 86400",
    "allow_local_fhir": "allow_local_fhir must be true or false",
}
_KEYS = sorted(f.encode_name for f in msgspec.structs.fields(ClientEntry))


def _entry_problem(error: msgspec.ValidationError, entry: Any) -> str:
    """The declaration's complaint about one table, in the words of _HINTS."""
    text = str(error)
    at = re.search(r" - at `\$\.?([A-Za-z_]*)(?:\[(\d+)\])?", text)
    key = at.group(1) if at else ""
    unknown = re.match(r"Object contains unknown field `([^`]+)`", text)
    if unknown:
        return f"unknown key(s) {unknown.group(1)}; allowed: {', '.join(_KEYS)}"
    if key == "algorithms" and at and at.group(2) is not None and text.startswith("Invalid enum value"):
        return (
            f"algorithm(s) {entry['algorithms'][int(at.group(2))]} not accepted; choose from "
            f"{', '.join(sorted(SUPPORTED_ALGORITHMS))} (none and HMAC are forbidden by CDS Hooks)"
        )
    missing = re.match(r"Object missing required field `([^`]+)`", text)
    if missing:
        key = missing.group(1)
    return _HINTS.get(key, text)


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
    iss = entry.get("iss") if isinstance(entry, dict) else None
    where = f"trusted_clients[{i}]" + (f" ({iss})" if isinstance(iss, str) else "")

    def fail(msg: str) -> SettingsError:
        return SettingsError(f"{where}: {msg}")

    if not isinstance(entry, dict):
        raise SettingsError(f"trusted_clients[{i}] must be a table, not {type(entry).__name__}")
    try:
        c = msgspec.convert(entry, ClientEntry)
    except msgspec.ValidationError as e:
        raise fail(_entry_problem(e, entry)) from None

    reach = Reach.for_caller(dev=dev, allow_local=c.allow_local_fhir)
    jku = tuple(_key_url(u, "jku", fail, reach=reach) for u in ([c.jku] if isinstance(c.jku, str) else c.jku))
    jwks_url = _key_url(c.jwks_url, "jwks_url", fail, reach=reach) if c.jwks_url is not None else None
    local_keys: dict[str, VerifyKey] = {}
    if c.jwks_file is not None:
        path = BUILTIN_JWKS.get(c.jwks_file, Path(c.jwks_file))
        try:
            local_keys = load_jwks_file(path, max_jwks_bytes)
        except FileNotFoundError:
            raise fail(f"jwks_file {path} not found") from None
        except (OSError, ValueError) as e:
            raise fail(f"jwks_file {path} is not a usable JWK Set: {e}") from None
    if not (jku or jwks_url or local_keys):
        raise fail("needs at least one key source: jku (allow-listed URLs), jwks_url or jwks_file")

    fhir_servers: set[str] = set()
    for s in c.fhir_servers:
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

    backend = None
    if c.backend is not None:
        backend = parse_backend(c.backend, where, reach)
        if not fhir_servers:
            raise fail("backend credentials need fhir_servers: the servers they are used for")

    return TrustedClient(
        iss=c.iss,
        algorithms=frozenset(c.algorithms),
        jku=jku,
        jwks_url=jwks_url,
        local_keys=local_keys,
        tenants=None
        if c.tenant is None
        else frozenset([c.tenant] if isinstance(c.tenant, str) else c.tenant),
        fhir_servers=frozenset(fhir_servers),
        max_token_lifetime_seconds=c.max_token_lifetime_seconds,
        allow_local_fhir=c.allow_local_fhir,
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
