"""Replay protection shared through the database (issue 15, findings 3 and 4), against real SQLite
files and a real PostgreSQL server: two service instances on one database accept a token once; a
restart keeps the seen-set; a flooding client fills only its own quota; with the database down the
in-process cache decides alone, with an ERROR and a metric. (`workers = 2` end to end:
tests/auth/test_replay_workers.py.)"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cds.auth import Authenticator, AuthError
from cds.auth.replay import ReplayCache
from cds.auth.replay_store import SharedReplayCache
from cds.runtime.settings import Settings
from tests.auth.conftest import ISS, TENANT, KeyPair, claims
from tests.feedback.conftest import database_url, postgres_server

__all__ = ["database_url", "postgres_server"]

pytestmark = pytest.mark.anyio
URL = "https://cds.example.org/cds-services/deterioration"
OTHER = "https://other-ehr.example.org"


@pytest.fixture
async def instance(
    keys: dict[str, KeyPair], tmp_path: Path, database_url: str
) -> AsyncIterator[Callable[..., Any]]:
    """Start an 'instance' (Authenticator with the shared replay store) on the test database;
    two trusted clients with local key sets. All are closed after the test."""
    files = {}
    for name, key in (("ehr", keys["ES384"]), ("other", keys["RS384"])):
        files[name] = tmp_path / f"{name}-jwks.json"
        files[name].write_text(json.dumps({"keys": [key.jwk()]}))
    clients = [
        {"iss": ISS, "jwks_file": str(files["ehr"]), "tenant": [TENANT]},
        {"iss": OTHER, "jwks_file": str(files["other"]), "algorithms": ["RS384"]},
    ]
    started: list[Authenticator] = []

    async def make(url: str = database_url, quota: int = 100_000, **kw: Any) -> Authenticator:
        # a generous wait on the database: a loaded test machine must not turn into a fallback
        settings = Settings(
            trusted_clients=clients, data_dir=tmp_path, database_url=url, replay_db_timeout_seconds=5.0
        )
        replay = SharedReplayCache(settings, front=ReplayCache(max_per_issuer=quota), **kw)
        auth = Authenticator(settings, replay=replay)
        await auth.start()
        started.append(auth)
        return auth

    try:
        yield make
    finally:
        for a in started:
            await a.close()


async def check(auth: Authenticator, token: str) -> str:
    try:
        await auth.authenticate(f"Bearer {token}", URL)
    except AuthError as e:
        return e.check
    return "ok"


async def test_two_instances_accept_a_token_once_and_a_restart_remembers(instance, keys) -> None:
    a, b = await instance(), await instance()
    token = keys["ES384"].sign(claims(URL))
    assert await check(a, token) == "ok"
    assert await check(b, token) == "replayed-jti"  # the other instance: known through the database
    assert await check(a, token) == "replayed-jti"  # the same instance: its in-process cache
    # the same jti in another, freshly signed token is a replay too
    first = claims(URL)
    assert await check(b, keys["ES384"].sign(first)) == "ok"
    assert await check(a, keys["ES384"].sign({**first, "sub": "another"})) == "replayed-jti"
    # jti is unique per issuer: another client may use the same value
    other = claims(URL, iss=OTHER, tenant=None, jti=first["jti"])
    assert await check(a, keys["RS384"].sign(other)) == "ok"
    assert a.replay.fallbacks == b.replay.fallbacks == 0

    await a.close()
    await b.close()
    restarted = await instance()  # a new process: empty in-process cache, same database
    assert await check(restarted, token) == "replayed-jti"
    assert await check(restarted, keys["ES384"].sign(claims(URL))) == "ok"


async def test_an_expired_row_does_not_block_its_jti(instance, keys) -> None:
    """A row is live until exp + clock skew; after that (even before the purge) the jti may return."""
    a = await instance()
    jti = "reused-later"
    await a.replay.db.insert(ISS, jti, expires_ms=1000, now_ms=2000)  # long expired, not purged
    assert await check(a, keys["ES384"].sign(claims(URL, jti=jti))) == "ok"
    b = await instance()
    assert await check(b, keys["ES384"].sign(claims(URL, jti=jti))) == "replayed-jti"


async def test_a_flooding_client_fills_only_its_own_quota(instance, keys, caplog) -> None:
    """Finding 4: the quota is per issuer: a client sending more live tokens than its quota is
    refused (and logged at ERROR), every other client keeps being served."""
    a = await instance(quota=20)
    results = [await check(a, keys["ES384"].sign(claims(URL))) for _ in range(30)]
    assert results == ["ok"] * 20 + ["replay-quota-full"] * 10
    assert "replay-quota-full" in caplog.text and ISS in caplog.text
    other = [await check(a, keys["RS384"].sign(claims(URL, iss=OTHER, tenant=None))) for _ in range(20)]
    assert other == ["ok"] * 20


async def test_database_down_falls_back_to_this_process_with_an_error_and_a_metric(
    instance, keys, tmp_path: Path, caplog
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    counted: list[int] = []
    with caplog.at_level(logging.ERROR, logger="cds.auth"):
        a = await instance(url=f"sqlite:///{not_a_dir}/cds.sqlite3", on_fallback=lambda: counted.append(1))
    assert "replay store: database unavailable at start-up" in caplog.text
    token = keys["ES384"].sign(claims(URL))
    assert await check(a, token) == "ok"
    assert await check(a, token) == "replayed-jti"  # still refused within this process
    assert await check(a, keys["ES384"].sign(claims(URL))) == "ok"
    assert a.replay.fallbacks == len(counted) == 2
    assert "tokens checked in this process only" in caplog.text


async def test_tokens_arriving_together_are_each_accepted_once(instance) -> None:
    """Concurrent tokens are written in groups (one transaction / round trip): the same 40 tokens
    sent at once to two instances are each accepted by exactly one of them."""
    a, b = await instance(), await instance()
    jtis = [str(uuid.uuid4()) for _ in range(40)]
    exp = time.time() + 300
    results = await asyncio.gather(*(x.replay.remember(ISS, j, exp) for j in jtis for x in (a, b)))
    assert [results[2 * i] + results[2 * i + 1] for i in range(40)] == [1] * 40
    # the same key twice in one group: the first is new, the second is not
    now_ms = int(time.time() * 1000)
    twice = await asyncio.gather(
        *(a.replay.db.insert(ISS, "twice", now_ms + 60_000, now_ms) for _ in range(2))
    )
    assert sorted(twice) == [False, True]
    assert a.replay.fallbacks == b.replay.fallbacks == 0
