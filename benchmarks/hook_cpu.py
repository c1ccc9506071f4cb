"""CPU time per hook call of the whole ASGI app, in-process, beside both baselines, optionally
against another source tree: steadier than requests/s on a shared machine.

    python benchmarks/hook_cpu.py [--n 300] [--rounds 5] [--against TREE]

Each round runs in a fresh process: for each service, N calls (fresh JWT each, the 8 largest
Synthea charts in turn) through the service's app (`cds serve --dev`: every middleware, the JWT
gate and its SQLite replay store, the feedback store), through the bare app and through the
bare+JWT app (benchmarks/bare_app.py, bare_auth_app.py), measuring time.process_time (all
threads). With --against TREE (e.g. `git archive main | tar -x -C /tmp/main`), rounds alternate
between that tree's code and this one's. The table gives the minimum over rounds (the least
disturbed run) and the throughput ratios that CPU time implies (bare CPU / service CPU). No socket
and no HTTP parser: those cost the same for every app and are left out here (hooks_load.py
measures them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVICES = ("deterioration", "care-gaps", "medication-risk")


async def one_round(n: int, services: list[str]) -> dict[str, dict[str, float]]:
    """CPU ms per call per service and app, in this process (whose `cds` is the tree under test)."""
    import orjson

    from benchmarks.bare_app import app as bare
    from benchmarks.bare_auth_app import create_app as bare_auth
    from benchmarks.hook_profile import HOST, call
    from benchmarks.hooks_load import Tokens
    from benchmarks.synthea_requests import hook_request, load_patients
    from cds.hooks.discovery import Discovery
    from cds.runtime.settings import REPO_ROOT, load_settings
    from cds.web.app import create_app

    discovery = Discovery.load(REPO_ROOT / "hooks.json")
    patients = load_patients(8)
    settings = load_settings(dev=True, data_dir=Path(tempfile.mkdtemp(prefix="cds-cpu-")))
    tokens = Tokens(settings.data_dir)
    auth_dir = Path(tempfile.mkdtemp(prefix="cds-cpu-auth-"))
    shutil.copy2(settings.data_dir / "dev-key.pem", auth_dir / "dev-key.pem")
    apps = {"service": create_app(settings), "bare": bare, "bare+JWT": bare_auth(auth_dir)}
    out: dict[str, dict[str, float]] = {}
    for app in apps.values():
        app.state.lifespan = app.router.lifespan_context(app)
        await app.state.lifespan.__aenter__()
    try:
        for sid in services:
            url = f"http://{HOST}/cds-services/{sid}"
            bodies = [orjson.dumps(hook_request(discovery, sid, p)) for p in patients]
            for name, app in apps.items():
                toks = tokens.mint(url, n + 16)
                for i in range(16):  # warm-up
                    status = await call(app, sid, bodies[i % len(bodies)], toks[n + i])
                    assert status == 200, (name, sid, status)
                t0 = time.process_time()
                for i in range(n):
                    await call(app, sid, bodies[i % len(bodies)], toks[i])
                out.setdefault(sid, {})[name] = (time.process_time() - t0) * 1000 / n
    finally:
        for app in apps.values():
            await app.state.lifespan.__aexit__(None, None, None)
    return out


def run_round(tree: Path, n: int, services: list[str]) -> dict[str, dict[str, float]]:
    """One round in a fresh process importing `cds` from `tree` (benchmarks from this checkout)."""
    # `cds` is imported from the tree first; its submodules then come from there whatever the
    # benchmarks put on sys.path.
    code = (
        f"import sys, asyncio, json; sys.path.insert(0, {str(tree)!r}); import cds; "
        f"sys.path.insert(0, {str(HERE.parent)!r}); from benchmarks.hook_cpu import one_round; "
        f"assert cds.__file__.startswith({str(tree)!r}), cds.__file__; "
        f"print(json.dumps(asyncio.run(one_round({n}, {services!r}))))"
    )
    env = dict(os.environ, CDS_LOG_LEVEL="error")
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"round failed in {tree}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--services", nargs="+", choices=SERVICES, default=list(SERVICES))
    ap.add_argument("--against", type=Path, metavar="TREE", help="another source tree to compare with")
    args = ap.parse_args()
    trees = {"this tree": HERE.parent}
    if args.against:
        trees = {"against": args.against.resolve(), **trees}
    best: dict[str, dict[str, dict[str, float]]] = {}
    for r in range(args.rounds):
        for label, tree in trees.items():
            for sid, apps in run_round(tree, args.n, args.services).items():
                for app, ms in apps.items():
                    slot = best.setdefault(label, {}).setdefault(sid, {})
                    slot[app] = min(ms, slot.get(app, float("inf")))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"CPU ms per hook call, in-process, min of {args.rounds} rounds of {args.n} calls")
    print(
        f"{'service':<17}{'code':<11}{'service':>9}{'bare':>8}{'bare+JWT':>10}"
        f"{'vs bare':>9}{'vs bare+JWT':>13}"
    )
    for sid in args.services:
        for label in trees:
            m = best[label][sid]
            print(
                f"{sid:<17}{label:<11}{m['service']:>9.3f}{m['bare']:>8.3f}{m['bare+JWT']:>10.3f}"
                f"{m['bare'] / m['service']:>9.0%}{m['bare+JWT'] / m['service']:>13.0%}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
