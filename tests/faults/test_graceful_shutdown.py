"""Graceful shutdown of `cds serve` on SIGTERM: the hooks in flight finish with its cards, new
connections are refused, the cards it issued are written to the feedback database before exit."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds.hooks.discovery import Discovery
from cds.runtime.settings import Settings
from tests.core.conftest import patient_view
from tests.core.test_fhir_fallback import PATIENT, PID, VITALS, with_fhir
from tests.live_server import LiveServer

pytestmark = pytest.mark.slow
FHIR_DELAY_MS = 1500
IN_FLIGHT = 4


def test_sigterm_drains_in_flight_hooks_and_flushes_card_writes(
    fresh_fhir_server: Any, tmp_path: Path
) -> None:
    fhir = fresh_fhir_server
    fhir.load([PATIENT, *VITALS])
    server = LiveServer(tmp_path / "data", env={"CDS_FHIR_TIMEOUT_SECONDS": "5"}).start()
    try:
        path = "/cds-services/deterioration"
        results: list[httpx.Response] = []
        with fhir.fault("slow", delay_ms=FHIR_DELAY_MS):
            in_flight = [
                threading.Thread(
                    target=lambda: results.append(server.post(path, json=with_fhir(fhir, patient_view(PID))))
                )
                for _ in range(IN_FLIGHT)
            ]
            started = time.monotonic()
            for t in in_flight:
                t.start()
            expected = IN_FLIGHT * len(
                Discovery.load(Settings().hooks_file).services["deterioration"].prefetch
            )
            while len(fhir.requests()) < expected and time.monotonic() - started < 5:
                time.sleep(0.02)
            assert len(fhir.requests()) == expected  # every hook is now waiting on the slow FHIR server
            server.terminate()
            time.sleep(0.3)
            with pytest.raises(httpx.ConnectError):
                httpx.get(server.base_url + "/healthz", timeout=2)  # new connections are refused
            time.sleep(0.1)
            for t in in_flight:
                t.join(15)
        assert len(results) == IN_FLIGHT, "an in-flight hook got no answer"
        cards = []
        for resp in results:
            assert resp.status_code == 200, resp.text
            assert [c["indicator"] for c in resp.json()["cards"]] == ["critical"]
            cards += resp.json()["cards"]
        assert time.monotonic() - started >= FHIR_DELAY_MS / 1000  # it really was in flight at SIGTERM
        # uvicorn re-raises the signal once it has shut down cleanly: killed by SIGTERM, not crashed
        assert server.wait(30) in (0, -15)
    finally:
        server.stop()
    log = server.log()
    assert "Application shutdown complete" in log
    assert "not written" not in log
    db = sqlite3.connect(tmp_path / "data" / "cds.sqlite3")
    try:
        stored = {row[0] for row in db.execute("SELECT uuid FROM cds_card")}
    finally:
        db.close()
    assert {c["uuid"] for c in cards} <= stored, "cards issued during shutdown were not written"
