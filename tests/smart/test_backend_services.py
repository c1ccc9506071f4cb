"""SMART Backend Services against real components: the service under uvicorn on loopback, a local
authorization server that verifies our client assertions with PyJWT against the service's own
`/.well-known/jwks.json` (tests/smart/authserver.py), and the Medplum test FHIR server, which
accepts only the tokens that authorization server issued. Hooks carry no prefetch and no
`fhirAuthorization`: every card comes through the backend token."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from cds.hooks.discovery import Discovery
from cds.runtime.settings import REPO_ROOT, load_settings
from cds.sandbox.runner import local_service
from cds.web.app import create_app
from tests.core.test_fhir_fallback import PATIENT, PID, VITALS
from tests.live_server import free_port
from tests.smart.authserver import AuthServer

pytestmark = pytest.mark.slow
ISS = "https://ehr.test"
CLIENT_ID = "cds-service"
BUDGET_S = 2.0  # fhir_timeout_seconds: the whole fallback, token request included
SLACK_S = 5.0  # wall-clock slack for a loaded CI runner: bounds only tell "cut off" from "waited"


class Ehr:
    """The EHR's signing key (trusted through a JWK Set file) and a hook caller."""

    def __init__(self, tmp: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP384R1())
        jwk = {**json.loads(ECAlgorithm.to_jwk(self.key.public_key())), "kid": "ehr-1", "alg": "ES384"}
        self.jwks_file = tmp / "ehr-jwks.json"
        self.jwks_file.write_text(json.dumps({"keys": [jwk]}))

    def token(self, aud: str) -> str:
        now = int(time.time())
        claims = {"iss": ISS, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self.key, algorithm="ES384", headers={"kid": "ehr-1"})


