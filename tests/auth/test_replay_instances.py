"""Issue 15, finding 3, as a hospital runs it: two separate `cds serve` processes (two instances
behind a load balancer) on one PostgreSQL database accept a token once, whichever instance sees
it first, and neither accepts it again after both restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cds.auth import mint_dev_token
from tests.feedback.conftest import fresh_schema, postgres_server  # noqa: F401 - the fixture
from tests.live_server import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
PUBLIC = "http://cds.test"  # one deployment, as the load balancer shows it


@pytest.fixture
def database(postgres_server: str) -> Iterator[str]:  # noqa: F811
    with fresh_schema(postgres_server) as url:
        yield url


def test_two_instances_on_one_postgres_accept_a_token_once(tmp_path: Path, database: str) -> None:
    # both instances share the development key (same data directory) and the database
    env = {"CDS_PUBLIC_BASE_URL": PUBLIC, "CDS_DATABASE_URL": database, "CDS_REPLAY_DB_TIMEOUT_SECONDS": "5"}
    with LiveServer(tmp_path, env=env) as a, LiveServer(tmp_path, env=env) as b:
        tokens = [mint_dev_token(a.settings, PUBLIC + "/cds-services") for _ in range(6)]
        for i, token in enumerate(tokens):
            first, second = (a, b) if i % 2 else (b, a)
            headers = {"Authorization": f"Bearer {token}"}
            assert first.client.get("/cds-services", headers=headers).status_code == 200
            assert second.client.get("/cds-services", headers=headers).status_code == 401
        assert "check=replayed-jti" in a.log() + b.log()
        assert "replay store: database unavailable" not in a.log() + b.log()
    with LiveServer(tmp_path, env=env) as again:
        for token in tokens:
            r = again.client.get("/cds-services", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401
