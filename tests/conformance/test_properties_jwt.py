"""Properties of the JWT checks (cds/auth): any change to the header or claims of a valid token,
re-signed with the right key or not, is refused by the Authenticator with AuthError, and nothing
a caller sends makes it raise anything else."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm

from cds.auth import Authenticator, AuthError, mint_dev_token
from cds.auth.devkeys import DEV_ALGORITHM, DEV_ISSUER, key_id, load_or_create_dev_key
from cds.runtime.settings import Settings, load_settings

URL = "http://cds.test/cds-services/deterioration"
LEEWAY = 60


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Authenticator, Any, str]:
    settings = load_settings(dev=True, data_dir=tmp_path_factory.mktemp("jwtprops"))
    key = load_or_create_dev_key(settings)
    return settings, Authenticator(settings), key, key_id(key.public_key())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(header: dict[str, Any], claims: dict[str, Any], key: Any) -> str:
    """A JWS signed with `key` over exactly this header and these claims (PyJWT would vet them)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = ECAlgorithm(ECAlgorithm.SHA384).sign(signing_input.encode(), key)
    return f"{signing_input}.{b64(signature)}"


def authenticate(auth: Authenticator, token: str, url: str = URL) -> Any:
    return asyncio.run(auth.authenticate(f"Bearer {token}", url))


def valid_claims() -> dict[str, Any]:
    now = int(time.time())
    return {"iss": DEV_ISSUER, "sub": "s", "aud": URL, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}


json_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_value = st.recursive(
    json_scalar,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=6,
)


def _bad_claim(name: str, value: Any) -> bool:
    """Whether `value` for claim `name` must make the token invalid (vs. a harmless change)."""
    now = time.time()
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if name == "iss":
        return value != DEV_ISSUER
    if name == "aud":
        return value != URL and not (isinstance(value, list) and URL in value)
    if name == "exp":
        return not number or value <= now - LEEWAY + 5 or value - (now - 0) > 3600 - 5
    if name == "iat":
        return not number or value > now + LEEWAY + 5 or (now + 300) - value > 3600 + 5
    if name == "nbf":
        # PyJWT reads a boolean nbf as 0/1 (a time long past): permissive, not a way in; left alone.
        return (not number and not isinstance(value, bool)) or (number and value > now + LEEWAY + 5)
    if name == "jti":
        return not isinstance(value, str) or not value or len(value) > 256
    if name == "tenant":
        return value is not None and not isinstance(value, str)
    return False  # sub and unknown claims are not checked


claim_names = st.sampled_from(["iss", "aud", "exp", "iat", "nbf", "jti", "tenant", "sub"])
claim_values = json_value | st.integers(min_value=0, max_value=2**33) | st.just(URL) | st.just(DEV_ISSUER)


@given(name=claim_names, value=claim_values)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_changed_claims_resigned_with_the_right_key(env: Any, name: str, value: Any) -> None:
    _, auth, key, kid = env
    claims = valid_claims() | {name: value}
    token = sign({"alg": DEV_ALGORITHM, "kid": kid, "typ": "JWT"}, claims, key)
    if _bad_claim(name, value):
        with pytest.raises(AuthError):
            authenticate(auth, token)
    else:
        with contextlib.suppress(AuthError):  # stricter than required is fine
            authenticate(auth, token)


@given(name=st.sampled_from(["iss", "aud", "exp", "iat", "jti"]))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_missing_required_claim(env: Any, name: str) -> None:
    _, auth, key, kid = env
    claims = {k: v for k, v in valid_claims().items() if k != name}
    token = sign({"alg": DEV_ALGORITHM, "kid": kid, "typ": "JWT"}, claims, key)
    with pytest.raises(AuthError):
        authenticate(auth, token)


header_names = st.sampled_from(["alg", "kid", "typ", "jku", "crit", "x5u", "jwk", "cty", "zip"])


@given(
    name=header_names, value=json_value | st.sampled_from(["none", "HS256", "HS384", "RS384", "ES256", "JWT"])
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_changed_header_without_resigning(env: Any, name: str, value: Any) -> None:
    """The signature covers the header: any change invalidates the token (alg none, HS*, kid...)."""
    settings_, auth, _, _ = env
    token = mint_dev_token(settings_, URL)
    head, payload, sig = token.split(".")
    header = json.loads(unb64(head))
    if header.get(name) == value:
        return
    header[name] = value
    forged = ".".join([b64(json.dumps(header).encode()), payload, sig])
    with pytest.raises(AuthError):
        authenticate(auth, forged)


def unicode_ok(value: Any) -> bool:
    """False when the value holds a lone surrogate: such a header is no UTF-8 JSON (RFC 7515 §4,
    RFC 8259 §8.1), and the authenticator refuses it as malformed, whichever parameter holds it."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@given(
    name=st.sampled_from(["kid", "typ", "jku", "crit", "x5u"]),
    value=json_value | st.just("https://evil.example/jwks.json"),
)
@example(name="x5u", value="\ud800")  # a lone surrogate: no UTF-8 JSON, refused as malformed
@example(name="x5u", value="https://certs.example/x5u")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_changed_header_resigned_with_the_right_key(env: Any, name: str, value: Any) -> None:
    _, auth, key, kid = env
    header = {"alg": DEV_ALGORITHM, "kid": kid, "typ": "JWT"} | {name: value}
    harmless = unicode_ok(value) and (
        name == "x5u"  # not used for key lookup
        or (name in ("typ", "jku") and value is None)  # null is as good as absent
        or (name == "typ" and isinstance(value, str) and value.upper() == "JWT")
        or (name == "kid" and value == kid)
    )
    token = sign(header, valid_claims(), key)
    if harmless:
        authenticate(auth, token)
    else:
        with pytest.raises(AuthError):
            authenticate(auth, token)


@given(data=st.data())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_byte_change_is_refused_or_means_the_same(env: Any, data: st.DataObject) -> None:
    settings_, auth, _, _ = env
    token = mint_dev_token(settings_, URL)
    i = data.draw(st.integers(0, len(token) - 1))
    c = data.draw(st.characters(codec="ascii").filter(lambda ch: ch != token[i]))
    forged = token[:i] + c + token[i + 1 :]
    try:
        authenticate(auth, forged)
    except AuthError:
        return
    # Accepted: only possible when the change is invisible after base64url decoding (padding bits).
    assert [unb64(p) for p in forged.split(".")] == [unb64(p) for p in token.split(".")]


@given(
    authorization=st.none()
    | st.text(max_size=200)
    | st.builds(lambda t: "Bearer " + t, st.text(max_size=300))
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_authorization_headers(env: Any, authorization: str | None) -> None:
    _, auth, _, _ = env
    with pytest.raises(AuthError):
        asyncio.run(auth.authenticate(authorization, URL))


def test_valid_token_passes_once(env: Any) -> None:
    settings_, auth, _, _ = env
    token = mint_dev_token(settings_, URL)
    assert authenticate(auth, token).iss == DEV_ISSUER
    with pytest.raises(AuthError):
        authenticate(auth, token)  # replayed
    with pytest.raises(AuthError):
        authenticate(auth, mint_dev_token(settings_, URL), url=URL + "/feedback")  # aud is the exact URL
