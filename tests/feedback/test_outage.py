"""PostgreSQL outages, through a TCP proxy that can cut the database off: the hook path keeps
answering without waiting, feedback gets 503, and once the database is back the store migrates
(degraded start) or resumes, and no issued card is lost."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import pytest

from cds.feedback import postgres
from cds.feedback.store import FeedbackStore, open_store
from cds.feedback.validate import FeedbackError
from cds.runtime.settings import Settings

from .helpers import SERVICE, T0, a_card, accepted, send

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]
# Slack on the hook's bounded database wait (db_write_timeout_seconds) for a loaded 2-core CI
# runner; still far below the pool's 5 s wait that an unbounded hook would pay.
SLACK_S = 2.0


class Proxy:
    """Forwards TCP to the database while `up`; `cut()` drops every connection."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.up = False
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        r2, w2 = await asyncio.open_connection(*self.target)
        if not self.up:  # cut while this connection was being opened: it must not survive the cut
            w2.close()
            writer.close()
            return
        self.writers |= {writer, w2}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, w2), pipe(r2, writer))

    def cut(self) -> None:
        self.up = False
        for w in self.writers:
            w.close()
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        self.server.close()


@pytest.fixture
async def proxied(postgres_server: str, database_url: str) -> AsyncIterator[tuple[Proxy, str]]:
    parts = urlsplit(database_url)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    port = await proxy.start()
    netloc = parts.netloc.rsplit(":", 1)[0] + f":{port}"
    try:
        yield proxy, urlunsplit(parts._replace(netloc=netloc))
    finally:
        await proxy.close()


@pytest.fixture(autouse=True)
def quick_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT_SECONDS", 0.5)


def settings_for(url: str, tmp_path: object) -> Settings:
    return Settings(
        data_dir=tmp_path,  # type: ignore[arg-type]
        database_url=url,
        hmac_secret="t",
        retention_days=100 * 365,  # fixed test dates must not age out
        services={SERVICE: {"suppress_minutes": 60}},
    )


async def wait_until(condition: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_start_while_the_database_is_down(proxied: tuple[Proxy, str], tmp_path: object) -> None:
    proxy, url = proxied
    store: FeedbackStore = await open_store(settings_for(url, tmp_path))
    try:
        assert not store.ready
        card = a_card()
        started = time.perf_counter()
        assert await store.filter_and_record(SERVICE, "pk1", [card], T0) == [card]
        assert time.perf_counter() - started < store.settings.db_write_timeout_seconds + SLACK_S
        with pytest.raises(FeedbackError) as err:
            await send(store, accepted(card))
        assert err.value.status == 503
        proxy.up = True
        await wait_until(lambda: store.ready, 20)
        assert await store.flush(timeout=20)
        assert await send(store, accepted(card)) == 1
        assert await store.counts() == (1, 1)
    finally:
        await store.close()


async def test_outage_while_running(proxied: tuple[Proxy, str], tmp_path: object) -> None:
    proxy, url = proxied
    proxy.up = True
    store = await open_store(settings_for(url, tmp_path))
    try:
        assert store.ready
        before = a_card()
        await store.filter_and_record(SERVICE, "pk1", [before], T0)
        assert await store.flush()
        proxy.cut()
        during = [a_card(kind=f"k{i}") for i in range(5)]
        started = time.perf_counter()
        shown = await store.filter_and_record(SERVICE, "pk1", [*during, a_card()], T0 + timedelta(minutes=1))
        assert time.perf_counter() - started < store.settings.db_write_timeout_seconds + SLACK_S
        assert len(shown) == 6  # suppression could not read: nothing hidden
        with pytest.raises(FeedbackError) as err:
            await send(store, accepted(before))
        assert err.value.status == 503
        proxy.up = True
        assert await store.flush(timeout=30)  # the queued cards are written once it is back
        assert await store.counts() == (7, 0)
        assert await send(store, accepted(during[0])) == 1
    finally:
        await store.close()
