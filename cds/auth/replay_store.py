"""Replay protection shared by every worker process and every instance: the (iss, jti) seen-set in
the service's database (`cds_replay`, see cds/db/replay.py), behind the in-process cache.

A token is recorded first in the in-process cache (`ReplayCache`: per-issuer quota, and a replay
within this process is refused without a database round trip), then with one
`INSERT ... ON CONFLICT` in the database: a live row already there means another worker or instance
accepted the token. Rows carry the token's expiry (exp + clock skew) and are deleted by the
feedback store's retention loop. A restart keeps them, so a token stays single-use across restarts.

The write is on the hook path (the answer depends on it), so it is made cheap rather than durable
to the disk: SQLite writes these rows on their own connection with `synchronous=NORMAL` (WAL keeps
each commit atomic; no fsync per commit), PostgreSQL on connections with `synchronous_commit=off`
(the commit returns before the WAL is flushed). A power cut or a database crash can forget the last
moments of tokens, which then could be replayed within their remaining lifetime (minutes).

When the database cannot be reached (or takes longer than `replay_db_timeout_seconds`, 0.2 s), tokens are checked
against the in-process cache only: an ERROR is logged (at most every 10 s) and
`cds_replay_store_fallback_total` counts each such token; the database is tried again after
RETRY_SECONDS (RETRY_AFTER_TIMEOUT_SECONDS after a slow answer). Replays across workers or instances go undetected meanwhile; within the process
they are still refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from cds.auth.replay import ReplayCache
from cds.db import replay as seen
from cds.db import sqlite as sqlite_db
from cds.db.urls import database_url, is_postgres, sqlite_path
from cds.runtime.settings import Settings

log = logging.getLogger("cds.auth")

OPEN_TIMEOUT_SECONDS = 5.0  # start-up: connect and migrate
RETRY_SECONDS = 5.0  # after a failure, the database is left alone this long
RETRY_AFTER_TIMEOUT_SECONDS = 1.0  # after a slow answer (a checkpoint, a busy machine): shorter
LOG_EVERY_SECONDS = 10.0


class _SeenSet(Protocol):
    async def open(self, now_ms: int) -> None: ...
    async def insert(self, iss: str, jti: str, expires_ms: int, now_ms: int) -> bool: ...
    async def close(self) -> None: ...


Row = tuple[str, str, int]  # iss, jti, expires_ms


class GroupWrite:
    """Tokens that arrive while a write is in flight are written together by the next one (one
    transaction and thread hop on SQLite, one round trip on PostgreSQL): under concurrent hooks the
    cost per token falls instead of queueing one write behind another."""

    def __init__(self, write_many: Callable[[list[Row], int], Awaitable[list[bool]]]) -> None:
        self.write_many = write_many
        self._queue: list[tuple[Row, int, asyncio.Future[bool]]] = []
        self._task: asyncio.Task[None] | None = None

    async def insert(self, row: Row, now_ms: int) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((row, now_ms, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="cds-replay-write")
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            first: dict[tuple[str, str], int] = {}  # a key twice in one batch: the first decides
            rows: list[Row] = []
            for row, _, _ in batch:
                if (row[0], row[1]) not in first:
                    first[(row[0], row[1])] = len(rows)
                    rows.append(row)
            try:
                fresh = await self.write_many(rows, max(now for _, now, _ in batch))
            except Exception as e:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            taken: set[int] = set()
            for row, _, future in batch:
                i = first[(row[0], row[1])]
                if not future.done():
                    future.set_result(fresh[i] and i not in taken)
                taken.add(i)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class SQLiteSeenSet:
    """The seen-set in the SQLite file: one thread, one connection with synchronous=NORMAL."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="cds-replay-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._group = GroupWrite(self._write_many)

    def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._conn is None:
            conn = sqlite_db.connect(self.path, synchronous="NORMAL")
            conn.execute("PRAGMA busy_timeout=1000")  # the writer lock is held for milliseconds
            self._conn = conn
        return fn(self._conn)

    async def open(self, now_ms: int) -> None:
        await asyncio.get_running_loop().run_in_executor(
            self._thread, self._run, lambda c: sqlite_db.migrate(c, now_ms)
        )

    async def insert(self, iss: str, jti: str, expires_ms: int, now_ms: int) -> bool:
        return await self._group.insert((iss, jti, expires_ms), now_ms)

    async def _write_many(self, rows: list[Row], now_ms: int) -> list[bool]:
        def run(conn: sqlite3.Connection) -> list[bool]:
            if len(rows) == 1:  # autocommit: one statement is its own transaction
                iss, jti, exp = rows[0]
                params = {"iss": iss, "jti": jti, "expires_ms": exp, "now_ms": now_ms}
                return [conn.execute(seen.REMEMBER, params).rowcount == 1]
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = [
                    conn.execute(
                        seen.REMEMBER, {"iss": iss, "jti": jti, "expires_ms": exp, "now_ms": now_ms}
                    ).rowcount
                    == 1
                    for iss, jti, exp in rows
                ]
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return out

        return await asyncio.get_running_loop().run_in_executor(self._thread, self._run, run)

    async def close(self) -> None:
        await self._group.close()

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._thread, shut)
        self._thread.shutdown(wait=True)


