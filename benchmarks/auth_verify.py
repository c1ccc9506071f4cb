"""Added latency of JWT authentication per call: p50/p99 of `Authenticator.authenticate()` for
ES384 and RS384 tokens, keys fetched once from a local JWKS endpoint and then served from cache.

    python benchmarks/auth_verify.py [--n 3000]

Every token is distinct (fresh jti), so the replay cache is exercised as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cds.auth import Authenticator
from cds.runtime.settings import Settings

ISS = "https://ehr.example.org"
URL = "https://cds.example.org/cds-services/deterioration"


def make_keys() -> dict[str, tuple[object, dict]]:
    es = ec.generate_private_key(ec.SECP384R1())
    rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "ES384": (es, {**json.loads(ECAlgorithm.to_jwk(es.public_key())), "kid": "es", "alg": "ES384"}),
        "RS384": (rs, {**json.loads(RSAAlgorithm.to_jwk(rs.public_key())), "kid": "rs", "alg": "RS384"}),
    }


def mint(private: object, kid: str, alg: str, jku: str) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": URL, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, private, algorithm=alg, headers={"kid": kid, "typ": "JWT", "jku": jku})


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(n: int) -> None:
    keys = make_keys()
    app = web.Application()
    jwks = {"keys": [jwk for _, jwk in keys.values()]}
    app.router.add_get("/jwks.json", lambda _: web.json_response(jwks))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    jku = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/jwks.json"  # type: ignore[union-attr]

    with tempfile.TemporaryDirectory() as tmp:
        client = {"iss": ISS, "jku": [jku], "allow_local_fhir": True}  # its JWKS is on loopback
        auth = Authenticator(Settings(trusted_clients=[client], data_dir=Path(tmp)))
        await auth.start()
        print(
            f"authenticate() latency, {n} distinct tokens per algorithm, keys cached (first fetch excluded)"
        )
        for alg, (private, jwk) in keys.items():
            tokens = [f"Bearer {mint(private, jwk['kid'], alg, jku)}" for _ in range(n + 200)]
            for t in tokens[:200]:  # warm-up, includes the one JWKS fetch
                await auth.authenticate(t, URL)
            times = []
            for t in tokens[200:]:
                t0 = time.perf_counter()
                await auth.authenticate(t, URL)
                times.append((time.perf_counter() - t0) * 1e6)
            print(
                f"  {alg}: p50 {pct(times, 0.50):7.0f} us   p99 {pct(times, 0.99):7.0f} us   "
                f"mean {statistics.fmean(times):7.0f} us"
            )
        await auth.close()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    asyncio.run(run(parser.parse_args().n))


if __name__ == "__main__":
    main()
