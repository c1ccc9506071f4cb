"""Soak test: a steady mixed load on `cds serve --dev` for a long time, watching errors and memory.

    python benchmarks/soak.py --minutes 10 [--rate 30] [--patients 8] [--feedback 0.3]

Starts the service (uvicorn, one worker, SQLite feedback store in a temporary data directory) and
holds an open-loop load of --rate hook calls per second, mixed across patient-view (deterioration,
care-gaps) and order-sign (medication-risk) with the prefetch an EHR would send for the largest
Synthea charts (../shared/data/synthea-r4), each call with its own signed JWT. A --feedback share
of the returned cards gets a feedback POST (accepted with its suggestion when it has one, else
overridden, with an override reason when the card offers them). After a --warmup, it reports
throughput, p50/p99/max latency, errors (any non-200 or transport error) and the service's RSS at
the start and end of the measured period, with a progress line every --every seconds.
Exit status 1 when there were errors or RSS grew more than --max-growth.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.hooks_load import free_port, wait_ready
from benchmarks.synthea_requests import hook_request, load_patients
from cds.auth import mint_dev_token
from cds.hooks.discovery import Discovery
from cds.runtime.settings import REPO_ROOT, load_settings

# Share of hook calls per hook (patient-view fires far more often than order-sign), split evenly
# between the services of the discovery document on that hook.
HOOK_SHARE = {"patient-view": 0.75, "order-sign": 0.25}


def service_mix(discovery: Discovery) -> dict[str, float]:
    """Each service's share of the hook calls, from the discovery document."""
    by_hook: dict[str, list[str]] = {}
    for sid, entry in discovery.services.items():
        by_hook.setdefault(entry.hook, []).append(sid)
    total = sum(HOOK_SHARE.get(hook, 0.25) for hook in by_hook)
    return {
        sid: HOOK_SHARE.get(hook, 0.25) / total / len(ids) for hook, ids in by_hook.items() for sid in ids
    }


MIX = service_mix(Discovery.load(REPO_ROOT / "hooks.json"))


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)  # ms
    errors: Counter[str] = field(default_factory=Counter)

    def summary(self, seconds: float) -> str:
        if not self.latencies:
            return "no requests"
        lat = sorted(self.latencies)
        p99 = lat[max(0, int(len(lat) * 0.99) - 1)]
        return (
            f"{len(lat):>7} req {len(lat) / seconds:>7.1f}/s  p50 {statistics.median(lat):>7.1f} ms  "
            f"p99 {p99:>7.1f} ms  max {lat[-1]:>7.1f} ms  errors {sum(self.errors.values())}"
        )


def rss_of(proc: psutil.Process) -> int:
    return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))


