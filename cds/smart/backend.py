"""`[trusted_clients.backend]`: the service registered as a SMART Backend Services client.

    [trusted_clients.backend]
    client_id = "cds-service"
    private_key_file = "/etc/cds/backend-key.pem"       # RS384 or ES384 private key (PEM)
    kid = "cds-1"                                       # optional: else the key's RFC 7638 thumbprint
    token_url = "https://ehr.example.org/oauth2/token"  # optional: else smart-configuration
    scope = "system/Patient.rs system/Observation.rs"   # optional: else derived from hooks.json

Anything invalid stops start-up with a SettingsError that says what to fix. The private key never
leaves this module except to sign client assertions; `public_jwk` is the only view of it shown.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cds.runtime.outbound import Reach, Target
from cds.runtime.settings import SettingsError

_KEYS = {"client_id", "private_key_file", "kid", "token_url", "scope"}
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class BackendClient:
    """How the service authenticates to one EHR's authorization server."""

    client_id: str
    private_key: Any = None  # rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey; never logged
    alg: str = "ES384"
    kid: str = ""
    token_url: str | None = None  # None: discovered from {fhirServer}/.well-known/smart-configuration
    scope: str | None = None  # None: derived from what hooks.json prefetches

    def __repr__(self) -> str:  # the key must never reach a log through repr()
        return f"BackendClient(client_id={self.client_id!r}, alg={self.alg}, kid={self.kid!r})"

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK (kty, crv/x/y or n/e, kid, alg, use=sig): what the EHR registers."""
        public = self.private_key.public_key()
        algo = ECAlgorithm if self.alg == "ES384" else RSAAlgorithm
        jwk = json.loads(algo.to_jwk(public))
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


def algorithm_of(key: Any) -> str:
    """ES384 for a P-384 key, RS384 for RSA >= 2048 bits; ValueError for anything else."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        return "ES384"
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= MIN_RSA_BITS:
        return "RS384"
    raise ValueError("must be an EC P-384 key (ES384) or an RSA key of at least 2048 bits (RS384)")


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): a stable kid when none is configured."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({k: jwk[k] for k in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def load_private_key(path: Path) -> Any:
    """A PEM private key from `path` (unencrypted); ValueError saying what is wrong."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"private_key_file {path} not found") from None
    except OSError as e:
        raise ValueError(f"private_key_file {path} cannot be read: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError(
            f"private_key_file {path} is encrypted; give an unencrypted PEM key (mode 0600)"
        ) from None
    except ValueError:
        raise ValueError(f"private_key_file {path} is not a PEM private key") from None
    try:
        algorithm_of(key)
    except ValueError as e:
        raise ValueError(f"private_key_file {path} {e}") from None
    return key


def parse_backend(raw: Any, where: str, reach: Reach, base_dir: Path | None = None) -> BackendClient:
    """The `backend` table of one trusted client; SettingsError naming `where` and the problem."""

    def fail(msg: str) -> SettingsError:
        return SettingsError(f"{where}.backend: {msg}")

    if not isinstance(raw, dict):
        raise fail("must be a table ([trusted_clients.backend] right after its [[trusted_clients]] entry)")
    unknown = set(raw) - _KEYS
    if unknown:
        raise fail(f"unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_KEYS))}")
    client_id = raw.get("client_id")
    if not isinstance(client_id, str) or not client_id.strip() or client_id != client_id.strip():
        raise fail("client_id must be the non-empty client id the EHR registered the service under")
    key_file = raw.get("private_key_file")
    if not isinstance(key_file, str) or not key_file:
        raise fail("private_key_file must be the path of an RS384 or ES384 private key (PEM)")
    path = Path(key_file).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        key = load_private_key(path)
    except ValueError as e:
        raise fail(str(e)) from None
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise fail(f"private_key_file {path} is readable by others; chmod 600 it")
    alg = algorithm_of(key)
    kid = raw.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid.strip()):
        raise fail("kid must be a non-empty string (the key id the EHR knows the key by)")
    if not kid:
        kid = thumbprint(BackendClient(client_id=client_id, private_key=key, alg=alg).public_jwk())
    token_url = raw.get("token_url")
    if token_url is not None:
        problem = token_url_problem(token_url, reach)
        if problem:
            raise fail(f"token_url {token_url!r} {problem}")
    scope = raw.get("scope")
    if scope is not None and (not isinstance(scope, str) or not scope.split()):
        raise fail('scope must be a space-separated string such as "system/Patient.rs system/Observation.rs"')
    return BackendClient(
        client_id=client_id, private_key=key, alg=alg, kid=kid, token_url=token_url, scope=scope
    )


def token_url_problem(url: Any, reach: Reach) -> str | None:
    """Why `url` cannot be a token endpoint for a client of this reach, or None."""
    if not isinstance(url, str):
        return "must be a URL"
    try:
        target = Target.parse(url)
    except ValueError:
        return "is not a plain http(s) URL"
    if target.scheme == "http" and not reach.http:
        return "must use https (plain http only in development mode or with allow_local_fhir = true)"
    try:
        ipaddress.ip_address(target.host.strip("[]"))
    except ValueError:
        return None
    problem = reach.address_problem(target.host.strip("[]"))
    return f"names {problem}, which is never reached" if problem else None


def public_jwks(clients: Iterable[BackendClient]) -> dict[str, Any]:
    """The JWK Set of our backend keys (public parts only, one per kid)."""
    keys: dict[str, dict[str, Any]] = {}
    for c in clients:
        keys.setdefault(c.kid, c.public_jwk())
    return {"keys": list(keys.values())}
