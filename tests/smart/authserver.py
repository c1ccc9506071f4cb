"""A SMART Backend Services authorization server for the tests (the server side of the flow).

It verifies client assertions with PyJWT, as a real one does (SMART App Launch 2.x, Backend
Services, "Authorize"): fetches the client's registered JWK Set (the service's own
`/.well-known/jwks.json`), checks the signature (RS384/ES384), `iss` = `sub` = the registered
client_id, `aud` = its token URL, `exp` present and at most 5 minutes ahead, `jti` never seen
before; checks the grant type and assertion type; grants the requested scopes it allows; and
registers each access token it issues with the test FHIR server, which then requires it.

Knobs for fault tests: `mode` ("ok", "down" answered by stop(), "slow", "invalid_client"),
`delay`, `expires_in`, `grants` (the scopes it will grant), `audience` (what `aud` must be).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class AuthServer:
    def __init__(self, client_id: str, jwks_url: str, fhir: Any) -> None:
        self.client_id = client_id
        self.jwks = jwt.PyJWKClient(jwks_url, cache_keys=False, cache_jwk_set=False)
        self.fhir = fhir
        self.mode = "ok"
        self.delay = 0.0
        self.expires_in = 300
        self.grants: set[str] | None = None  # None: every requested scope
        self.seen_jti: set[str] = set()
        self.requests: list[
            dict[str, Any]
        ] = []  # {"ok": bool, "error": str|None, "claims": {...}, "scope": ...}
        self.issued: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if server.delay:
                    time.sleep(server.delay)
                status, body = server.token(form)
                raw = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Cache-Control", "no-store")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:
                    pass  # the client gave up (slow mode)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.token_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.audience = self.token_url
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _refuse(self, error: str, record: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        record.update(ok=False, error=error)
        return (401 if error == "invalid_client" else 400), {"error": error}

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        record: dict[str, Any] = {
            "ok": False,
            "error": None,
            "claims": None,
            "header": None,
            "scope": form.get("scope"),
        }
        self.requests.append(record)
        if self.mode == "invalid_client":
            return self._refuse("invalid_client", record)
        if form.get("grant_type") != "client_credentials":
            return self._refuse("unsupported_grant_type", record)
        if form.get("client_assertion_type") != ASSERTION_TYPE or "client_assertion" not in form:
            return self._refuse("invalid_request", record)
        assertion = form["client_assertion"]
        try:
            record["header"] = jwt.get_unverified_header(assertion)
            key = self.jwks.get_signing_key_from_jwt(assertion)
            claims = jwt.decode(
                assertion,
                key.key,
                algorithms=["RS384", "ES384"],
                audience=self.audience,
                issuer=self.client_id,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except jwt.PyJWTError as e:
            record["detail"] = type(e).__name__
            return self._refuse("invalid_client", record)
        record["claims"] = claims
        if (
            claims["sub"] != self.client_id
            or claims["exp"] > time.time() + 300
            or claims["jti"] in self.seen_jti
        ):
            return self._refuse("invalid_client", record)
        self.seen_jti.add(claims["jti"])
        requested = (form.get("scope") or "").split()
        granted = [s for s in requested if self.grants is None or s in self.grants]
        if not granted:
            return self._refuse("invalid_scope", record)
        access = secrets.token_urlsafe(24)
        self.fhir.accept_tokens(add=[access])
        self.issued.append(access)
        record["ok"] = True
        return 200, {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "scope": " ".join(granted),
        }

    @property
    def ok_requests(self) -> int:
        return sum(1 for r in self.requests if r["ok"])