def feedback_for(card: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    entry: dict[str, Any] = {"card": card["uuid"], "outcomeTimestamp": now}
    if card.get("suggestions") and random.random() < 0.5:
        entry |= {"outcome": "accepted", "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}
    else:
        entry["outcome"] = "overridden"
        if card.get("overrideReasons"):
            entry["overrideReason"] = {"reason": random.choice(card["overrideReasons"])}
    return {"feedback": [entry]}


class Load:
    def __init__(
        self, base: str, settings: Any, bodies: dict[str, list[dict[str, Any]]], feedback: float
    ) -> None:
        self.base = base
        self.settings = settings
        self.bodies = bodies
        self.feedback_share = feedback
        self.hooks = Stats()
        self.feedback = Stats()
        self.cards = 0
        self.in_flight = 0
        self.session: aiohttp.ClientSession | None = None

    def reset(self) -> None:
        self.hooks, self.feedback, self.cards = Stats(), Stats(), 0

    async def post(self, path: str, body: bytes, stats: Stats) -> Any:
        assert self.session is not None
        url = self.base + path
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {mint_dev_token(self.settings, url)}",
        }
        t0 = time.perf_counter()
        try:
            async with self.session.post(url, data=body, headers=headers) as r:
                raw = await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as e:
            stats.errors[type(e).__name__] += 1
            return None
        stats.latencies.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            stats.errors[f"HTTP {status} {path}"] += 1
            if sum(stats.errors.values()) <= 5:
                print(f"  error: HTTP {status} on {path}: {raw[:300]!r}", flush=True)
            return None
        return orjson.loads(raw)

    async def one(self, sid: str) -> None:
        self.in_flight += 1
        try:
            body = dict(random.choice(self.bodies[sid]), hookInstance=str(uuid.uuid4()))
            answer = await self.post(f"/cds-services/{sid}", orjson.dumps(body), self.hooks)
            if not answer:
                return
            self.cards += len(answer["cards"])
            for card in answer["cards"]:
                if random.random() < self.feedback_share:
                    fb = orjson.dumps(feedback_for(card))
                    await self.post(f"/cds-services/{sid}/feedback", fb, self.feedback)
        finally:
            self.in_flight -= 1

    async def run(self, rate: float, seconds: float, on_tick: Any = None, every: float = 60) -> None:
        """Open loop: calls start on schedule whatever the earlier ones are doing."""
        services, weights = list(MIX), list(MIX.values())
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        next_tick = start + every
        i = 0
        while True:
            now = time.perf_counter()
            if now - start >= seconds:
                break
            if on_tick and now >= next_tick:
                on_tick(now - start)
                next_tick += every
            due = start + i / rate
            if due > now:
                await asyncio.sleep(due - now)
                continue
            t = asyncio.create_task(self.one(random.choices(services, weights)[0]))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            await asyncio.gather(*tasks)


async def soak(args: argparse.Namespace, base: str, settings: Any, bodies: dict, proc: psutil.Process) -> int:
    load = Load(base, settings, bodies, args.feedback)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256), timeout=timeout) as session:
        load.session = session
        print(f"warm-up {args.warmup:g} s ...", flush=True)
        await load.run(args.rate, args.warmup)
        warm_errors = sum(load.hooks.errors.values()) + sum(load.feedback.errors.values())
        load.reset()
        rss_start = rss_of(proc)
        print(
            f"measuring {args.minutes:g} min at {args.rate:g} hook calls/s; RSS at start {rss_start / 2**20:.1f} MiB"
        )
        started = time.perf_counter()

        def tick(elapsed: float) -> None:
            print(
                f"  {elapsed / 60:5.1f} min  hooks: {load.hooks.summary(elapsed)}  "
                f"RSS {rss_of(proc) / 2**20:.1f} MiB  in flight {load.in_flight}",
                flush=True,
            )

        await load.run(args.rate, args.minutes * 60, tick, args.every)
        seconds = time.perf_counter() - started
        rss_end = rss_of(proc)
    growth = (rss_end - rss_start) / rss_start
    errors = sum(load.hooks.errors.values()) + sum(load.feedback.errors.values())
    print()
    print(f"soak: {args.minutes:g} min, mix {MIX}, {len(next(iter(bodies.values())))} Synthea charts")
    print(f"hooks     {load.hooks.summary(seconds)}")
    print(f"feedback  {load.feedback.summary(seconds)}")
    print(f"cards returned {load.cards}")
    print(f"errors {errors} {dict(load.hooks.errors + load.feedback.errors)} (warm-up errors: {warm_errors})")
    print(f"RSS start {rss_start / 2**20:.1f} MiB, end {rss_end / 2**20:.1f} MiB, growth {growth:+.1%}")
    ok = errors == 0 and growth <= args.max_growth
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rate", type=float, default=30, help="hook calls per second (default 30)")
    ap.add_argument("--patients", type=int, default=8, help="largest Synthea charts to use (default 8)")
    ap.add_argument(
        "--feedback", type=float, default=0.3, help="share of cards that get feedback (default 0.3)"
    )
    ap.add_argument("--warmup", type=float, default=30, help="seconds of load before measuring (default 30)")
    ap.add_argument("--every", type=float, default=60, help="progress line interval in seconds (default 60)")
    ap.add_argument(
        "--max-growth", type=float, default=0.10, help="RSS growth that fails the run (default 0.10)"
    )
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    random.seed(args.seed)

    discovery = Discovery.load(REPO_ROOT / "hooks.json")
    patients = load_patients(args.patients)
    bodies = {sid: [hook_request(discovery, sid, r) for r in patients] for sid in MIX}
    data_dir = Path(tempfile.mkdtemp(prefix="cds-soak-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, CDS_LOG_LEVEL="warning")
    log = open(data_dir / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(
        [sys.executable, "-m", "cds", "serve", "--dev", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(f"{base}/healthz")
        wait_ready(f"{base}/readyz")
        proc = psutil.Process(server.pid)
        print(
            f"cds serve --dev pid {server.pid} on {base}; data and log in {data_dir}; {os.cpu_count()} cores"
        )
        print(f"RSS after start-up {rss_of(proc) / 2**20:.1f} MiB")
        settings = load_settings(dev=True, data_dir=data_dir)
        return asyncio.run(soak(args, base, settings, bodies, proc))
    finally:
        server.terminate()
        server.wait(30)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
