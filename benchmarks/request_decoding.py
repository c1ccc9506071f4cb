"""The hook request path before and after declaring it with msgspec, interleaved in one process.

    git archive d05c276 | tar -x -C /tmp/cds-before      # the tree before (orjson + hand checks)
    python benchmarks/request_decoding.py --before /tmp/cds-before [--n 300]

"before" is `orjson.loads` + the old `validate_hook_request` (loaded from that tree's
cds/hooks/validation.py); "after" is `decode_hook_request` on the raw body. Both run on the same
bodies (the largest Synthea charts), alternating call by call, so machine load hits both alike.
The JSON depth check and JWT verification are the same on both sides and left out. The answer's
encoding is timed both ways on today's cards.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.hooks_load import SERVICES
from benchmarks.synthea_requests import hook_request, load_patients
from cds.hooks.cards import encode_response
from cds.hooks.discovery import Discovery
from cds.hooks.registry import load_service
from cds.hooks.validation import decode_hook_request
from cds.runtime.gcpolicy import freeze_startup_state
from cds.runtime.settings import REPO_ROOT, load_settings


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="a checkout of the tree before")
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location(
        "before_validation", args.before / "cds/hooks/validation.py"
    )
    assert spec and spec.loader
    before = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(before)
    discovery = Discovery.load(REPO_ROOT / "hooks.json")
    patients = load_patients(8)
    settings = load_settings(dev=True, data_dir=Path(tempfile.mkdtemp()))
    services = {sid: load_service(discovery.services[sid], settings) for sid in SERVICES}
    freeze_startup_state()
    print(f"ms per call, median of {args.n}: decoding + validation of the request, before and after;")
    print("the answer's cards as orjson.dumps of to_json() dicts (as the app did) and by encode_response")
    print(
        f"{'service':<18}{'before':>9}{'after':>9}{'after/before':>14}{'to_json':>12}{'encode':>10}{'cards':>7}"
    )
    for sid in SERVICES:
        hook = discovery.services[sid].hook
        bodies = [orjson.dumps(hook_request(discovery, sid, p)) for p in patients]
        req = decode_hook_request(bodies[0], sid, hook, settings, "http://bench")
        times: dict[str, list[float]] = {"before": [], "after": [], "to_json": [], "encode": []}
        for i in range(args.n + 8):
            raw = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            old = before.validate_hook_request(orjson.loads(raw), sid, hook, settings, "http://bench")
            t1 = time.perf_counter()
            new = decode_hook_request(raw, sid, hook, settings, "http://bench")
            t2 = time.perf_counter()
            if i == 0:
                from cds.fhir.record import PatientRecord

                record = PatientRecord.from_resources(new.prefetch_resources, patient_id=new.patient_id)
                cards = services[sid].evaluate(new, record)
                assert len(old.prefetch_resources) == len(new.prefetch_resources)
            t3 = time.perf_counter()
            orjson.dumps({"cards": [c.to_json() for c in cards]})
            t4 = time.perf_counter()
            encode_response(cards)
            t5 = time.perf_counter()
            if i >= 8:
                times["before"].append(t1 - t0)
                times["after"].append(t2 - t1)
                times["to_json"].append(t4 - t3)
                times["encode"].append(t5 - t4)
        b, a, j, e = (statistics.median(times[k]) * 1000 for k in ("before", "after", "to_json", "encode"))
        print(f"{sid:<18}{b:>9.3f}{a:>9.3f}{a / b:>14.2f}{j:>12.3f}{e:>10.3f}{len(cards):>7}")
    del req
    return 0


if __name__ == "__main__":
    sys.exit(main())
