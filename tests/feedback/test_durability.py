"""A feedback 200 means committed: kill `cds serve` with SIGKILL right after the 200, restart it,
and the row is there (on SQLite and on PostgreSQL). The card comes from a real hook call; after
the restart, repeat-alert suppression still knows the cards shown before the crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from cds.auth.devkeys import mint_dev_token
from cds.discovery import Discovery
from cds.sandbox.requestbuilder import build_request
from cds.settings import REPO_ROOT, load_settings
from tests.live_server import PORT_ATTEMPTS, free_port, lost_port_race

SERVICE = "medication-risk"


def start(env: dict[str, str], data_dir: Path) -> tuple[subprocess.Popen, str]:
    """`cds serve --dev` on a free port, trying another port if someone else binds it first."""
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        log = data_dir.parent / f"serve-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cds",
                    "serve",
                    "--dev",
                    "--port",
                    str(port),
                    "--data-dir",
                    str(data_dir),
                ],
                env=env,
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return proc, f"http://127.0.0.1:{port}"
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if not lost_port_race(log.read_text(errors="replace")):
            break
    pytest.fail(f"cds serve did not start (exit code {proc.poll()})")


@contextmanager
def serve(env: dict[str, str], data_dir: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    proc, base = start(env, data_dir)
    try:
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def test_feedback_survives_sigkill(database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {
        **os.environ,
        "CDS_DATABASE_URL": database_url,
        "CDS_LOG_LEVEL": "warning",
        "CDS_SERVICES": '{"medication-risk": {"suppress_minutes": 60}}',
    }
    env.pop("CDS_CONFIG", None)
    settings = load_settings(dev=True, data_dir=data_dir, database_url=database_url)

    def urls(base: str) -> tuple[str, str]:
        return f"{base}/cds-services/{SERVICE}", f"{base}/cds-services/{SERVICE}/feedback"

    def auth(url: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_dev_token(settings, url)}"}

    request = build_request(Discovery.load(settings.hooks_file), SERVICE, "sbx-warfarin-af")
    with serve(env, data_dir) as (proc, base):
        hook_url, feedback_url = urls(base)
        answer = httpx.post(hook_url, json=request, headers=auth(hook_url), timeout=30)
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
        r = httpx.post(feedback_url, json=feedback, headers=auth(feedback_url), timeout=30)
        assert r.status_code == 200, r.text
        assert r.json() == {"received": 1, "stored": 1}
        os.kill(proc.pid, signal.SIGKILL)  # right after the 200: no graceful shutdown, no flush
        assert proc.wait(timeout=10) == -signal.SIGKILL
    with serve(env, data_dir) as (_, base):  # maybe on another port: tokens are minted per URL
        hook_url, feedback_url = urls(base)
        summary_url = f"{base}/feedback/summary"
        summary = httpx.get(summary_url, params={"since": "1h"}, headers=auth(summary_url), timeout=30)
        assert summary.status_code == 200, summary.text
        assert summary.json()["totals"]["accepted"] == 1
        again = httpx.post(feedback_url, json=feedback, headers=auth(feedback_url), timeout=30)
        assert again.json() == {"received": 1, "stored": 0}  # the committed row is there
        repeat = httpx.post(hook_url, json=request, headers=auth(hook_url), timeout=30)
        assert repeat.status_code == 200 and repeat.json() == {"cards": []}  # same alerts, within the hour
