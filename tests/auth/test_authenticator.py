"""The rejection matrix (ES384 and RS384, real keys, a real local JWKS endpoint) and the
accepted cases. Each rejected token must fail with the named check, before any key is fetched
where the check allows it."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from cds.auth import AuthError, Caller
from tests.auth.conftest import (
    FHIR,
    ISS,
    TENANT,
    claims,
    ehr_client,
    hs256_forgery,
    unsigned,
)

pytestmark = pytest.mark.anyio

ALGS = ["ES384", "RS384"]
URL = "https://cds.example.org/cds-services/deterioration"


async def refused(auth: Any, authorization: str | None, check: str, url: str = URL) -> None:
    with pytest.raises(AuthError) as exc:
        await auth.authenticate(authorization, url)
    assert exc.value.check == check


@pytest.mark.parametrize("alg", ALGS)
async def test_valid_token_fetches_key_over_http_once(alg, keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    key = keys[alg]
    token = key.sign(claims(URL), jku=jwks_server.url("jwks"))
    caller = await auth.authenticate(f"Bearer {token}", URL)
    assert isinstance(caller, Caller)
    assert (caller.iss, caller.sub, caller.tenant) == (ISS, "ehr-client", TENANT)
    assert caller.allows_fhir_server(FHIR)
    assert jwks_server.requests == ["/jwks.json"]
    # A second call is served from the cache.
    await auth.authenticate("Bearer " + key.sign(claims(URL), jku=jwks_server.url("jwks")), URL)
    assert jwks_server.requests == ["/jwks.json"]


@pytest.mark.parametrize("alg", ALGS)
async def test_valid_variants(alg, keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    key, jku = keys[alg], jwks_server.url("jwks")
    # aud as an array, scheme case-insensitive, no jku header (the configured set is used)
    await auth.authenticate("bearer " + key.sign(claims([URL]), jku=jku), URL)
    await auth.authenticate("Bearer " + key.sign(claims(URL)), URL)
    # expired and issued-in-the-future within the clock skew (60 s) are tolerated
    now = int(time.time())
    await auth.authenticate("Bearer " + key.sign(claims(URL, exp=now - 30, iat=now - 200)), URL)
    await auth.authenticate("Bearer " + key.sign(claims(URL, iat=now + 30)), URL)


async def test_no_header_and_non_bearer(jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    await refused(auth, None, "missing-token")
    await refused(auth, "", "missing-token")
    await refused(auth, "Basic dXNlcjpwYXNz", "malformed")
    await refused(auth, "Bearer", "malformed")
    assert jwks_server.requests == []


@pytest.mark.parametrize(
    "token",
    [
        "abc",
        "a.b.c",
        "a.b",
        "e30.e30.",  # {}.{}. : no alg
        "eyJhbGciOiJFUzM4NCIsImtpZCI6ImVoci1lczM4NCJ9.bm90IGpzb24.c2ln",  # payload not JSON
        "x" * 20000,
    ],
)
async def test_malformed(token, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    await refused(auth, f"Bearer {token}", "malformed")
    assert jwks_server.requests == []


@pytest.mark.parametrize("alg", ALGS)
async def test_bad_signature(alg, keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    # signed by the attacker's key under the legitimate kid
    forged = keys[f"attacker-{alg}"].sign(claims(URL), jku=jwks_server.url("jwks"))
    await refused(auth, f"Bearer {forged}", "bad-signature")
    # a genuine token whose payload was altered after signing
    head, _, sig = keys[alg].sign(claims(URL)).split(".")
    payload = unsigned(claims(URL, sub="someone-else"), {}).split(".")[1]
    await refused(auth, f"Bearer {head}.{payload}.{sig}", "bad-signature")


@pytest.mark.parametrize("alg", ALGS)
async def test_unknown_kid(alg, keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    token = keys[alg].sign(claims(URL), kid="no-such-key", jku=jwks_server.url("jwks"))
    await refused(auth, f"Bearer {token}", "unknown-kid")


@pytest.mark.parametrize("alg", ALGS)
async def test_jku_not_allow_listed_is_never_fetched(alg, keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    evil = jwks_server.url("evil")  # serves the attacker's public key: a valid signature there
    token = keys[f"attacker-{alg}"].sign(claims(URL), jku=evil)
    await refused(auth, f"Bearer {token}", "jku-not-allowed")
    assert jwks_server.requests == []
    assert auth.jwks.fetches == 0


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
async def test_alg_none(alg, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    token = unsigned(claims(URL), {"alg": alg, "typ": "JWT", "kid": "ehr-es384"}) + "."
    await refused(auth, f"Bearer {token}", "alg-not-allowed")
    assert jwks_server.requests == []


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("secret", ["pem", "jwk"])
async def test_hs256_with_public_key_as_secret(alg, secret, keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    key = keys[alg]
    raw = key.public_pem() if secret == "pem" else str(key.jwk()).encode()
    token = hs256_forgery(claims(URL), raw, key.kid)
    await refused(auth, f"Bearer {token}", "alg-not-allowed")
    assert jwks_server.requests == []  # refused before any key lookup


@pytest.mark.parametrize("alg", ALGS)
async def test_wrong_iss(alg, keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    token = keys[alg].sign(claims(URL, iss="https://evil.example.org"), jku=jwks_server.url("jwks"))
    await refused(auth, f"Bearer {token}", "iss-not-trusted")
    # the issuer must match exactly (no trailing slash tolerance)
    token = keys[alg].sign(claims(URL, iss=ISS + "/"))
    await refused(auth, f"Bearer {token}", "iss-not-trusted")
    assert jwks_server.requests == []


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize(
    "aud",
    [
        "https://cds.example.org/cds-services/care-gaps",
        URL + "/",
        "https://cds.example.org/cds-services",
        "http://cds.example.org/cds-services/deterioration",
        ["https://other.example.org/cds-services/deterioration"],
    ],
)
async def test_wrong_aud(alg, aud, keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    await refused(auth, "Bearer " + keys[alg].sign(claims(aud)), "aud-mismatch")


@pytest.mark.parametrize("alg", ALGS)
async def test_expired(alg, keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    now = int(time.time())
    token = keys[alg].sign(claims(URL, iat=now - 400, exp=now - 61 - 5))
    await refused(auth, f"Bearer {token}", "expired")


@pytest.mark.parametrize("alg", ALGS)
async def test_issued_in_the_future(alg, keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    now = int(time.time())
    token = keys[alg].sign(claims(URL, iat=now + 120, exp=now + 400))
    await refused(auth, f"Bearer {token}", "iat-in-future")


@pytest.mark.parametrize("alg", ALGS)
async def test_replayed_jti(alg, keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    token = keys[alg].sign(claims(URL))
    await auth.authenticate(f"Bearer {token}", URL)
    await refused(auth, f"Bearer {token}", "replayed-jti")
    # the same jti in a freshly signed token is a replay too
    same = claims(URL)
    await auth.authenticate("Bearer " + keys[alg].sign(same), URL)
    await refused(
        auth,
        "Bearer " + keys[alg].sign({**same, "iat": same["iat"] - 1, "exp": same["exp"] - 1}),
        "replayed-jti",
    )


@pytest.mark.parametrize("alg", ALGS)
async def test_wrong_or_missing_tenant(alg, keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    await refused(auth, "Bearer " + keys[alg].sign(claims(URL, tenant="other-tenant")), "tenant-not-allowed")
    await refused(auth, "Bearer " + keys[alg].sign(claims(URL, tenant=None)), "tenant-not-allowed")


@pytest.mark.parametrize("alg", ALGS)
async def test_tenant_not_configured_accepts_any(alg, keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server, tenant=None))
    caller = await auth.authenticate("Bearer " + keys[alg].sign(claims(URL, tenant="any")), URL)
    assert caller.tenant == "any"
    caller = await auth.authenticate("Bearer " + keys[alg].sign(claims(URL, tenant=None)), URL)
    assert caller.tenant is None


@pytest.mark.parametrize("claim", ["iss", "jti", "exp", "iat", "aud"])
@pytest.mark.parametrize("alg", ALGS)
async def test_required_claims(claim, alg, keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    body = claims(URL)
    del body[claim]
    await refused(auth, "Bearer " + keys[alg].sign(body), f"missing-{claim}")


@pytest.mark.parametrize("alg", ALGS)
async def test_missing_kid(alg, keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    token = keys[alg].sign(claims(URL), kid=None)
    await refused(auth, f"Bearer {token}", "missing-kid")


async def test_algorithm_must_be_configured(keys, jwks_server, make_auth):
    # ES256 is refused unless the client lists it
    auth = await make_auth(ehr_client(jwks_server))
    await refused(auth, "Bearer " + keys["ES256"].sign(claims(URL)), "alg-not-allowed")
    auth = await make_auth(ehr_client(jwks_server, algorithms=["ES256"]))
    await auth.authenticate("Bearer " + keys["ES256"].sign(claims(URL)), URL)
    await refused(auth, "Bearer " + keys["ES384"].sign(claims(URL)), "alg-not-allowed")


async def test_key_type_must_match_alg(keys, jwks_server, make_auth):
    """An RS384 header naming the EC key's kid is refused, not verified with the wrong key."""
    auth = await make_auth(ehr_client(jwks_server))
    token = keys["RS384"].sign(claims(URL), kid=keys["ES384"].kid)
    await refused(auth, f"Bearer {token}", "key-mismatch")


