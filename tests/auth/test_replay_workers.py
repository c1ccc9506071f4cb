"""Issue 15, finding 3, end to end: `cds serve` with `workers = 2` on loopback accepts a token once
however the calls are spread over its worker processes, and again after a restart of the server
(the seen-set is in the SQLite file under the data directory)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cds.auth import mint_dev_token
from tests.live_server import LiveServer

pytestmark = pytest.mark.slow
PUBLIC = "http://cds.test"  # both servers answer as one deployment (what a load balancer shows)
CALLS = 24


def spread(server: LiveServer, token: str) -> list[int]:
    """The same token sent CALLS times at once, each on its own connection (so the kernel hands
    the connections to both workers)."""

    def one(_: int) -> int:
        with httpx.Client(base_url=server.base_url, timeout=30) as c:
            return c.get("/cds-services", headers={"Authorization": f"Bearer {token}"}).status_code

    with ThreadPoolExecutor(CALLS) as pool:
        return list(pool.map(one, range(CALLS)))


def test_two_workers_accept_a_token_once_and_a_restart_remembers(tmp_path: Path) -> None:
    # a generous wait on the database: a loaded test machine must not turn into a fallback
    env = {"CDS_WORKERS": "2", "CDS_PUBLIC_BASE_URL": PUBLIC, "CDS_REPLAY_DB_TIMEOUT_SECONDS": "5"}
    with LiveServer(tmp_path, env=env) as server:
        token = mint_dev_token(server.settings, PUBLIC + "/cds-services")
        statuses = spread(server, token)
        assert sorted(statuses) == [200] + [401] * (CALLS - 1), statuses
        # each of many fresh tokens is accepted: the store does not refuse what it has not seen
        fresh = [mint_dev_token(server.settings, PUBLIC + "/cds-services") for _ in range(8)]
        for t in fresh:
            assert (
                server.client.get("/cds-services", headers={"Authorization": f"Bearer {t}"}).status_code
                == 200
            )
        log = server.log()
    assert len(set(re.findall(r"Started server process \[(\d+)\]", log))) == 2  # really two workers
    assert "replay store: database unavailable" not in log
    with LiveServer(tmp_path, env=env) as restarted:
        for t in (token, *fresh):
            r = restarted.client.get("/cds-services", headers={"Authorization": f"Bearer {t}"})
            assert r.status_code == 401
        assert "check=replayed-jti" in restarted.log()
