"""Development mode keys: a local ES384 key pair in the data directory that the service trusts
(as issuer "cds-dev") when `settings.dev` is on, and tokens signed with it for curl and scripts.

Never used outside development mode: the key sits unencrypted on disk (mode 0600).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from cds.auth.clients import TrustedClient
from cds.auth.jwks import VerifyKey
from cds.runtime.settings import Settings

DEV_ISSUER = "cds-dev"
DEV_KEY_FILE = "dev-key.pem"
DEV_ALGORITHM = "ES384"


def dev_key_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / DEV_KEY_FILE


def load_or_create_dev_key(settings: Settings) -> ec.EllipticCurvePrivateKey:
    """The development private key from the data directory, created (0600) on first use.

    Creation is atomic (write a temporary file, then hard-link it into place), so `cds serve
    --dev` and `cds token` started together agree on one key.
    """
    path = dev_key_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        new = ec.generate_private_key(ec.SECP384R1())
        pem = new.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_name(f".{DEV_KEY_FILE}.{os.getpid()}.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            with contextlib.suppress(FileExistsError):  # another process won the race: use its key
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp384r1":
        raise ValueError(f"{path} is not an EC P-384 private key; delete it to generate a new one")
    return key


def key_id(public: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): stable for a key, so tokens survive restarts."""
    jwk = json.loads(ECAlgorithm.to_jwk(public))
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def dev_client(settings: Settings) -> TrustedClient:
    """The trusted client for development mode: the local key, any FHIR server (http allowed)."""
    public = load_or_create_dev_key(settings).public_key()
    kid = key_id(public)
    return TrustedClient(
        iss=DEV_ISSUER,
        algorithms=frozenset({DEV_ALGORITHM}),
        local_keys={kid: VerifyKey(kid=kid, key=public, alg=DEV_ALGORITHM)},
        any_fhir_server=True,
    )


def mint_dev_token(
    settings: Settings,
    aud: str,
    *,
    tenant: str | None = None,
    sub: str = "cds-dev-client",
    lifetime_seconds: int = 300,
) -> str:
    """A fresh JWT for `aud` (the exact URL to call), signed with the development key."""
    key = load_or_create_dev_key(settings)
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": DEV_ISSUER,
        "sub": sub,
        "aud": aud,
        "iat": now,
        "exp": now + lifetime_seconds,
        "jti": str(uuid.uuid4()),
    }
    if tenant is not None:
        claims["tenant"] = tenant
    headers = {"kid": key_id(key.public_key()), "typ": "JWT"}
    return jwt.encode(claims, key, algorithm=DEV_ALGORITHM, headers=headers)
