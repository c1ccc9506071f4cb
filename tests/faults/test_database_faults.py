"""Feedback database down: hooks keep answering 200 (cards shown unsuppressed, an error logged),
feedback answers 503 with Retry-After and a log line, within the store's budget.

PostgreSQL is stopped under a running service (a throwaway server this test starts), then started
again: the cards issued during the outage are written and feedback on them is taken. SQLite is
made unavailable at start (its path cannot be created). As root, file permissions cannot make a
SQLite file unwritable, so the run-time outage is exercised on PostgreSQL.
"""

from __future__ import annotations

import glob
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cds.hooks.discovery import Discovery
from cds.runtime.settings import Settings
from tests.core.conftest import patient_view
from tests.core.test_fhir_fallback import PATIENT, VITALS

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
START_POSTGRES = REPO / "scripts" / "start-postgres.sh"
# A hook must never wait for the database's 5 s connect/pool timeout. The bound sits well below
# that and well above what a loaded 2-core CI runner needs to answer a hook (tens of ms idle).
HOOK_BUDGET_S = 3.0


def critical_call() -> dict[str, Any]:
    """A patient-view whose prefetch makes the deterioration service answer one critical card."""
    return patient_view(PATIENT["id"], critical_prefetch())


def critical_prefetch() -> dict[str, Any]:
    """Every prefetch key of the deterioration service: the patient, critical vitals, else empty."""
    entry = Discovery.load(Settings().hooks_file).services["deterioration"]
    prefetch: dict[str, Any] = {}
    for key, template in entry.prefetch.items():
        if template.startswith("Patient/"):
            prefetch[key] = PATIENT
        else:
            vitals = "vital-signs" in template
            entries = [{"resource": v} for v in VITALS] if vitals else []
            prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    return prefetch


def feedback(card: str) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"feedback": [{"card": card, "outcome": "overridden", "outcomeTimestamp": now}]}


def timed(fn: Any, *args: Any, **kw: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn(*args, **kw)
    return result, time.perf_counter() - started


@pytest.fixture
def postgres() -> Iterator[tuple[str, Path]]:
    """A throwaway PostgreSQL server of its own (this test stops it)."""
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        if os.environ.get("CI") or os.environ.get("CDS_REQUIRE_DATA") == "1":
            pytest.fail("PostgreSQL is not installed (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="cds-pg-fault."))
    done = subprocess.run(
        ["bash", str(START_POSTGRES), str(workdir)],
        env={**os.environ, "CDS_PG_FSYNC": "off"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    try:
        yield (workdir / "url").read_text().strip(), workdir
    finally:
        subprocess.run(["bash", str(START_POSTGRES), "--stop", str(workdir)], capture_output=True, timeout=60)


def pg_ctl(workdir: Path, url: str, action: str) -> None:
    """Stop (fast) or start again the throwaway server of `postgres`, keeping its data."""
    bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    port = urlsplit(url).port
    cmd = [f"{bindir}/pg_ctl", "-D", str(workdir / "data"), "-w", "-t", "30"]
    if action == "stop":
        cmd += ["-m", "fast", "stop"]
    else:
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {workdir} -c fsync=off"
        cmd += ["-l", str(workdir / "server.log"), "-o", opts, "start"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.postgres
def test_postgres_stopped_under_a_running_service(
    make_caller: Any, postgres: tuple[str, Path], caplog: Any
) -> None:
    url, workdir = postgres
    caller = make_caller(database_url=url)
    assert caller.client.app.state.cds.store is not None
    resp = caller.post("/cds-services/deterioration", json=critical_call())
    assert resp.status_code == 200, resp.text
    card = resp.json()["cards"][0]["uuid"]
    ok = caller.post("/cds-services/deterioration/feedback", json=feedback(card))
    assert ok.status_code == 200, ok.text

    pg_ctl(workdir, url, "stop")
    caplog.clear()

    for _ in range(3):
        resp_down, elapsed = timed(caller.post, "/cds-services/deterioration", json=critical_call())
        resp = resp_down
        assert resp.status_code == 200, resp.text
        assert [c["indicator"] for c in resp.json()["cards"]] == ["critical"]  # shown, not suppressed
        assert elapsed < HOOK_BUDGET_S, f"hook took {elapsed:.2f} s with the database down"

    resp, elapsed = timed(caller.post, "/cds-services/deterioration/feedback", json=feedback(card))
    assert resp.status_code == 503, resp.text
    assert resp.headers.get("retry-after")
    assert resp.json()["issue"][0]["code"] == "transient"
    assert "refused with 503" in caplog.text or "not stored yet" in resp.text
    # the cards issued meanwhile are kept for a retry, and the outage is logged (the card writer
    # gives up on a connection after WRITE_CONNECT_TIMEOUT_SECONDS; feedback may answer sooner)
    logged = time.monotonic() + 10
    while "feedback database write failed" not in caplog.text and "suppression skipped" not in caplog.text:
        assert time.monotonic() < logged, "the outage was not logged"
        time.sleep(0.2)
    assert elapsed < 12.0, f"feedback took {elapsed:.1f} s to give up"  # at most the pool timeout (5 s)
    print(f"\nfeedback with PostgreSQL down: 503 after {elapsed:.2f} s")
    assert caller.get("/healthz").status_code == 200

    # The database comes back: the cards issued meanwhile are written, feedback on them is taken.
    pg_ctl(workdir, url, "start")
    issued_while_down = resp_down.json()["cards"][0]["uuid"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        resp = caller.post("/cds-services/deterioration/feedback", json=feedback(issued_while_down))
        if resp.status_code == 200:
            break
        time.sleep(1)
    assert resp.status_code == 200, resp.text
    print(f"feedback taken again {30 - (deadline - time.monotonic()):.1f} s after PostgreSQL came back")


def test_sqlite_unavailable_at_start(make_caller: Any, tmp_path: Path, caplog: Any) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the database directory should be")
    caller = make_caller(database_url=f"sqlite:///{blocker}/cds.sqlite3")
    assert caller.client.app.state.cds.store is None
    assert "feedback store unavailable" in caplog.text
    resp, elapsed = timed(caller.post, "/cds-services/deterioration", json=critical_call())
    assert resp.status_code == 200 and resp.json()["cards"], resp.text
    assert elapsed < HOOK_BUDGET_S
    card = resp.json()["cards"][0]["uuid"]
    resp, elapsed = timed(caller.post, "/cds-services/deterioration/feedback", json=feedback(card))
    assert resp.status_code == 503, resp.text
    assert resp.headers.get("retry-after")
    assert elapsed < HOOK_BUDGET_S
