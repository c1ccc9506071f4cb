"""Schemathesis against the running service (uvicorn subprocess, dev mode): every operation of the
committed openapi.json, positive and negative examples, each request signed for its exact URL.

Checks per response: no 5xx, status code documented, body conforms to the documented schema,
Content-Type as documented, authentication enforced (the request re-sent without and with a bad
token is refused), answered within RESPONSE_TIME_BOUND_S. The server must be ready (every
service loaded) first. Run alone with `-s` to see the request counts per operation.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from cds.hooks.discovery import Discovery
from tests.fhir_server import dead_base_url
from tests.live_server import LiveServer

REPO = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = 60  # per operation; the suite's total is printed at the end of the module
RESPONSE_TIME_BOUND_S = 1.0
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    ignored_auth,
]

schema = schemathesis.openapi.from_path(REPO / "openapi.json")
DEAD_FHIR = dead_base_url()
SERVICES = {f"/cds-services/{sid}": e for sid, e in Discovery.load(REPO / "hooks.json").services.items()}
EXAMPLES: Counter[str] = Counter()
SLOWEST: dict[str, float] = {}
STATUSES: Counter[int] = Counter()

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"CDS_FHIR_TIMEOUT_SECONDS": "0.5"}
    with LiveServer(tmp_path_factory.mktemp("schemathesis"), env=env, wait_ready=True) as server:
        yield server
        server.stop()
        errors = [
            line
            for line in server.log().splitlines()
            if "hook evaluation failed" in line or "unhandled" in line
        ]
        total = sum(EXAMPLES.values())
        print(
            f"\nschemathesis: {total} requests over {len(EXAMPLES)} operations; slowest {max(SLOWEST.values()):.3f} s"
        )
        print(f"  statuses: {dict(sorted(STATUSES.items()))}")
        for op, n in sorted(EXAMPLES.items()):
            print(f"  {n:5d}  {SLOWEST[op]:.3f} s  {op}")
        assert not errors, errors[:3]


def complete_prefetch(case: schemathesis.Case) -> None:
    """Steer generated hook calls to the services rather than all into the 412 of missing prefetch.

    Generated calls get the prefetch keys they lack as an EHR with no such data would send them
    (an empty searchset, the Patient itself); a fhirServer is pointed at a dead loopback port, as
    generated hosts could be anywhere. (The FHIR fallback and its 412s are exercised against a real
    FHIR server in tests/core/test_fhir_fallback.py and tests/faults/test_fhir_faults.py.)
    """
    body = case.body
    entry = SERVICES.get(case.path)
    if entry is None or not isinstance(body, dict):
        return
    if isinstance(body.get("fhirServer"), str):
        body["fhirServer"] = DEAD_FHIR
    context, prefetch = body.get("context"), body.setdefault("prefetch", {})
    if (
        not isinstance(context, dict)
        or not isinstance(context.get("patientId"), str)
        or not isinstance(prefetch, dict)
    ):
        return
    for key, template in entry.prefetch.items():
        if prefetch.get(key) is None:
            prefetch[key] = (
                {"resourceType": "Patient", "id": context["patientId"]}
                if template.startswith("Patient/")
                else {"resourceType": "Bundle", "type": "searchset", "entry": []}
            )


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi(case: schemathesis.Case, live: LiveServer) -> None:
    complete_prefetch(case)
    headers = {"Authorization": f"Bearer {live.token(case.formatted_path)}"}
    started = time.perf_counter()
    response = case.call(base_url=live.base_url, headers=headers, timeout=10)
    elapsed = time.perf_counter() - started
    key = case.operation.label
    EXAMPLES[key] += 1
    SLOWEST[key] = max(SLOWEST.get(key, 0.0), elapsed)
    STATUSES[response.status_code] += 1
    case.validate_response(response, checks=CHECKS, headers=headers)
    assert elapsed < RESPONSE_TIME_BOUND_S, f"{key} took {elapsed:.3f} s"