# Many tokens in one statement; RETURNING names the rows inserted (or taken over once expired).
_REMEMBER_MANY = """
INSERT INTO cds_replay (iss, jti, expires_ms)
SELECT * FROM unnest(%(iss)s::text[], %(jti)s::text[], %(expires_ms)s::bigint[])
ON CONFLICT (iss, jti) DO UPDATE SET expires_ms = excluded.expires_ms
WHERE cds_replay.expires_ms < %(now_ms)s
RETURNING iss, jti
"""


class PostgresSeenSet:
    """The seen-set in PostgreSQL: a small pool of autocommit connections, synchronous_commit=off."""

    def __init__(self, url: str, timeout: float) -> None:
        from psycopg_pool import AsyncConnectionPool

        from cds.db.postgres import sql

        self._remember = sql(seen.REMEMBER)
        self._group = GroupWrite(self._write_many)
        self.pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=4,
            open=False,
            configure=self._configure,
            kwargs={"autocommit": True, "connect_timeout": 2, "application_name": "cds-replay"},
            timeout=timeout,
        )

    @staticmethod
    async def _configure(conn: Any) -> None:
        await conn.execute("SET synchronous_commit = off")

    async def open(self, now_ms: int) -> None:
        from cds.db import postgres as pg

        if self.pool.closed:
            await self.pool.open(wait=False)  # connects in the background, retrying
        async with self.pool.connection(timeout=OPEN_TIMEOUT_SECONDS) as conn:
            await pg.migrate(conn, now_ms)

    async def insert(self, iss: str, jti: str, expires_ms: int, now_ms: int) -> bool:
        return await self._group.insert((iss, jti, expires_ms), now_ms)

    async def _write_many(self, rows: list[Row], now_ms: int) -> list[bool]:
        async with self.pool.connection() as conn:
            if len(rows) == 1:
                iss, jti, exp = rows[0]
                params = {"iss": iss, "jti": jti, "expires_ms": exp, "now_ms": now_ms}
                return [(await conn.execute(self._remember, params)).rowcount == 1]
            cols = list(zip(*rows, strict=True))
            params = {
                "iss": list(cols[0]),
                "jti": list(cols[1]),
                "expires_ms": list(cols[2]),
                "now_ms": now_ms,
            }
            cur = await conn.execute(_REMEMBER_MANY, params)
            fresh = {(i, j) for i, j in await cur.fetchall()}
        return [(iss, jti) in fresh for iss, jti, _ in rows]

    async def close(self) -> None:
        await self._group.close()
        await self.pool.close()


def seen_set_for(settings: Settings) -> _SeenSet:
    """The seen-set in the database of `settings.database_url` (the feedback store's)."""
    url = database_url(settings)
    path = sqlite_path(url)
    if path is not None:
        return SQLiteSeenSet(path)
    if is_postgres(url):
        return PostgresSeenSet(url, settings.replay_db_timeout_seconds)
    raise ValueError("database_url must be sqlite:///PATH or postgresql://...")


class SharedReplayCache:
    """Replay protection for all workers and instances on one database; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_fallback: Callable[[], None] | None = None,
        front: ReplayCache | None = None,
        seen_set: _SeenSet | None = None,
    ) -> None:
        self.front = front if front is not None else ReplayCache()
        self.db = seen_set or seen_set_for(settings)
        self.on_fallback = on_fallback or (lambda: None)
        self.timeout = settings.replay_db_timeout_seconds
        self.fallbacks = 0  # tokens checked in this process only
        self._ready = False
        self._retry_at = 0.0
        self._logged_at = float("-inf")
        self._open_lock = asyncio.Lock()
        self._closed = False

    async def start(self) -> None:
        """Open the database and create the table; if it cannot, start on the in-process cache."""
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_SECONDS):
                await self._open()
        except Exception as e:
            self._retry_at = time.monotonic() + RETRY_SECONDS
            log.error(
                "replay store: database unavailable at start-up, checking tokens in this process only "
                "until it answers (replays across workers and instances go undetected): %r",
                e,
            )

    async def _open(self) -> None:
        async with self._open_lock:
            if not self._ready:
                await self.db.open(int(time.time() * 1000))
                self._ready = True

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.db.close()

    async def remember(self, iss: str, jti: str, expires_at: float) -> bool:
        """Record a token; False if any worker or instance has seen this (iss, jti) while it lives.

        Raises ReplayQuotaFull when this issuer's in-process share is full of live tokens.
        """
        if not self.front.add(iss, jti, expires_at):
            return False
        now = time.monotonic()
        if now < self._retry_at:
            self._fall_back(None)
            return True
        try:
            async with asyncio.timeout(self.timeout):
                if not self._ready:
                    await self._open()
                now_ms = int(time.time() * 1000)
                fresh = await self.db.insert(iss, jti, int(expires_at * 1000), now_ms)
        except Exception as e:  # any database failure: this process's cache decides alone
            self._retry_at = now + (
                RETRY_AFTER_TIMEOUT_SECONDS if isinstance(e, TimeoutError) else RETRY_SECONDS
            )
            self._fall_back(e)
            return True
        if self._retry_at:
            self._retry_at = 0.0
            log.warning("replay store: database available again; tokens checked across instances")
        return fresh

    def _fall_back(self, error: Exception | None) -> None:
        self.fallbacks += 1
        self.on_fallback()
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_SECONDS:
            self._logged_at = now
            log.error(
                "replay store: database unavailable (%s); tokens checked in this process only, replays "
                "across workers and instances go undetected (%d so far; metric cds_replay_store_fallback)",
                repr(error) if error else "retrying shortly",
                self.fallbacks,
            )
