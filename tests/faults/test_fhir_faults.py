"""FHIR server faults not covered by tests/core/test_fhir_fallback.py (slow, down, 500, garbage,
paging forever are there): a huge Bundle, a connection reset, a truncated body, a server that never
answers. Each is a 412 naming the keys, within the FHIR budget, with memory bounded."""

from __future__ import annotations

import time
from typing import Any

import psutil
import pytest

from tests.core.conftest import patient_view
from tests.core.test_fhir_fallback import PATIENT, PID, VITALS, with_fhir

pytestmark = pytest.mark.slow
BUDGET_S = 1.0  # fhir_timeout_seconds for these tests
# Wall-clock bounds only tell "the budget cut in" from "it waited for the fault" (a hang lasts
# until pytest's own timeout), so each has this much slack for a loaded 2-core CI runner.
SLACK_S = 5.0


@pytest.fixture
def server(fresh_fhir_server: Any) -> Any:
    fresh_fhir_server.load([PATIENT, *VITALS])
    fresh_fhir_server.reset()
    return fresh_fhir_server


def call(caller: Any, server: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    resp = caller.post("/cds-services/deterioration", json=with_fhir(server, patient_view(PID)))
    return resp, time.perf_counter() - started


def test_huge_bundle_hits_the_response_cap_fast_with_memory_bounded(make_caller: Any, server: Any) -> None:
    # Response cap = 4 x max_body_bytes = 4 MB; the injected searchset is ~15 MB (30,000 Observations).
    caller = make_caller(max_body_bytes=1_000_000, fhir_timeout_seconds=BUDGET_S * 3)
    with server.fault("huge", count=30_000):
        server.get("Observation?patient=Patient/x", timeout=60)  # let Node build and cache the body first
        rss = psutil.Process().memory_info().rss
        resp, elapsed = call(caller, server)
        grown = psutil.Process().memory_info().rss - rss
    assert resp.status_code == 412, resp.text
    issue = resp.json()["issue"][0]
    assert "larger than 4000000 bytes" in issue["diagnostics"]
    assert set(issue["expression"]) >= {"prefetch.vitals", "prefetch.labs", "prefetch.conditions"}
    assert elapsed < BUDGET_S * 3 + SLACK_S
    assert grown < 64 * 1024 * 1024, f"RSS grew {grown / 1e6:.0f} MB for a capped response"


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("reset", "unreachable"),  # socket destroyed before any answer
        ("truncate", "unreachable"),  # headers promise more bytes than are sent, then the socket closes
        ("hang", f"did not answer within {BUDGET_S:g} s"),  # accepted, never answered
    ],
)
def test_connection_faults_are_412_within_the_budget(
    make_caller: Any, server: Any, mode: str, message: str
) -> None:
    caller = make_caller(fhir_timeout_seconds=BUDGET_S)
    with server.fault(mode):
        resp, elapsed = call(caller, server)
    assert resp.status_code == 412, resp.text
    assert message in resp.text
    assert "Bearer" not in resp.text and server.token not in resp.text
    assert elapsed < BUDGET_S + SLACK_S
    # and the service is fine afterwards
    resp, _ = call(caller, server)
    assert resp.status_code == 200, resp.text