async def test_lifetime_too_long(keys, jwks_server, make_auth):
    """Issue 15, finding 3: 5 minutes by default (the sandbox's and common EHRs' tokens), stricter
    than the spec; a client configured for longer tokens gets them."""
    auth = await make_auth(ehr_client(jwks_server))
    now = int(time.time())
    await auth.authenticate("Bearer " + keys["ES384"].sign(claims(URL, iat=now, exp=now + 300)), URL)
    for lifetime in (301, 3600):
        token = keys["ES384"].sign(claims(URL, iat=now, exp=now + lifetime))
        await refused(auth, f"Bearer {token}", "lifetime-too-long")
    longer = await make_auth({**ehr_client(jwks_server), "max_token_lifetime_seconds": 3600})
    await longer.authenticate("Bearer " + keys["ES384"].sign(claims(URL, iat=now, exp=now + 3600)), URL)


async def test_times_must_be_numbers(keys, jwks_server, make_auth):
    """exp, iat and nbf are NumericDates (RFC 7519 4.1.4-4.1.6): a string is refused even when
    PyJWT would read it as a number."""
    auth = await make_auth(ehr_client(jwks_server))
    now = int(time.time())
    for name, value in (("nbf", "0"), ("nbf", str(now)), ("exp", str(now + 300)), ("iat", str(now))):
        token = keys["ES384"].sign(claims(URL, **{name: value}))
        await refused(auth, f"Bearer {token}", "malformed")
    await auth.authenticate("Bearer " + keys["ES384"].sign(claims(URL, nbf=now - 10)), URL)


async def test_wrong_typ_and_crit(keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    await refused(auth, "Bearer " + keys["ES384"].sign(claims(URL), typ="at+jwt"), "malformed")
    await refused(auth, "Bearer " + keys["ES384"].sign(claims(URL), crit=["exp"]), "malformed")


async def test_no_trusted_clients_refuses_everything(keys, tmp_path, make_auth):
    auth = await make_auth()
    assert "trusted_clients" in auth.startup_message()
    await refused(auth, "Bearer " + keys["ES384"].sign(claims(URL)), "no-trusted-clients")
    await refused(auth, None, "no-trusted-clients")


async def test_failures_are_logged_without_the_token(keys, jwks_server, make_auth, caplog):
    auth = await make_auth(ehr_client(jwks_server))
    token = keys["ES384"].sign(claims(URL, tenant="other-tenant", sub="patient-name-never"))
    with caplog.at_level(logging.WARNING, logger="cds.auth"):
        await refused(auth, f"Bearer {token}", "tenant-not-allowed")
    text = caplog.text
    assert "check=tenant-not-allowed" in text
    assert token not in text and token.split(".")[1] not in text and token.split(".")[2] not in text
    assert "patient-name-never" not in text and "other-tenant" not in text
