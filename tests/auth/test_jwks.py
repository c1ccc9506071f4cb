"""Key fetching that cannot stall hooks: cache lifetime, unknown-kid refetch (rate-limited),
serving from cache while the issuer is down, fail-fast when nothing is cached, timeouts."""

from __future__ import annotations

import asyncio
import time

import pytest

from cds.auth import AuthError
from cds.auth.jwks import JwksCache, parse_jwks
from tests.auth.conftest import _key, claims, ehr_client

pytestmark = pytest.mark.anyio

URL = "https://cds.example.org/cds-services/care-gaps"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(clock: Clock, *, cache_seconds: float = 3600, timeout: float = 2.0) -> JwksCache:
    return JwksCache(timeout_seconds=timeout, cache_seconds=cache_seconds, clock=clock)


async def ok(auth, key, **kw) -> None:
    await auth.authenticate("Bearer " + key.sign(claims(URL), **kw), URL)


async def test_cached_for_its_lifetime_then_refreshed_in_background(keys, jwks_server, make_auth):
    clock = Clock()
    auth = await make_auth(ehr_client(jwks_server), jwks=cache(clock, cache_seconds=600))
    await ok(auth, keys["ES384"])
    clock.now += 599
    await ok(auth, keys["ES384"])
    assert jwks_server.requests == ["/jwks.json"]
    clock.now += 2  # stale: served at once, refreshed behind the call
    await ok(auth, keys["ES384"])
    await asyncio.sleep(0.2)
    assert jwks_server.requests == ["/jwks.json", "/jwks.json"]


async def test_endpoint_down_serves_from_cache(keys, jwks_server, make_auth):
    clock = Clock()
    auth = await make_auth(ehr_client(jwks_server), jwks=cache(clock, cache_seconds=60))
    await ok(auth, keys["RS384"])
    jwks_server.status = 503
    clock.now += 120  # past the cache lifetime
    await ok(auth, keys["RS384"])
    await asyncio.sleep(0.2)
    assert len(jwks_server.requests) == 2  # the refresh was tried, and failed
    await jwks_server.stop()  # now unreachable altogether
    clock.now += 3600
    await ok(auth, keys["RS384"])
    await ok(auth, keys["ES384"])


async def test_cache_too_old_is_dropped_when_issuer_stays_down(keys, jwks_server, make_auth):
    clock = Clock()
    jwks = JwksCache(timeout_seconds=2, cache_seconds=60, stale_grace_seconds=600, clock=clock)
    auth = await make_auth(ehr_client(jwks_server), jwks=jwks)
    await ok(auth, keys["ES384"])
    jwks_server.status = 503
    clock.now += 60 + 601
    with pytest.raises(AuthError) as exc:
        await ok(auth, keys["ES384"])
    assert exc.value.check == "jwks-unavailable"


async def test_unknown_kid_refetch_is_rate_limited(keys, jwks_server, make_auth):
    clock = Clock()
    auth = await make_auth(ehr_client(jwks_server), jwks=cache(clock))
    await ok(auth, keys["ES384"])
    assert len(jwks_server.requests) == 1
    rotated = _key("ES384", "rotated-key")
    with pytest.raises(AuthError):  # the set was fetched < 30 s ago: no refetch yet
        await ok(auth, rotated)
    assert len(jwks_server.requests) == 1
    clock.now += 30
    for _ in range(5):  # the first unknown kid refetches once; the rest within 30 s do not
        with pytest.raises(AuthError) as exc:
            await ok(auth, rotated)
        assert exc.value.check == "unknown-kid"
        clock.now += 1
    assert len(jwks_server.requests) == 2
    # the issuer publishes the rotated key; after the rate-limit window it is found
    jwks_server.sets["jwks"]["keys"].append(rotated.jwk())
    clock.now += 30
    await ok(auth, rotated)
    assert len(jwks_server.requests) == 3


async def test_concurrent_calls_fetch_once(keys, jwks_server, make_auth):
    auth = await make_auth(ehr_client(jwks_server))
    jwks_server.delay = 0.1
    await asyncio.gather(*(ok(auth, keys["ES384"]) for _ in range(20)))
    assert jwks_server.requests == ["/jwks.json"]


