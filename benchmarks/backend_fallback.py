"""Latency of a hook whose data all come from the FHIR fallback, side by side in one run:
with the EHR's `fhirAuthorization` token, and with the service's own SMART Backend Services token
(cached after the first call). Also: the same hook with full prefetch, the no-fallback baseline.

    python benchmarks/backend_fallback.py [--n 200]

Real components on loopback: the service under uvicorn, the Medplum test FHIR server (Node), and
the tests' local authorization server. Calls alternate between the modes so that machine noise
falls on all of them alike. Needs Node.js and tests/fhirserver's packages (`npm ci` there).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cds.runtime.settings import load_settings
from cds.sandbox.runner import local_service
from cds.web.app import create_app
from tests.core.test_fhir_fallback import PATIENT, PID, VITALS
from tests.fhir_server import running_fhir_server
from tests.live_server import free_port
from tests.smart.authserver import AuthServer
from tests.smart.test_backend_services import CLIENT_ID, ISS, Ehr, backend_key


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="calls per mode (default 200)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, running_fhir_server() as fhir:
        tmp = Path(tmp_name)
        fhir.load([PATIENT, *VITALS])
        ehr = Ehr(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        auth = AuthServer(CLIENT_ID, f"{base}/.well-known/jwks.json", fhir)
        settings = load_settings(
            data_dir=tmp / "data",
            public_base_url=base,
            trusted_clients=[
                {
                    "iss": ISS,
                    "jwks_file": str(ehr.jwks_file),
                    "fhir_servers": [fhir.base_url],
                    "allow_local_fhir": True,
                    "backend": {
                        "client_id": CLIENT_ID,
                        "private_key_file": str(backend_key(tmp)),
                        "token_url": auth.token_url,
                    },
                }
            ],
            fhir_timeout_seconds=5.0,
        )
        url = f"{base}/cds-services/deterioration"
        with local_service(create_app, settings, port=port), httpx.Client(timeout=30) as http:

            def call(extra: dict) -> float:
                body = {
                    "hook": "patient-view",
                    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
                    "fhirServer": fhir.base_url,
                    "context": {"userId": "Practitioner/p", "patientId": PID},
                    **extra,
                }
                started = time.perf_counter()
                resp = http.post(url, json=body, headers={"Authorization": f"Bearer {ehr.token(url)}"})
                elapsed = time.perf_counter() - started
                assert resp.status_code == 200 and resp.json()["cards"], resp.text
                return elapsed * 1000

            ehr_token = {
                "fhirAuthorization": {
                    "access_token": fhir.token,
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "scope": "user/*.read",
                    "subject": "cds",
                }
            }
            _, bundle = fhir.get(f"Observation?patient=Patient/{PID}")
            empty = {"resourceType": "Bundle", "type": "searchset", "entry": []}
            prefetch = {
                "prefetch": {
                    "patient": PATIENT,
                    "vitals": bundle,
                    "labs": empty,
                    "conditions": empty,
                    "procedures": empty,
                }
            }
            modes = {
                "full prefetch (no fallback)": prefetch,
                "fallback, EHR token": ehr_token,
                "fallback, backend token (cached)": {},
            }
            for extra in modes.values():  # warm up: connections, the first backend token
                call(extra)
            times: dict[str, list[float]] = {m: [] for m in modes}
            for _ in range(args.n):
                for mode, extra in modes.items():
                    times[mode].append(call(extra))
        auth.stop()
    print(f"hook latency over {args.n} calls per mode (ms), deterioration patient-view, 5 prefetch keys")
    print(f"{'mode':36} {'p50':>7} {'p90':>7} {'p99':>7} {'mean':>7}")
    for mode, values in times.items():
        print(
            f"{mode:36} {pct(values, 0.5):7.2f} {pct(values, 0.9):7.2f} {pct(values, 0.99):7.2f} "
            f"{statistics.fmean(values):7.2f}"
        )
    print(f"token requests to the authorization server: {auth.ok_requests} (one, then the cache)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