def backend_key(tmp: Path) -> Path:
    path = tmp / "backend-key.pem"
    key = ec.generate_private_key(ec.SECP384R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    return path


class Rig:
    def __init__(self, base: str, ehr: Ehr, auth: AuthServer, fhir: Any) -> None:
        self.base, self.ehr, self.auth, self.fhir = base, ehr, auth, fhir

    def hook(self, service: str = "deterioration", **extra: Any) -> httpx.Response:
        url = f"{self.base}/cds-services/{service}"
        body = {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "fhirServer": self.fhir.base_url,
            "context": {"userId": "Practitioner/p", "patientId": PID},
            **extra,
        }
        return httpx.post(
            url, json=body, headers={"Authorization": f"Bearer {self.ehr.token(url)}"}, timeout=30
        )

    def fhir_auth(self) -> list[bool]:
        return [r["auth_ok"] for r in self.fhir.requests()]


@pytest.fixture
def rig(fresh_fhir_server: Any, tmp_path: Path) -> Iterator[Any]:
    """make(**backend_overrides) -> a running Rig; the authorization server starts before the service
    (it fetches the service's JWKS lazily, on the first token request)."""
    fresh_fhir_server.load([PATIENT, *VITALS])
    ehr = Ehr(tmp_path)
    key = backend_key(tmp_path)
    started: list[Any] = []

    def make(backend: dict[str, Any] | None = None, **client: Any) -> Rig:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        auth = AuthServer(CLIENT_ID, f"{base}/.well-known/jwks.json", fresh_fhir_server)
        started.append(auth)
        entry = {
            "iss": ISS,
            "jwks_file": str(ehr.jwks_file),
            "fhir_servers": [fresh_fhir_server.base_url],
            "allow_local_fhir": True,
            "backend": {"client_id": CLIENT_ID, "private_key_file": str(key), "token_url": auth.token_url}
            | (backend or {}),
            **client,
        }
        if entry["backend"].get("token_url") is None:
            del entry["backend"]["token_url"]
        settings = load_settings(
            data_dir=tmp_path / f"data-{port}",
            public_base_url=base,
            trusted_clients=[entry],
            fhir_timeout_seconds=BUDGET_S,
        )
        ctx = local_service(create_app, settings, port=port)
        ctx.__enter__()
        started.append(ctx)
        return Rig(base, ehr, auth, fresh_fhir_server)

    yield make
    for thing in reversed(started):
        if isinstance(thing, AuthServer):
            thing.stop()
        else:
            thing.__exit__(None, None, None)


def test_no_prefetch_no_ehr_token_cards_come_through_the_backend_token(rig: Any) -> None:
    r = rig()
    resp = r.hook()
    assert resp.status_code == 200, resp.text
    assert [c["indicator"] for c in resp.json()["cards"]] == ["critical"]
    assert r.auth.ok_requests == 1
    assert r.fhir_auth() and all(r.fhir_auth())  # every FHIR query carried an issued token
    # the assertion, to the letter of SMART Backend Services
    record = r.auth.requests[0]
    claims, header = record["claims"], record["header"]
    assert claims["iss"] == claims["sub"] == CLIENT_ID and claims["aud"] == r.auth.token_url
    assert 0 < claims["exp"] - time.time() <= 300 and claims["jti"]
    assert header["alg"] == "ES384" and header["kid"]
    scopes = set(record["scope"].split())
    assert {"system/Observation.rs", "system/Condition.rs"} <= scopes  # derived from hooks.json
    assert all(s.startswith("system/") and s.endswith(".rs") for s in scopes)


def test_one_token_request_for_many_hooks(rig: Any) -> None:
    r = rig()
    for _ in range(5):
        assert r.hook().status_code == 200
    assert r.auth.ok_requests == 1
    metrics = httpx.get(f"{r.base}/metrics").text
    assert 'cds_backend_tokens_total{outcome="obtained"} 1.0' in metrics
    assert 'cds_backend_tokens_total{outcome="cache_hit"}' in metrics


def test_expired_token_is_refreshed(rig: Any) -> None:
    r = rig()
    r.auth.expires_in = 1  # renewed at half its life
    assert r.hook().status_code == 200
    time.sleep(0.6)
    assert r.hook().status_code == 200
    assert r.auth.ok_requests == 2


def test_401_from_fhir_refreshes_once_and_retries(rig: Any) -> None:
    r = rig()
    assert r.hook().status_code == 200
    r.fhir.accept_tokens(revoke_all=True)  # the FHIR server forgets the token (revoked, restarted...)
    resp = r.hook()
    assert resp.status_code == 200, resp.text
    assert resp.json()["cards"]
    assert r.auth.ok_requests == 2


def test_fhir_keeps_refusing_gives_412_after_one_retry(rig: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    r = rig()
    # tokens issued but never accepted by the FHIR server
    monkeypatch.setattr(r.fhir, "accept_tokens", lambda **kw: None)
    r.fhir.reset()
    resp = r.hook()
    assert resp.status_code == 412
    assert "refused the access token" in resp.text
    assert r.auth.ok_requests == 2  # the first token, then one refresh: never a loop


@pytest.mark.parametrize("fault", ["down", "slow", "invalid_client"])
def test_token_endpoint_faults_are_412_within_the_budget(rig: Any, fault: str) -> None:
    r = rig()
    if fault == "down":
        r.auth.stop()
    elif fault == "slow":
        r.auth.delay = 30
    else:
        r.auth.mode = "invalid_client"
    started = time.perf_counter()
    resp = r.hook()
    elapsed = time.perf_counter() - started
    assert resp.status_code == 412, resp.text
    text = resp.json()["issue"][0]["diagnostics"]
    assert "prefetch" in resp.text or "vitals" in text
    if fault == "invalid_client":
        assert "invalid_client" in text
    if fault == "slow":
        assert f"did not answer within {BUDGET_S:g} s" in text
    assert elapsed < BUDGET_S + SLACK_S
    assert not [q for q in r.fhir.requests() if q["path"].startswith("/fhir/R4/Observation")]


def test_wrong_audience_is_refused_by_the_server(rig: Any) -> None:
    r = rig()
    r.auth.audience = "https://somewhere-else.example/token"  # the server knows itself by another URL
    resp = r.hook()
    assert resp.status_code == 412 and "invalid_client" in resp.text
    assert r.auth.requests[0]["detail"] == "InvalidAudienceError"


def test_scope_not_granted_names_the_keys_and_queries_nothing_for_them(rig: Any) -> None:
    r = rig()
    r.auth.grants = {"system/Patient.rs", "system/Condition.rs", "system/Procedure.rs"}
    resp = r.hook()
    assert resp.status_code == 412
    diag = resp.json()["issue"][0]["diagnostics"]
    assert "did not grant a scope for Observation" in diag
    assert "prefetch.vitals" in resp.json()["issue"][0]["expression"]
    assert not [q for q in r.fhir.requests() if q["path"].startswith("/fhir/R4/Observation")]


def test_v1_read_scopes_are_accepted(rig: Any) -> None:
    r = rig()
    original = r.auth.token

    def v1(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        status, body = original(form)
        if status == 200:
            body["scope"] = " ".join(s.replace(".rs", ".read") for s in body["scope"].split())
        return status, body

    r.auth.token = v1  # type: ignore[method-assign]
    resp = r.hook()
    assert resp.status_code == 200, resp.text


def test_token_url_discovered_from_smart_configuration(rig: Any) -> None:
    r = rig(backend={"token_url": None})
    origin = r.fhir.base_url.split("/fhir/", 1)[0]
    same_origin = f"{origin}/oauth2/token"
    r.auth.audience = same_origin  # the endpoint the assertion is addressed to
    r.fhir.smart(
        {"token_endpoint": same_origin, "grant_types_supported": ["client_credentials"]}, r.auth.token_url
    )
    resp = r.hook()
    assert resp.status_code == 200, resp.text
    assert r.auth.ok_requests == 1 and r.auth.requests[0]["claims"]["aud"] == same_origin


def test_discovered_token_endpoint_on_another_origin_is_not_used(rig: Any) -> None:
    r = rig(backend={"token_url": None})
    r.fhir.smart({"token_endpoint": r.auth.token_url})  # another port: another origin
    resp = r.hook()
    assert resp.status_code == 412
    assert "configure token_url" in resp.text
    assert r.auth.requests == []  # no assertion was sent there


def test_ehr_token_whose_scope_covers_the_queries_is_used_instead(rig: Any) -> None:
    r = rig()
    resp = r.hook(
        fhirAuthorization={
            "access_token": r.fhir.token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "cds",
        }
    )
    assert resp.status_code == 200, resp.text
    assert r.auth.requests == []


def test_ehr_token_not_covering_falls_back_to_the_backend_token(rig: Any) -> None:
    """The EHR's token covers only the Patient read: it is used for that one, ours for the rest."""
    r = rig()
    resp = r.hook(
        fhirAuthorization={
            "access_token": r.fhir.token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/Patient.rs",
            "subject": "cds",
        }
    )
    assert resp.status_code == 200, resp.text
    assert r.auth.ok_requests == 1
    queries = Discovery.load(REPO_ROOT / "hooks.json").services["deterioration"].prefetch
    assert len(r.fhir.requests()) == len(queries) and all(r.fhir_auth())


def test_jwks_endpoint_serves_the_public_key_only(rig: Any) -> None:
    r = rig()
    resp = httpx.get(f"{r.base}/.well-known/jwks.json")
    assert resp.status_code == 200
    keys = resp.json()["keys"]
    assert len(keys) == 1 and keys[0]["kty"] == "EC" and keys[0]["alg"] == "ES384" and keys[0]["kid"]
    assert "d" not in keys[0]
