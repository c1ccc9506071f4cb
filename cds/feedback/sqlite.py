"""SQLite backend: one file in WAL mode, the default for a single instance.

All writes go through one dedicated thread and connection (SQLite has one writer at a time; this
avoids lock contention inside the process), reads through a small pool of threads with their own
connections (WAL lets them read while the writer commits). `synchronous=FULL` makes every commit
durable before it returns, so a feedback 200 survives a crash or power loss.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from cds.db import replay as seen
from cds.db import sqlite as db
from cds.feedback import queries
from cds.feedback.backend import SummaryRows
from cds.feedback.batch import Batch, card_uuids, chunks, issued_cards, multi_row
from cds.feedback.records import CardRecord, FeedbackRequest, RecentCard, card_params
from cds.feedback.validate import FeedbackError

T = TypeVar("T")


class SQLiteBackend:
    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="cds-sqlite-write")
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="cds-sqlite-read")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = db.connect(self.path, synchronous="FULL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, lambda: fn(self._conn()))

    async def migrate(self, now_ms: int) -> int:
        return await asyncio.get_running_loop().run_in_executor(
            self._writer, lambda: db.migrate(self._conn(), now_ms)
        )

    async def write_cards(self, rows: Sequence[CardRecord]) -> None:
        params = [card_params(r) for r in rows]

        def run(conn: sqlite3.Connection) -> None:
            for chunk in chunks(params):
                conn.execute(
                    *multi_row(queries.CARD_COLUMNS, "cds_card", chunk, "ON CONFLICT (uuid) DO NOTHING", "?")
                )

        await self._write(run)

    async def recent_cards(self, service: str, patient_key: str, since_ms: int) -> list[RecentCard]:
        args = {"service": service, "patient_key": patient_key, "since": since_ms}
        rows = await self._read(lambda conn: conn.execute(queries.RECENT_CARDS, args).fetchall())
        return [RecentCard(k, i, t, bool(o)) for k, i, t, o in rows]

    async def store_feedback(self, requests: Sequence[FeedbackRequest]) -> list[int | FeedbackError]:
        def run(conn: sqlite3.Connection) -> list[int | FeedbackError]:
            found: list[tuple] = []
            for chunk in chunks(card_uuids(requests)):
                marks = ",".join("?" * len(chunk))
                query = f"SELECT {queries.ISSUED_COLUMNS} FROM cds_card WHERE uuid IN ({marks})"
                found += conn.execute(query, chunk).fetchall()
            batch = Batch(requests, issued_cards(found))
            new = [k for sql, params in batch.inserts("?") for (k,) in conn.execute(sql, params).fetchall()]
            return batch.count_new(new)

        return await self._write(run)

    async def purge(self, cutoff_ms: int) -> int:
        total = 0
        while True:  # one transaction per chunk, so hooks' card writes interleave
            n = await self._write(lambda conn: conn.execute(queries.PURGE, {"cutoff": cutoff_ms}).rowcount)
            total += n
            if n < queries.PURGE_CHUNK:
                return total

    async def purge_replay(self, now_ms: int) -> int:
        total = 0
        while True:
            n = await self._write(lambda conn: conn.execute(seen.PURGE, {"now_ms": now_ms}).rowcount)
            total += n
            if n < seen.PURGE_CHUNK:
                return total

    async def summary(
        self,
        since_ms: int,
        until_ms: int,
        service: str | None,
        bucket_ms: int,
        issuer: str | None,
        tenant: str,
    ) -> SummaryRows:
        args = {"since": since_ms, "until": until_ms, "service": service, "bucket": bucket_ms,
                "issuer": issuer, "tenant": tenant}  # fmt: skip

        def run(conn: sqlite3.Connection) -> SummaryRows:
            return SummaryRows(
                outcomes=conn.execute(queries.SUMMARY_OUTCOMES, args).fetchall(),
                reasons=conn.execute(queries.SUMMARY_REASONS, args).fetchall(),
                series=conn.execute(queries.SUMMARY_SERIES, args).fetchall(),
            )

        return await self._read(run)

    async def counts(self) -> tuple[int, int]:
        return await self._read(lambda conn: tuple(conn.execute(queries.COUNTS).fetchone()))

    async def close(self) -> None:
        def shutdown() -> None:
            self._writer.shutdown(wait=True)
            self._readers.shutdown(wait=True)

        await asyncio.to_thread(shutdown)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