async def test_unreachable_issuer_fails_fast(keys, jwks_server, make_auth):
    clock = Clock()
    auth = await make_auth(ehr_client(jwks_server), jwks=cache(clock, timeout=0.3))
    jwks_server.delay = 5.0  # far slower than the timeout
    t0 = time.perf_counter()
    with pytest.raises(AuthError) as exc:
        await ok(auth, keys["ES384"])
    assert exc.value.check == "jwks-unavailable"
    assert time.perf_counter() - t0 < 4  # the 0.3 s timeout cut in (slack for a loaded CI runner)
    # within the rate-limit window no new attempt is made: the next call fails without a request
    with pytest.raises(AuthError):
        await ok(auth, keys["ES384"])
    assert len(jwks_server.requests) == 1


async def test_jwks_url_is_used_whatever_the_token_says(keys, jwks_server, make_auth):
    entry = ehr_client(jwks_server, jku=None, jwks_url=jwks_server.url("jwks"))
    auth = await make_auth(entry)
    await ok(auth, keys["ES384"])
    with pytest.raises(AuthError) as exc:  # a jku header is still checked against the (empty) list
        await ok(auth, keys["ES384"], jku=jwks_server.url("jwks"))
    assert exc.value.check == "jku-not-allowed"
    assert jwks_server.requests == ["/jwks.json"]


async def test_redirects_are_not_followed(keys, jwks_server, make_auth):
    """An allow-listed URL that redirects elsewhere does not lead the service to fetch there."""
    jwks_server.redirects["moved"] = jwks_server.url("evil")
    auth = await make_auth(ehr_client(jwks_server, jku=[jwks_server.url("moved")]))
    with pytest.raises(AuthError) as exc:
        await ok(auth, keys["attacker-ES384"], jku=jwks_server.url("moved"))
    assert exc.value.check == "jwks-unavailable"
    assert jwks_server.requests == ["/moved.json"]


def big_set(keys, size: int) -> dict:
    """A valid JWK Set of at least `size` bytes: many RSA keys, the signing key last."""
    filler = [{**keys["RS384"].jwk(), "kid": f"retired-{i:04d}"} for i in range(size // 400)]
    return {"keys": [*filler, keys["ES384"].jwk()]}


@pytest.mark.parametrize("trickle", [False, True], ids=["one-write", "chunked"])
async def test_large_jwk_set_is_read_whole(keys, jwks_server, make_auth, trickle):
    """Finding 7: a valid 120 KB set (the signing key at its end) is read to the end and used."""
    import json

    jwks_server.sets["big"] = big_set(keys, 120 * 1024)
    assert len(json.dumps(jwks_server.sets["big"])) > 120 * 1024
    if trickle:
        jwks_server.trickle.add("big")
    auth = await make_auth(ehr_client(jwks_server, jku=[jwks_server.url("big")]))
    await ok(auth, keys["ES384"], jku=jwks_server.url("big"))
    assert jwks_server.requests == ["/big.json"]


async def test_jwk_set_over_the_cap_is_refused_not_cut(keys, jwks_server, make_auth):
    """A set larger than jwks_max_bytes is refused whole (never parsed from a truncated prefix)."""
    jwks_server.sets["big"] = big_set(keys, 120 * 1024)
    jwks_server.trickle.add("big")
    auth = await make_auth(ehr_client(jwks_server, jku=[jwks_server.url("big")]), jwks_max_bytes=64 * 1024)
    with pytest.raises(AuthError) as exc:
        await ok(auth, keys["ES384"], jku=jwks_server.url("big"))
    assert exc.value.check == "jwks-unavailable"


def test_parse_jwks_skips_keys_never_used_for_signatures(keys):
    hmac_key = {"kty": "oct", "k": "c2VjcmV0", "kid": "h"}
    enc_key = {**keys["ES384"].jwk(), "use": "enc", "kid": "e"}
    no_kid = {k: v for k, v in keys["RS384"].jwk().items() if k != "kid"}
    weak = _weak_rsa_jwk()
    parsed = parse_jwks({"keys": [hmac_key, enc_key, no_kid, weak, keys["ES384"].jwk(), "junk"]})
    assert list(parsed) == [keys["ES384"].kid]
    with pytest.raises(ValueError):
        parse_jwks({"nokeys": []})


def _weak_rsa_jwk() -> dict:
    import json

    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return {**json.loads(RSAAlgorithm.to_jwk(private.public_key())), "kid": "weak"}
