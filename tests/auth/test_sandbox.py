"""The official CDS Hooks Sandbox: a token signed with its published key (exactly as the sandbox
builds it: ES384, its kid and jku, no tenant) is accepted when, and only when, its issuer is
configured. The public key ships in the package, so no network is needed."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt
import pytest
from jwt.algorithms import ECAlgorithm

from cds.auth import AuthError
from cds.auth.clients import SANDBOX_ISSUER, SANDBOX_JKU
from tests.auth.conftest import ehr_client

pytestmark = pytest.mark.anyio

URL = "http://127.0.0.1:8080/cds-services/medication-risk"
SANDBOX = {
    "iss": SANDBOX_ISSUER,
    "jku": [SANDBOX_JKU],
    "jwks_file": "builtin:cds-hooks-sandbox",
    "algorithms": ["ES384"],
}


def sandbox_token(aud: str) -> str:
    """A token as sandbox.cds-hooks.org signs it (src/retrieve-data-helpers/jwt-generator.js)."""
    path = Path(__file__).with_name("cds-hooks-sandbox-private-key.TEST-ONLY.json")
    jwk = json.loads(path.read_text())["key"]
    now = int(time.time())
    payload = {"iss": SANDBOX_ISSUER, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    header = {"alg": "ES384", "typ": "JWT", "kid": jwk["kid"], "jku": SANDBOX_JKU}
    return jwt.encode(payload, ECAlgorithm.from_jwk(jwk), algorithm="ES384", headers=header)


async def test_sandbox_token_accepted_when_configured(make_auth):
    auth = await make_auth(SANDBOX)
    caller = await auth.authenticate("Bearer " + sandbox_token(URL), URL)
    assert caller.iss == SANDBOX_ISSUER and caller.tenant is None
    assert auth.jwks.fetches == 0  # the packaged public key; nothing fetched


async def test_sandbox_token_refused_when_not_configured(make_auth, jwks_server):
    auth = await make_auth(ehr_client(jwks_server))
    with pytest.raises(AuthError) as exc:
        await auth.authenticate("Bearer " + sandbox_token(URL), URL)
    assert exc.value.check == "iss-not-trusted"
    assert jwks_server.requests == [] and auth.jwks.fetches == 0


async def test_sandbox_refused_without_its_jku_allow_listed(make_auth):
    auth = await make_auth({k: v for k, v in SANDBOX.items() if k != "jku"})
    with pytest.raises(AuthError) as exc:
        await auth.authenticate("Bearer " + sandbox_token(URL), URL)
    assert exc.value.check == "jku-not-allowed"


def test_packaged_sandbox_jwks_is_the_public_half_only():
    from cds.auth.clients import BUILTIN_JWKS

    data = json.loads(BUILTIN_JWKS["builtin:cds-hooks-sandbox"].read_text())
    assert [k["kid"] for k in data["keys"]] == ["44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"]
    assert all("d" not in k for k in data["keys"])


async def test_unknown_kid_with_only_a_key_file_fetches_nothing(make_auth, keys):
    auth = await make_auth({"iss": SANDBOX_ISSUER, "jwks_file": "builtin:cds-hooks-sandbox"})
    now = int(time.time())
    body = {"iss": SANDBOX_ISSUER, "aud": URL, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    token = keys["ES384"].sign(body)  # a kid the sandbox never published, no jku header
    with pytest.raises(AuthError) as exc:
        await auth.authenticate(f"Bearer {token}", URL)
    assert exc.value.check == "unknown-kid"
    assert auth.jwks.fetches == 0
