"""A live service for the sandbox tests: the real app under uvicorn on a free loopback port, in
development mode with a temporary data directory (the same helper `cds sandbox check` uses)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cds.runtime.settings import Settings, load_settings
from cds.sandbox.runner import local_service
from cds.web.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    data_dir = tmp_path_factory.mktemp("sandbox-data")
    settings = load_settings(
        dev=True, data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'cds.sqlite3'}"
    )
    with local_service(create_app, settings) as (base_url, s):
        yield base_url, s


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """pytest-playwright launches Debian's Chromium (Playwright's own download does not work here)."""
    if not CHROMIUM.exists() or shutil.which("chromium") is None:
        msg = "Debian's chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI") or os.environ.get("CDS_REQUIRE_BROWSER") == "1":
            pytest.fail(msg + " (CI / CDS_REQUIRE_BROWSER=1)")
        pytest.skip(msg)
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
