"""Per-hook cost of the shared replay store (issue 15): `Authenticator.authenticate()` of fresh
ES384 tokens with replay protection in this process only (the baseline), through the SQLite seen-set
(WAL, synchronous=NORMAL) and through the PostgreSQL seen-set (synchronous_commit=off), side by
side in one run.

    python benchmarks/replay_store.py [--n 2000] [--rounds 5] [--postgres URL|auto|off] [--timeout 0.2]

Rounds alternate the three set-ups so drift on a shared machine hits them alike. Printed per set-up:
p50/p99 of the whole authentication and of the replay step alone (`remember()`), sequential; then
the replay step with 16 calls in flight (what a busy worker sees). PostgreSQL: `auto` (default)
starts a throwaway server with scripts/start-postgres.sh (fsync on), or give a URL. `--timeout` is
`replay_db_timeout_seconds`: on a loaded machine a longer one keeps stalls from turning into
in-process fallbacks (counted in the last column), so the figures are the store's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from cds.auth import Authenticator
from cds.auth.replay_store import SharedReplayCache
from cds.runtime.settings import REPO_ROOT, Settings

ISS = "https://ehr.example.org"
URL = "https://cds.example.org/cds-services/deterioration"
CONCURRENCY = 16


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def mint(key: Any, n: int) -> list[str]:
    now = int(time.time())
    return [
        jwt.encode(
            {"iss": ISS, "aud": URL, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())},
            key,
            algorithm="ES384",
            headers={"kid": "k", "typ": "JWT"},
        )
        for _ in range(n)
    ]


async def make(name: str, settings: Settings) -> Authenticator:
    replay = None if name == "in-process" else SharedReplayCache(settings)
    auth = Authenticator(settings, replay=replay)
    await auth.start()
    return auth


async def run(n: int, rounds: int, pg_url: str | None, workdir: Path, timeout: float) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    jwks = workdir / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**json.loads(ECAlgorithm.to_jwk(key.public_key())), "kid": "k"}]}))
    client = {"iss": ISS, "jwks_file": str(jwks), "algorithms": ["ES384"]}
    urls = {"in-process": None, "sqlite": f"sqlite:///{workdir / 'cds.sqlite3'}"}
    if pg_url:
        urls["postgresql"] = pg_url
    auths = {
        name: await make(
            name,
            Settings(
                trusted_clients=[client],
                data_dir=workdir,
                database_url=url,
                replay_db_timeout_seconds=timeout,
            ),
        )
        for name, url in urls.items()
    }
    whole: dict[str, list[float]] = {k: [] for k in auths}
    step: dict[str, list[float]] = {k: [] for k in auths}
    burst: dict[str, list[float]] = {k: [] for k in auths}
    per_round = max(1, n // rounds)
    for _ in range(rounds):
        for name, auth in auths.items():
            for token in mint(key, per_round):
                t0 = time.perf_counter()
                await auth.authenticate(f"Bearer {token}", URL)
                whole[name].append(time.perf_counter() - t0)
            exp = time.time() + 360
            for _ in range(per_round):
                t0 = time.perf_counter()
                assert await auth.replay.remember(ISS, uuid.uuid4().hex, exp)
                step[name].append(time.perf_counter() - t0)

            async def one(auth: Authenticator = auth, exp: float = exp) -> float:
                t0 = time.perf_counter()
                assert await auth.replay.remember(ISS, uuid.uuid4().hex, exp)
                return time.perf_counter() - t0

            for _ in range(max(1, per_round // CONCURRENCY)):
                burst[name] += await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
    fallbacks = {name: getattr(auth.replay, "fallbacks", 0) for name, auth in auths.items()}
    for auth in auths.values():
        await auth.close()

    base = pct(whole["in-process"], 0.5)
    print(f"fresh ES384 tokens, {rounds} rounds x {per_round} per set-up; times in ms")
    print(f"{'set-up':<12} {'auth p50':>9} {'auth p99':>9} {'+p50 vs base':>13} {'replay p50':>11} "
          f"{'replay p99':>11} {f'x{CONCURRENCY} p50':>9} {f'x{CONCURRENCY} p99':>9} {'fallbacks':>9}")  # fmt: skip
    for name in auths:
        w, s, b = whole[name], step[name], burst[name]
        print(
            f"{name:<12} {pct(w, 0.5) * 1e3:9.3f} {pct(w, 0.99) * 1e3:9.3f} "
            f"{(pct(w, 0.5) - base) * 1e3:+13.3f} {pct(s, 0.5) * 1e3:11.3f} {pct(s, 0.99) * 1e3:11.3f} "
            f"{pct(b, 0.5) * 1e3:9.3f} {pct(b, 0.99) * 1e3:9.3f} {fallbacks[name]:9d}"
        )
    print(
        "fallbacks: tokens checked in-process only (the database took > replay_db_timeout_seconds); should be 0"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="tokens per set-up")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--postgres", default=os.environ.get("CDS_TEST_POSTGRES_URL", "auto"))
    ap.add_argument("--timeout", type=float, default=0.2, help="replay_db_timeout_seconds")
    args = ap.parse_args()
    start_pg = REPO_ROOT / "scripts" / "start-postgres.sh"
    with tempfile.TemporaryDirectory(prefix="cds-replay-bench.") as tmp:
        pgdir = Path(tempfile.mkdtemp(prefix="cds-pg-"))  # not under tmp: the postgres user must reach it
        url: str | None = None if args.postgres == "off" else args.postgres
        if url == "auto":
            subprocess.run([str(start_pg), str(pgdir)], capture_output=True, check=True, timeout=120)
            url = (pgdir / "url").read_text().strip()
        try:
            asyncio.run(run(args.n, args.rounds, url, Path(tmp), args.timeout))
        finally:
            subprocess.run([str(start_pg), "--stop", str(pgdir)], capture_output=True, timeout=60)


if __name__ == "__main__":
    main()
