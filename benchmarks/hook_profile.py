"""CPU profile of the whole hook path, in-process: the ASGI app of `cds serve --dev` (every
middleware, the JWT gate with its SQLite replay store, the handler, the feedback store) called
directly, without a socket or an HTTP parser, on the largest Synthea charts.

    python benchmarks/hook_profile.py [--n 400] [--top 25] [--service medication-risk]

Prints per service the CPU time per call (time.process_time of this process, every thread
included, measured without the profiler), then cProfile's top functions by own time and by
cumulative time. CPU time, not wall-clock: the machine this runs on is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.hooks_load import SERVICES, Tokens
from benchmarks.synthea_requests import hook_request, load_patients
from cds.hooks.discovery import Discovery
from cds.runtime.settings import REPO_ROOT, load_settings
from cds.web.app import create_app

HOST = "127.0.0.1:8000"


async def call(app: Any, sid: str, body: bytes, token: str) -> int:
    """One POST /cds-services/{sid} through the ASGI app; the response status."""
    path = f"/cds-services/{sid}"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", HOST.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {token}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent = False
    status = 0

    async def receive() -> dict:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def run(args: argparse.Namespace) -> None:
    discovery = Discovery.load(REPO_ROOT / "hooks.json")
    patients = load_patients(8)
    settings = load_settings(dev=True, data_dir=Path(tempfile.mkdtemp(prefix="cds-profile-")))
    tokens = Tokens(settings.data_dir)
    app = create_app(settings)
    services = [args.service] if args.service else list(SERVICES)
    async with app.router.lifespan_context(app):
        for sid in services:
            url = f"http://{HOST}/cds-services/{sid}"
            bodies = [orjson.dumps(hook_request(discovery, sid, p)) for p in patients]
            toks = iter(tokens.mint(url, 3 * args.n + 20))
            for i in range(20):  # warm-up
                assert await call(app, sid, bodies[i % len(bodies)], next(toks)) == 200
            t0 = time.process_time()
            for i in range(args.n):
                await call(app, sid, bodies[i % len(bodies)], next(toks))
            cpu_ms = (time.process_time() - t0) * 1000 / args.n
            profile = cProfile.Profile()
            profile.enable()
            for i in range(args.n):
                await call(app, sid, bodies[i % len(bodies)], next(toks))
            profile.disable()
            print(f"=== {sid}: {cpu_ms:.2f} CPU ms per hook call (without profiler), n={args.n}")
            for order in ("tottime", "cumulative"):
                out = io.StringIO()
                stats = pstats.Stats(profile, stream=out)
                stats.sort_stats(order).print_stats(args.top)
                text = out.getvalue()
                print(text[text.index("   ncalls") :].rstrip() + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--service", choices=SERVICES)
    args = ap.parse_args()
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
