"""SQLite backend: one file in WAL mode, the default for a single instance.

All writes go through one dedicated thread and connection (SQLite has one writer at a time; this
avoids lock contention inside the process), reads through a small pool of threads with their own
connections (WAL lets them read while the writer commits). `synchronous=FULL` makes every commit
durable before it returns, so a feedback 200 survives a crash or power loss.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from cds.feedback import migrations, queries
from cds.feedback.records import (
    CardRecord,
    FeedbackRecord,
    FeedbackRequest,
    RecentCard,
    card_params,
    feedback_params,
)
from cds.feedback.store import SummaryRows
from cds.feedback.validate import FeedbackError, match_cards

T = TypeVar("T")


class SQLiteBackend:
    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="cds-sqlite-write")
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="cds-sqlite-read")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=10000")
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
        def run(conn: sqlite3.Connection) -> int:
            conn.execute(migrations.VERSION_TABLE)
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM cds_schema_version").fetchone()[0]
            for m in migrations.pending(current):
                for statement in m.statements(self.dialect):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO cds_schema_version (version, name, applied_ms) VALUES (?, ?, ?)",
                    (m.version, m.name, now_ms),
                )
                current = m.version
            return current

        return await self._write(run)

    async def write_cards(self, rows: Sequence[CardRecord]) -> None:
        params = [card_params(r) for r in rows]

        def run(conn: sqlite3.Connection) -> None:
            for chunk in _chunks(params, ROWS_PER_STATEMENT):
                conn.execute(
                    *_multi_row(queries.CARD_COLUMNS, "cds_card", chunk, "ON CONFLICT (uuid) DO NOTHING")
                )

        await self._write(run)

    async def recent_cards(self, service: str, patient_key: str, since_ms: int) -> list[RecentCard]:
        args = {"service": service, "patient_key": patient_key, "since": since_ms}
        rows = await self._read(lambda conn: conn.execute(queries.RECENT_CARDS, args).fetchall())
        return [RecentCard(k, i, t, bool(o)) for k, i, t, o in rows]

    async def store_feedback(self, requests: Sequence[FeedbackRequest]) -> list[int | FeedbackError]:
        def run(conn: sqlite3.Connection) -> list[int | FeedbackError]:
            # Checked in Python against one lookup, then one multi-row INSERT: few SQLite calls, so
            # few GIL hand-overs between this thread and the event loop answering hooks.
            uuids = sorted({e.card for r in requests for e in r.entries})
            issued: dict[str, dict[str, tuple[str, ...]]] = {}
            for chunk in _chunks(uuids, ROWS_PER_STATEMENT):
                marks = ",".join("?" * len(chunk))
                query = f"SELECT uuid, service, suggestions FROM cds_card WHERE uuid IN ({marks})"
                for uuid, service, suggestions in conn.execute(query, chunk).fetchall():
                    issued.setdefault(service, {})[uuid] = tuple(json.loads(suggestions))
            results: list[int | FeedbackError] = []
            rows: list[tuple[int, FeedbackRecord]] = []
            for i, req in enumerate(requests):
                try:
                    checked = match_cards(
                        req.service, list(req.entries), issued.get(req.service, {}), req.received_ms
                    )
                except FeedbackError as e:
                    results.append(e)
                    continue
                results.append(0)
                rows += [(i, r) for r in checked]
            new: set[str] = set()
            for chunk in _chunks(rows, ROWS_PER_STATEMENT):
                sql, params = _multi_row(
                    queries.FEEDBACK_COLUMNS, "cds_feedback", [feedback_params(r) for _, r in chunk],
                    "ON CONFLICT (entry_key) DO NOTHING RETURNING entry_key",
                )  # fmt: skip
                new.update(k for (k,) in conn.execute(sql, params).fetchall())
            for i, r in rows:
                if r.entry_key in new:  # counted once, for the first request that carried it
                    new.discard(r.entry_key)
                    results[i] += 1  # type: ignore[operator]
            return results

        return await self._write(run)

    async def purge(self, cutoff_ms: int) -> int:
        total = 0
        while True:  # one transaction per chunk, so hooks' card writes interleave
            n = await self._write(lambda conn: conn.execute(queries.PURGE, {"cutoff": cutoff_ms}).rowcount)
            total += n
            if n < queries.PURGE_CHUNK:
                return total

    async def summary(self, since_ms: int, until_ms: int, service: str | None, bucket_ms: int) -> SummaryRows:
        args = {"since": since_ms, "until": until_ms, "service": service, "bucket": bucket_ms}

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


ROWS_PER_STATEMENT = 90  # 90 rows x <= 10 columns stays under SQLite's oldest variable limit (999)
C = TypeVar("C")


def _chunks(items: Sequence[C], size: int) -> list[Sequence[C]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _multi_row(
    columns: tuple[str, ...], table: str, rows: Sequence[dict[str, Any]], tail: str
) -> tuple[str, list]:
    """One INSERT of many rows (one SQLite call instead of one per row)."""
    one = "(" + ",".join("?" * len(columns)) + ")"
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES {','.join([one] * len(rows))} {tail}"
    return sql, [row[c] for row in rows for c in columns]
