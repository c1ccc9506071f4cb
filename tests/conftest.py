"""Shared fixtures. Tests that need ../shared/data skip where it is absent (a user's machine)
and fail when CDS_REQUIRE_DATA=1 (CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
