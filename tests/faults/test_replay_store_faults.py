"""Issue 15, finding 3: the replay store's database stops under a running service. Hooks keep
being answered within their budget; tokens are checked in this process only (a replay within the
process is still refused), with an ERROR in the log and `cds_replay_store_fallback_total` in
/metrics; once the server is back, tokens are checked in the database again."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from cds.auth import mint_dev_token
from tests.core.conftest import BASE
from tests.faults.test_database_faults import HOOK_BUDGET_S, pg_ctl, postgres

__all__ = ["postgres"]
pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def fallbacks(caller: Any) -> float:
    m = re.search(r"^cds_replay_store_fallback_total (\S+)$", caller.get("/metrics").text, re.M)
    assert m, "metric cds_replay_store_fallback_total missing"
    return float(m.group(1))


def test_replay_store_down_falls_back_to_the_process(
    make_caller: Any, postgres: tuple[str, Path], caplog
) -> None:
    url, workdir = postgres
    caller = make_caller(database_url=url)
    assert caller.get("/cds-services").status_code == 200
    assert fallbacks(caller) == 0

    pg_ctl(workdir, url, "stop")
    caplog.clear()
    for _ in range(3):
        started = time.perf_counter()
        assert caller.get("/cds-services").status_code == 200
        assert time.perf_counter() - started < HOOK_BUDGET_S
    assert fallbacks(caller) >= 3  # /metrics itself is not authenticated: each count is a token
    assert "replay store: database unavailable" in caplog.text
    assert any(r.levelname == "ERROR" for r in caplog.records if "replay store" in r.getMessage())
    token = mint_dev_token(caller.settings, BASE + "/cds-services")
    headers = {"Authorization": f"Bearer {token}"}
    assert caller.client.get("/cds-services", headers=headers).status_code == 200
    assert caller.client.get("/cds-services", headers=headers).status_code == 401  # this process

    pg_ctl(workdir, url, "start")
    deadline = time.monotonic() + 30
    before = fallbacks(caller)
    while True:  # back to the database once RETRY_SECONDS have passed and the pool reconnected
        assert caller.get("/cds-services").status_code == 200
        if fallbacks(caller) == before:
            break
        before = fallbacks(caller)
        assert time.monotonic() < deadline, "the replay store did not return to the database"
        time.sleep(0.5)
