"""Load the running service with realistic patient-view and order-sign requests, side by side
with two baselines on the same requests:

- bare: a Starlette endpoint that only parses the JSON (benchmarks/bare_app.py);
- bare+JWT: the same endpoint behind the service's own JWT gate: ES384 verification with the same
  library, key and claims checks, and the same replay check on the same kind of store (SQLite file)
  (benchmarks/bare_auth_app.py): the least a secure CDS endpoint must do.

    python benchmarks/hooks_load.py [--seconds 10] [--rate 200] [--py-spy DIR]

Needs wrk (`apt-get install -y wrk`, with sudo unless root; or build it from
https://github.com/wg/wrk). Starts `cds serve --dev` and both baselines (uvicorn, one worker each)
on loopback, then per service, the three servers back to back on the same bodies:
  1. fixed rate (open loop, --rate requests/s): p50/p99/max latency, errors;
  2. saturation (wrk, 1 thread, 8 connections): requests/s, and the server's CPU time per request
     (user + system of its process tree over the wrk run, divided by the requests wrk completed):
     on a shared machine CPU ms/request is steadier than requests/s.
The service's row gives its throughput as a ratio of each baseline's. Prints the service's peak
RSS. Requests come from ../shared/data/synthea-r4 (largest charts). Every request carries its own
freshly signed JWT (the service and bare+JWT refuse replayed tokens; bare ignores it).
With --against TREE, the same service from another source tree runs beside it (row "against"):
before/after in one run. With --py-spy DIR (`pip install py-spy`), the service is sampled during its wrk runs; see
benchmarks/stacks_summary.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import aiohttp
import jwt
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.synthea_requests import hook_request, load_patients
from cds.auth.devkeys import DEV_ALGORITHM, DEV_ISSUER, key_id, load_or_create_dev_key
from cds.hooks.discovery import Discovery
from cds.runtime.settings import REPO_ROOT, load_settings

SERVICES = tuple(Discovery.load(REPO_ROOT / "hooks.json").services)  # every shipped service, in order
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready_post(url: str, timeout: float = 60) -> None:
    """Wait until a baseline answers at all (any HTTP status: bare+JWT answers 401 without a token)."""
    import urllib.error
    import urllib.request

    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=b"{}"), timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not become ready")


def wait_ready(url: str, timeout: float = 60) -> None:
    import urllib.request

    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not become ready")


class Tokens:
    def __init__(self, data_dir: Path) -> None:
        settings = load_settings(dev=True, data_dir=data_dir)
        self.key = load_or_create_dev_key(settings)
        self.kid = key_id(self.key.public_key())

    def mint(self, aud: str, n: int) -> list[str]:
        now = int(time.time())
        return [
            jwt.encode(
                {
                    "iss": DEV_ISSUER,
                    "sub": "bench",
                    "aud": aud,
                    "iat": now,
                    "exp": now + 300,  # the longest a client may sign by default (phases are shorter)
                    "jti": str(uuid.uuid4()),
                },
                self.key,
                algorithm=DEV_ALGORITHM,
                headers={"kid": self.kid},
            )
            for _ in range(n)
        ]


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                rss = self.proc.memory_info().rss + sum(
                    c.memory_info().rss for c in self.proc.children(recursive=True)
                )
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            time.sleep(0.2)


async def open_loop(url: str, bodies: list[bytes], tokens: list[str], rate: float, seconds: float) -> dict:
    """Open-loop load: requests start on schedule whether or not earlier ones finished.

    Returns the latencies (ms), the error count and the cards of the 200 answers.
    """
    latencies: list[float] = []
    cards: list[dict] = []
    errors = 0
    n = int(rate * seconds)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128)) as session:

        async def one(i: int) -> None:
            nonlocal errors
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {tokens[i]}"}
            t0 = time.perf_counter()
            async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as r:
                body = await r.read()
                latencies.append((time.perf_counter() - t0) * 1000)
                if r.status != 200:
                    errors += 1
                    return
            cards.extend(orjson.loads(body)["cards"])

        start = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return {"latencies": latencies, "errors": errors, "cards": cards}


async def fixed_rate(url: str, bodies: list[bytes], tokens: list[str], rate: float, seconds: float) -> dict:
    """p50/p99/max latency and errors of an open-loop run."""
    run = await open_loop(url, bodies, tokens, rate, seconds)
    latencies = sorted(run["latencies"])
    return {
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
        "max": latencies[-1],
        "errors": run["errors"],
        "n": len(latencies),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (uvicorn workers), in seconds."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def run_wrk(
    url: str,
    token_file: Path | None,
    body_files: list[Path],
    seconds: int,
    pid: int,
    profile: Path | None = None,
) -> dict:
    """Saturation run: requests/s, non-2xx count, p99, and the server's CPU ms per request.

    With `profile`, py-spy samples the server meanwhile and writes its stacks there (collapsed
    format; summarise with benchmarks/stacks_summary.py)."""
    spy = None
    if profile is not None:
        spy = subprocess.Popen(
            [
                shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy",
                "record",
                "-r",
                "250",
                "-d",
                str(seconds),
                "-f",
                "raw",
                "-o",
                str(profile),
                "-p",
                str(pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    args = ["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency", "-s", str(HERE / "wrk_tokens.lua"), url, "--"]
    args += [str(token_file) if token_file else "/dev/null", *map(str, body_files)]
    cpu0 = cpu_seconds(pid)
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - cpu0
    if spy is not None:
        spy.wait(30)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    n = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1, "s": 1000}
    return {
        "rps": rps,
        "cpu_ms": cpu * 1000 / max(n, 1),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "p99": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
    }


def serve(tree: Path, data_dir: Path, port: int, workers: int, env: dict[str, str]) -> subprocess.Popen:
    """`cds serve --dev` running the code of the source tree `tree`."""
    command = [
        sys.executable,
        "-m",
        "cds",
        "serve",
        "--dev",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    return subprocess.Popen(
        [*command, "--workers", str(workers)],
        cwd=tree,
        env=dict(env, PYTHONPATH=str(tree)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def uvicorn(app: str, port: int, workers: int, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--workers",
            str(workers),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--patients", type=int, default=8)
    ap.add_argument(
        "--workers", type=int, default=1, help="worker processes for the service and the bare app"
    )
    ap.add_argument("--services", nargs="+", choices=SERVICES, default=list(SERVICES))
    ap.add_argument(
        "--against",
        type=Path,
        metavar="TREE",
        help="also run the service from this source tree (row 'against'), e.g. a `git archive` of main",
    )
    ap.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="record the service with py-spy during each wrk run: DIR/<service>.txt (collapsed stacks)",
    )
    args = ap.parse_args()
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)

    discovery = Discovery.load(REPO_ROOT / "hooks.json")
    patients = load_patients(args.patients)
    tmp = Path(tempfile.mkdtemp(prefix="cds-bench-"))
    body_files: dict[str, list[Path]] = {}
    for sid in SERVICES:
        body_files[sid] = []
        for i, resources in enumerate(patients):
            p = tmp / f"{sid}-{i}.json"
            p.write_bytes(orjson.dumps(hook_request(discovery, sid, resources)))
            body_files[sid].append(p)
    sizes = {sid: statistics.mean(p.stat().st_size for p in fs) / 1024 for sid, fs in body_files.items()}

    port, bare_port, auth_port, against_port = free_port(), free_port(), free_port(), free_port()
    env = dict(os.environ, CDS_LOG_LEVEL="warning")
    server = serve(REPO_ROOT, tmp / "data", port, args.workers, env)
    procs = [server]
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz")
        wait_ready(f"http://127.0.0.1:{port}/readyz")
        # bare+JWT: its own data directory (its own SQLite replay file) holding the service's dev key,
        # so the same tokens verify on both.
        (tmp / "bare-auth").mkdir(mode=0o700)
        shutil.copy2(tmp / "data" / "dev-key.pem", tmp / "bare-auth" / "dev-key.pem")
        procs.append(uvicorn("benchmarks.bare_app:app", bare_port, args.workers, env))
        procs.append(
            uvicorn(
                "benchmarks.bare_auth_app:app",
                auth_port,
                args.workers,
                dict(env, CDS_DATA_DIR=str(tmp / "bare-auth")),
            )
        )
        if args.against:
            # The same service from another source tree (e.g. `git archive main`), same key again.
            (tmp / "data-against").mkdir(mode=0o700)
            shutil.copy2(tmp / "data" / "dev-key.pem", tmp / "data-against" / "dev-key.pem")
            procs.append(serve(args.against.resolve(), tmp / "data-against", against_port, args.workers, env))
            wait_ready(f"http://127.0.0.1:{against_port}/readyz")
        wait_ready_post(f"http://127.0.0.1:{bare_port}/cds-services/x")
        wait_ready_post(f"http://127.0.0.1:{auth_port}/cds-services/x")
        sampler = RssSampler(server.pid)
        sampler.start()
        tokens = Tokens(tmp / "data")
        print(
            f"cds hook load benchmark: {len(patients)} Synthea charts, {os.cpu_count()} cores, "
            f"fixed rate {args.rate:g}/s and wrk saturation, {args.seconds} s each, {args.workers} worker(s)"
        )
        print(
            f"{'service':<16}{'server':<10}{'KiB':>5}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'errors':>7}"
            f"{'rps':>8}{'CPU ms/req':>11}{'vs bare':>9}{'vs bare+JWT':>12}"
        )
        targets = [
            ("service", port, server.pid),
            ("bare", bare_port, procs[1].pid),
            ("bare+JWT", auth_port, procs[2].pid),
        ]
        if args.against:
            targets.insert(1, ("against", against_port, procs[3].pid))
        for sid in args.services:
            bodies = [p.read_bytes() for p in body_files[sid]]
            rows = {}
            for name, target_port, pid in targets:
                url = f"http://127.0.0.1:{target_port}/cds-services/{sid}"
                asyncio.run(fixed_rate(url, bodies, tokens.mint(url, 50), 50, 1))  # warm-up
                fr = asyncio.run(
                    fixed_rate(
                        url, bodies, tokens.mint(url, int(args.rate * args.seconds)), args.rate, args.seconds
                    )
                )
                token_file = tmp / f"tokens-{sid}-{name}.txt"
                token_file.write_text("\n".join(tokens.mint(url, 3000 * args.seconds)))
                profile = args.py_spy / f"{sid}.txt" if args.py_spy and name == "service" else None
                rows[name] = (fr, run_wrk(url, token_file, body_files[sid], args.seconds, pid, profile))
            for name, (fr, sat) in rows.items():
                ratios = ""
                if name in ("service", "against"):
                    ratios = (
                        f"{sat['rps'] / rows['bare'][1]['rps']:>9.0%}"
                        f"{sat['rps'] / rows['bare+JWT'][1]['rps']:>12.0%}"
                    )
                print(
                    f"{sid if name == 'service' else '':<16}{name:<10}{sizes[sid]:>5.0f}{fr['p50']:>8.2f}"
                    f"{fr['p99']:>8.2f}{fr['max']:>8.1f}{fr['errors'] + sat['non2xx']:>7}{sat['rps']:>8.0f}"
                    f"{sat['cpu_ms']:>11.2f}{ratios}"
                )
        sampler.running = False
        print(f"peak RSS of the service: {sampler.peak / 2**20:.0f} MiB")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
