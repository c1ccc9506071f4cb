"""JWKS endpoint faults, with a local JWK Set server the test starts on 127.0.0.1: slow, down,
answering 500 or garbage. A token whose key must be fetched gets a 401 within the JWKS timeout
(never a hang, never a 5xx); keys already cached keep working while the endpoint is down."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from starlette.testclient import TestClient

from cds.runtime.settings import load_settings
from cds.web.app import create_app

pytestmark = pytest.mark.slow
ISS = "https://ehr.example.org"
BASE = "http://localhost"
TIMEOUT_S = 0.5  # jwks_timeout_seconds
SLOW_S = 30  # how long the "slow" endpoint takes: far beyond every timeout below
# Wall-clock bounds only tell "the timeout cut in" from "it waited for the endpoint", so each has
# this much slack: a loaded 2-core CI runner can pause a test thread for seconds.
SLACK_S = 5.0


class JwksServer:
    """Serves {"keys": [...]} at /jwks.json; `mode` is ok, slow, error500 or garbage; stop() = down."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.mode = "ok"
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                if outer.mode == "slow":
                    time.sleep(SLOW_S)
                if outer.mode == "error500":
                    self.send_response(500)
                    self.end_headers()
                    return
                body = b"<html>oops" if outer.mode == "garbage" else json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up (slow mode)
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Key:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = ec.generate_private_key(ec.SECP384R1())

    def jwk(self) -> dict[str, Any]:
        return {
            **json.loads(ECAlgorithm.to_jwk(self.private.public_key())),
            "kid": self.kid,
            "use": "sig",
            "alg": "ES384",
        }

    def token(self, jku: str, path: str = "/cds-services") -> str:
        now = int(time.time())
        claims = {"iss": ISS, "aud": BASE + path, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        return jwt.encode(
            claims, self.private, algorithm="ES384", headers={"kid": self.kid, "jku": jku, "typ": "JWT"}
        )


@pytest.fixture
def keys() -> tuple[Key, Key]:
    return Key("ehr-1"), Key("ehr-2-rotated")


@pytest.fixture
def jwks(keys: tuple[Key, Key]) -> Iterator[JwksServer]:
    server = JwksServer([keys[0].jwk()])
    yield server
    server.stop()


@pytest.fixture
def client(tmp_path: Path, jwks: JwksServer) -> Iterator[Any]:
    def make(**overrides: Any) -> TestClient:
        settings = load_settings(
            data_dir=tmp_path,
            public_base_url=BASE,
            **{
                "trusted_clients": [{"iss": ISS, "jku": [jwks.url], "allow_local_fhir": True}],
                "jwks_timeout_seconds": TIMEOUT_S,
                **overrides,
            },
        )
        c = TestClient(create_app(settings), base_url=BASE, raise_server_exceptions=False)
        c.__enter__()
        made.append(c)
        return c

    made: list[TestClient] = []
    yield make
    for c in made:
        c.__exit__(None, None, None)


def discovery(c: TestClient, token: str) -> tuple[int, float]:
    started = time.perf_counter()
    resp = c.get("/cds-services", headers={"Authorization": f"Bearer {token}"})
    elapsed = time.perf_counter() - started
    if resp.status_code == 401:
        assert resp.headers["www-authenticate"] == "Bearer"
        assert resp.json()["resourceType"] == "OperationOutcome"
    return resp.status_code, elapsed


@pytest.mark.parametrize("mode", ["slow", "down", "error500", "garbage"])
def test_key_that_must_be_fetched_is_401_within_the_timeout(
    client: Any, jwks: JwksServer, keys: tuple[Key, Key], mode: str, caplog: Any
) -> None:
    c = client()
    if mode == "down":
        jwks.stop()
    else:
        jwks.mode = mode
    status, elapsed = discovery(c, keys[0].token(jwks.url))
    assert status == 401
    assert elapsed < TIMEOUT_S + SLACK_S, f"{mode}: {elapsed:.2f} s"
    assert "JWK Set fetch failed" in caplog.text
    assert "check=jwks-unavailable" in caplog.text
    # a second call does not try again: failed fetches are rate-limited
    hits = jwks.hits
    status, _ = discovery(c, keys[0].token(jwks.url))
    assert status == 401
    assert jwks.hits == hits


@pytest.mark.parametrize("cache_seconds", [3600, 0])
def test_cached_keys_keep_working_while_the_endpoint_is_down(
    client: Any, jwks: JwksServer, keys: tuple[Key, Key], cache_seconds: int
) -> None:
    """cache_seconds=0: the cached set is stale at once, refreshed in the background, still served."""
    c = client(jwks_cache_seconds=cache_seconds)
    assert discovery(c, keys[0].token(jwks.url))[0] == 200
    assert jwks.hits == 1
    jwks.stop()
    for _ in range(5):
        status, elapsed = discovery(c, keys[0].token(jwks.url))
        assert status == 200
        assert elapsed < TIMEOUT_S + SLACK_S  # never waits for the endpoint
    # a rotated key cannot be had while the endpoint is down: 401 within the timeout
    status, elapsed = discovery(c, keys[1].token(jwks.url))
    assert status == 401 and elapsed < TIMEOUT_S + SLACK_S


def test_slow_endpoint_does_not_stall_other_callers(
    client: Any, jwks: JwksServer, keys: tuple[Key, Key]
) -> None:
    """While one token waits for a slow JWKS fetch (a second key set of the issuer, never fetched
    before, so no rate limit applies), calls with cached keys are answered at once: the cached-key
    call finishes while the other is still waiting (its timeout is 8 s here)."""
    other = jwks.url.replace("/jwks.json", "/other.json")
    c = client(
        jwks_timeout_seconds=8,
        trusted_clients=[{"iss": ISS, "jku": [jwks.url, other], "allow_local_fhir": True}],
    )
    assert discovery(c, keys[0].token(jwks.url))[0] == 200
    jwks.mode = "slow"
    jwks.keys = [keys[0].jwk(), keys[1].jwk()]
    done: list[tuple[int, float]] = []
    waiting = threading.Thread(target=lambda: done.append(discovery(c, keys[1].token(other))))
    waiting.start()
    deadline = time.monotonic() + SLACK_S
    while jwks.hits < 2 and time.monotonic() < deadline:  # the slow fetch has reached the endpoint
        time.sleep(0.01)
    status, _ = discovery(c, keys[0].token(jwks.url))
    assert status == 200
    assert waiting.is_alive()  # answered while the other call still waits on the endpoint
    waiting.join(8 + SLACK_S)
    assert done and done[0][0] == 401
