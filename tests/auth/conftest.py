"""Real keys (ES384, RS384, and an attacker's), a token signer, and a local JWKS endpoint on
127.0.0.1 that records every request it gets."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cds.auth import Authenticator
from cds.auth.jwks import JwksCache
from cds.runtime.settings import Settings

ISS = "https://ehr.example.org"
TENANT = "tenant-1"
FHIR = "https://ehr.example.org/fhir"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class KeyPair:
    """A private key with its kid; signs tokens and publishes its public JWK."""

    alg: str
    kid: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        algo = ECAlgorithm if self.alg.startswith("ES") else RSAAlgorithm
        pub = json.loads(algo.to_jwk(self.private.public_key()))
        return {**pub, "kid": self.kid, "use": "sig", "alg": self.alg}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        headers = {k: v for k, v in {"kid": self.kid, "typ": "JWT", **header}.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm=self.alg, headers=headers)


def _key(alg: str, kid: str) -> KeyPair:
    if alg == "ES384":
        private: Any = ec.generate_private_key(ec.SECP384R1())
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return KeyPair(alg, kid, private)


@pytest.fixture(scope="session")
def keys() -> dict[str, KeyPair]:
    """Legitimate keys by algorithm, and an attacker's key of each kind reusing the same kid."""
    return {
        "ES384": _key("ES384", "ehr-es384"),
        "RS384": _key("RS384", "ehr-rs384"),
        "ES256": _key("ES256", "ehr-es256"),
        "attacker-ES384": _key("ES384", "ehr-es384"),
        "attacker-RS384": _key("RS384", "ehr-rs384"),
    }


def claims(aud: str, *, iss: str = ISS, tenant: str | None = TENANT, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"iss": iss, "sub": "ehr-client", "aud": aud, "iat": now, "exp": now + 300}
    base["jti"] = str(uuid.uuid4())
    if tenant is not None:
        base["tenant"] = tenant
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims_: dict[str, Any], header: dict[str, Any]) -> str:
    """header.payload, built by hand (PyJWT refuses to produce the forgeries we test)."""
    return b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims_).encode())


def hs256_forgery(claims_: dict[str, Any], secret: bytes, kid: str) -> str:
    """The classic key-confusion forgery: HS256 keyed with the issuer's public key."""
    head = unsigned(claims_, {"alg": "HS256", "typ": "JWT", "kid": kid})
    return head + "." + b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())


class JwksServer:
    """JWK Sets served at /<name>.json on 127.0.0.1; `requests` lists every path asked for."""

    def __init__(self) -> None:
        self.sets: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        self.status = 200
        self.delay = 0.0
        self.redirects: dict[str, str] = {}
        self.trickle: set[str] = set()  # sets sent in many small chunks, without Content-Length
        self.base = ""
        self._runner: web.AppRunner | None = None

    def url(self, name: str) -> str:
        return f"{self.base}/{name}.json"

    async def _handle(self, request: web.Request) -> web.Response:

        self.requests.append(request.path)
        if self.delay:
            await asyncio.sleep(self.delay)
        name = request.match_info["name"]
        if name in self.redirects:
            raise web.HTTPFound(self.redirects[name])
        if self.status != 200 or name not in self.sets:
            return web.Response(status=self.status if self.status != 200 else 404)
        if name in self.trickle:
            body = json.dumps(self.sets[name]).encode()
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for i in range(0, len(body), 4096):
                await resp.write(body[i : i + 4096])
                await asyncio.sleep(0.001)  # separate reads on the client side
            await resp.write_eof()
            return resp  # type: ignore[return-value]
        return web.json_response(self.sets[name])

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}.json", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def jwks_server(keys: dict[str, KeyPair]) -> AsyncIterator[JwksServer]:
    server = JwksServer()
    server.sets["jwks"] = {"keys": [keys["ES384"].jwk(), keys["RS384"].jwk(), keys["ES256"].jwk()]}
    server.sets["evil"] = {"keys": [keys["attacker-ES384"].jwk(), keys["attacker-RS384"].jwk()]}
    await server.start()
    yield server
    await server.stop()


def ehr_client(server: JwksServer, **overrides: Any) -> dict[str, Any]:
    """A trusted-client config for the test EHR, its keys at the local JWKS endpoint (on
    loopback over http: hence allow_local_fhir, as a hospital's test network would need)."""
    entry: dict[str, Any] = {
        "iss": ISS,
        "jku": [server.url("jwks")],
        "tenant": [TENANT],
        "fhir_servers": [FHIR],
        "allow_local_fhir": True,
    }
    entry.update(overrides)
    return {k: v for k, v in entry.items() if v is not None}


@pytest.fixture(params=[False, True], ids=["inline", "off-loop"])
async def make_auth(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Any]]:
    """Build started Authenticators from trusted-client entries; closed after the test. Every test
    runs twice: signatures verified on the event loop (hooks) and on a worker thread (feedback)."""
    made: list[Authenticator] = []

    async def make(*clients: dict[str, Any], jwks: JwksCache | None = None, **settings: Any) -> Authenticator:
        s = Settings(trusted_clients=list(clients), data_dir=tmp_path, **settings)
        auth = Authenticator(s, jwks=jwks)
        auth.authenticate = functools.partial(auth.authenticate, off_loop=request.param)  # type: ignore[method-assign]
        await auth.start()
        made.append(auth)
        return auth

    yield make
    for auth in made:
        await auth.close()
