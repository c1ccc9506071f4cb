"""A feedback 200 means committed: kill `cds serve` with SIGKILL right after the 200, restart it,
and the row is there (on SQLite and on PostgreSQL). The card comes from a real hook call; after
the restart, repeat-alert suppression still knows the cards shown before the crash."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from pathlib import Path

from cds.hooks.discovery import Discovery
from cds.runtime.settings import load_settings
from cds.sandbox.requestbuilder import build_request
from tests.live_server import LiveServer

SERVICE = "medication-risk"


def test_feedback_survives_sigkill(database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {
        "CDS_DATABASE_URL": database_url,
        "CDS_LOG_LEVEL": "warning",
        "CDS_SERVICES": '{"medication-risk": {"suppress_minutes": 60}}',
    }
    hook, feedback_path = f"/cds-services/{SERVICE}", f"/cds-services/{SERVICE}/feedback"
    request = build_request(Discovery.load(load_settings(dev=True).hooks_file), SERVICE, "sbx-warfarin-af")
    with LiveServer(data_dir, env=env) as server:
        answer = server.post(hook, json=request)
        assert answer.status_code == 200, answer.text
        card = next(c for c in answer.json()["cards"] if c.get("suggestions"))
        feedback = {
            "feedback": [
                {
                    "card": card["uuid"],
                    "outcome": "accepted",
                    "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                    "outcomeTimestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                }
            ]
        }
        r = server.post(feedback_path, json=feedback)
        assert r.status_code == 200, r.text
        assert r.json() == {"received": 1, "stored": 1}
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)  # right after the 200: no graceful shutdown, no flush
        assert server.wait(timeout=10) == -signal.SIGKILL
    with LiveServer(data_dir, env=env) as again:  # maybe on another port: tokens are minted per URL
        summary = again.get("/feedback/summary", params={"since": "1h"})
        assert summary.status_code == 200, summary.text
        assert summary.json()["totals"]["accepted"] == 1
        assert again.post(feedback_path, json=feedback).json() == {"received": 1, "stored": 0}
        repeat = again.post(hook, json=request)
        assert repeat.status_code == 200 and repeat.json() == {"cards": []}  # same alerts, within the hour
