"""Fixtures for the feedback store tests: every store test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from CDS_TEST_POSTGRES_URL when set; otherwise a throwaway server is started with
scripts/start-postgres.sh when Debian's postgresql package is installed; otherwise the PostgreSQL
tests skip (and fail when CI=true, where the server must be there).
"""

from __future__ import annotations

import glob
import os
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from cds.feedback.store import FeedbackStore, open_store
from cds.runtime.settings import Settings

REPO = Path(__file__).resolve().parents[2]
START_POSTGRES = REPO / "scripts" / "start-postgres.sh"
BACKENDS = [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server URL for the session."""
    url = os.environ.get("CDS_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        msg = "PostgreSQL not installed (apt-get install postgresql) and CDS_TEST_POSTGRES_URL not set"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " (CI=true)")
        pytest.skip(msg)
    workdir = tempfile.mkdtemp(prefix="cds-pg-test.")
    done = subprocess.run(
        [str(START_POSTGRES), workdir],
        env={**os.environ, "CDS_PG_FSYNC": "off"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        pytest.fail(f"could not start PostgreSQL: {done.stderr[-2000:]}")
    try:
        yield (Path(workdir) / "url").read_text().strip()
    finally:
        subprocess.run([str(START_POSTGRES), "--stop", workdir], capture_output=True, timeout=60)


def _with_schema(url: str, schema: str) -> str:
    option = quote(f"-c search_path={schema}")
    return f"{url}{'&' if '?' in url else '?'}options={option}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend: a SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
        return
    with fresh_schema(request.getfixturevalue("postgres_server")) as url:
        yield url


@contextmanager
def fresh_schema(server: str) -> Iterator[str]:
    """A database URL on `server` whose search_path is a new, empty schema (dropped afterwards)."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _with_schema(server, schema)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def make_settings(database_url: str, tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path,
            "database_url": database_url,
            "hmac_secret": "test-secret",
            # the tests use fixed dates: the background purge must not age them out as years pass
            "retention_days": 100 * 365,
        }
        values.update(overrides)
        return Settings(**values).validate()

    return make


@pytest.fixture
async def store(make_settings: Callable[..., Settings]) -> AsyncIterator[FeedbackStore]:
    s = await open_store(make_settings(services={"medication-risk": {"suppress_minutes": 60,
                                                                     "suppress_overridden_minutes": 1440}}))  # fmt: skip
    try:
        yield s
    finally:
        await s.close()
