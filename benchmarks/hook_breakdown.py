"""Where a hook's time goes, in-process: depth check, ES384 verification, decoding with validation
(one msgspec pass plus the cross-field checks), record, evaluation, serialisation, per service, on
the largest Synthea charts.

    python benchmarks/hook_breakdown.py [--n 300]

The GC policy of the server (cds/runtime/gcpolicy.py) is applied, as in `cds serve`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import jwt
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.hooks_load import SERVICES, Tokens
from benchmarks.synthea_requests import hook_request, load_patients
from cds.fhir.record import PatientRecord
from cds.hooks.cards import encode_response
from cds.hooks.discovery import Discovery
from cds.hooks.registry import load_service
from cds.hooks.validation import decode_hook_request
from cds.runtime.gcpolicy import freeze_startup_state
from cds.runtime.settings import REPO_ROOT, load_settings
from cds.web.body import json_depth

STAGES = ("depth", "jwt", "decode", "record", "evaluate", "dump")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    discovery = Discovery.load(REPO_ROOT / "hooks.json")
    patients = load_patients(8)
    settings = load_settings(dev=True, data_dir=Path(tempfile.mkdtemp()))
    tokens = Tokens(settings.data_dir)
    token, public = tokens.mint("http://bench", 1)[0], tokens.key.public_key()
    services = {sid: load_service(discovery.services[sid], settings) for sid in SERVICES}
    bodies = {sid: [orjson.dumps(hook_request(discovery, sid, p)) for p in patients] for sid in SERVICES}
    freeze_startup_state()
    print(f"ms per hook, mean of {args.n}: " + " ".join(f"{s:>9}" for s in STAGES) + "      sum")
    for sid in SERVICES:
        hook = discovery.services[sid].hook
        totals = [0.0] * len(STAGES)
        for i in range(args.n + 8):
            raw = bodies[sid][i % len(bodies[sid])]
            t = [time.perf_counter()]
            json_depth(raw)
            t.append(time.perf_counter())
            jwt.decode(token, public, algorithms=["ES384"], audience="http://bench")
            t.append(time.perf_counter())
            req = decode_hook_request(raw, sid, hook, settings, "http://bench")
            t.append(time.perf_counter())
            record = PatientRecord.from_resources(req.prefetch_resources, patient_id=req.patient_id)
            t.append(time.perf_counter())
            cards = services[sid].evaluate(req, record)
            t.append(time.perf_counter())
            encode_response(cards)
            t.append(time.perf_counter())
            if i >= 8:  # warm-up done
                totals = [a + (b - c) for a, b, c in zip(totals, t[1:], t, strict=False)]
        means = [x / args.n * 1000 for x in totals]
        print(f"{sid:<28}" + " ".join(f"{m:>9.3f}" for m in means) + f"{sum(means):>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
