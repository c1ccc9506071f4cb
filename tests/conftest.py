"""Shared fixtures. Tests that need ../shared/data skip where it is absent (a user's machine)
and fail when CDS_REQUIRE_DATA=1 (CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.loopback_guard import install as fence_the_network

fence_the_network()  # before any test runs: nothing the suite does may leave loopback

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CDS_SHARED_DATA", REPO.parent / "shared" / "data"))


def require_data(sub: str = "") -> Path:
    """The path of a shared data set, or skip (fail under CDS_REQUIRE_DATA=1) when absent."""
    path = SHARED_DATA / sub
    if not path.exists():
        msg = f"shared data not found: {path}"
        if os.environ.get("CDS_REQUIRE_DATA") == "1":
            pytest.fail(msg + " (CDS_REQUIRE_DATA=1)")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_data()


@pytest.fixture(scope="session")
def eicu_dir() -> Path:
    return require_data("eicu-demo")


@pytest.fixture(scope="session")
def ecqm_dir() -> Path:
    return require_data("ecqm")


@pytest.fixture(scope="session")
def synthea_dir() -> Path:
    return require_data("synthea-r4")


# --- Real FHIR test server (Medplum's engine in memory, tests/fhirserver/server.js) ---------------


@pytest.fixture(scope="session")
def fhir_server():
    """One test FHIR server for the session (see tests/fhir_server.py). Without Node.js it skips,
    or fails under CDS_REQUIRE_DATA=1 / CI=1."""
    import shutil

    from fhir_server import running_fhir_server

    if shutil.which("node") is None or shutil.which("npm") is None:
        msg = "Node.js 20 (node, npm) is needed for the FHIR server tests"
        if os.environ.get("CDS_REQUIRE_DATA") == "1" or os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    with running_fhir_server() as server:
        yield server


@pytest.fixture
def fresh_fhir_server(fhir_server):
    """The session's FHIR server, emptied, with its request log cleared and faults off."""
    fhir_server.reset()
    fhir_server.clear()
    yield fhir_server
    fhir_server.reset()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last, whatever the order the files were collected in: Playwright's sync
    API keeps an event loop running in the main thread until the session ends, and every later
    `asyncio.run()` would fail ("cannot be called from a running event loop")."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
