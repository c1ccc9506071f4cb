"""PostgreSQL backend (psycopg 3, async pool), for several service instances on one database.

Every statement runs in an explicit transaction that has committed before the call returns
(PostgreSQL's default synchronous_commit makes that durable). Migrations take a transaction-scoped
advisory lock, so instances starting together migrate once. Broken connections (a database
restart) are checked and replaced by the pool, which keeps trying to connect when the server is
down.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from cds.db import postgres as db
from cds.db import replay as seen
from cds.db.postgres import sql
from cds.feedback import queries
from cds.feedback.backend import SummaryRows
from cds.feedback.batch import Batch, card_uuids, issued_cards
from cds.feedback.records import CardRecord, FeedbackRequest, RecentCard, card_params
from cds.feedback.validate import FeedbackError

CONNECT_TIMEOUT_SECONDS = 5.0  # start-up and feedback wait this long for a connection
WRITE_CONNECT_TIMEOUT_SECONDS = 1.0  # the background card writer (it retries)
CHECK_AFTER_IDLE_SECONDS = 1.0  # connections idle longer than this are checked before use
INSERT_CARD = sql(queries.INSERT_CARD)
RECENT_CARDS = sql(queries.RECENT_CARDS)
PURGE = sql(queries.PURGE)
SUMMARY_OUTCOMES = sql(queries.SUMMARY_OUTCOMES)
SUMMARY_REASONS = sql(queries.SUMMARY_REASONS)
SUMMARY_SERIES = sql(queries.SUMMARY_SERIES)
PURGE_REPLAY = sql(seen.PURGE)


class PostgresBackend:
    dialect = "postgresql"

    def __init__(self, url: str, read_timeout: float, max_size: int = 8) -> None:
        self.url = url
        self.read_timeout = read_timeout
        self._last_used: weakref.WeakKeyDictionary[AsyncConnection, float] = weakref.WeakKeyDictionary()
        self.pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            check=self._check_if_idle,
            reset=self._mark_used,
            kwargs={"connect_timeout": 5, "application_name": "cds-feedback"},
            timeout=CONNECT_TIMEOUT_SECONDS,
        )

    # A connection used moments ago is known good: checking it costs a round trip per transaction.
    # One idle for longer (the database may have restarted meanwhile) is checked before use.
    async def _mark_used(self, conn: AsyncConnection) -> None:
        self._last_used[conn] = time.monotonic()

    async def _check_if_idle(self, conn: AsyncConnection) -> None:
        if time.monotonic() - self._last_used.get(conn, float("-inf")) > CHECK_AFTER_IDLE_SECONDS:
            await AsyncConnectionPool.check_connection(conn)

    async def migrate(self, now_ms: int) -> int:
        """Apply pending migrations; ConnectionError while the server cannot be reached."""
        if self.pool.closed:
            await self.pool.open(wait=False)  # connects in the background, retrying
        try:
            return await self._migrate(now_ms)
        except (PoolTimeout, psycopg.OperationalError) as e:
            raise ConnectionError(f"cannot reach the feedback database (CDS_DATABASE_URL): {e}") from None

    async def _migrate(self, now_ms: int) -> int:
        async with self.pool.connection(timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            return await db.migrate(conn, now_ms)

    async def write_cards(self, rows: Sequence[CardRecord]) -> None:
        # A short wait: the writer retries anyway, and an outage shows in the log within a second.
        async with (
            self.pool.connection(timeout=WRITE_CONNECT_TIMEOUT_SECONDS) as conn,
            conn.transaction(),
            conn.cursor() as cur,
        ):
            await cur.executemany(INSERT_CARD, [card_params(r) for r in rows])

    async def recent_cards(self, service: str, patient_key: str, since_ms: int) -> list[RecentCard]:
        args = {"service": service, "patient_key": patient_key, "since": since_ms}
        async with self.pool.connection(timeout=self.read_timeout) as conn:
            cur = await conn.execute(RECENT_CARDS, args)
            rows = await cur.fetchall()
        return [RecentCard(k, i, t, bool(o)) for k, i, t, o in rows]

    async def store_feedback(self, requests: Sequence[FeedbackRequest]) -> list[int | FeedbackError]:
        async with self.pool.connection() as conn:
            try:
                async with conn.transaction():
                    return await _store_batch(conn, requests)
            except (psycopg.errors.ForeignKeyViolation, psycopg.errors.DataError):
                pass  # one request is at fault: again, each in its own savepoint, to refuse it alone
            results: list[int | FeedbackError] = []
            async with conn.transaction():
                for req in requests:  # a nested transaction is a savepoint: a refused request is undone alone
                    try:
                        async with conn.transaction():
                            (result,) = await _store_batch(conn, [req])
                        results.append(result)
                    # the retention purge deleted the card meanwhile
                    except psycopg.errors.ForeignKeyViolation:
                        results.append(
                            FeedbackError("a card of this request has passed the retention period")
                        )
                    # a value PostgreSQL cannot store: this request only
                    except psycopg.errors.DataError as e:
                        results.append(FeedbackError(f"a value of this request cannot be stored: {e}"))
            return results

    async def purge(self, cutoff_ms: int) -> int:
        total = 0
        while True:
            async with self.pool.connection() as conn, conn.transaction():
                cur = await conn.execute(PURGE, {"cutoff": cutoff_ms})
                n = cur.rowcount
            total += n
            if n < queries.PURGE_CHUNK:
                return total

    async def purge_replay(self, now_ms: int) -> int:
        total = 0
        while True:
            async with self.pool.connection() as conn, conn.transaction():
                n = (await conn.execute(PURGE_REPLAY, {"now_ms": now_ms})).rowcount
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
        out = SummaryRows()
        async with self.pool.connection() as conn, conn.transaction():
            for name, query in (
                ("outcomes", SUMMARY_OUTCOMES),
                ("reasons", SUMMARY_REASONS),
                ("series", SUMMARY_SERIES),
            ):
                cur = await conn.execute(query, args)
                setattr(
                    out,
                    name,
                    [tuple(int(v) if _is_count(v) else v for v in row) for row in await cur.fetchall()],
                )
        return out

    async def counts(self) -> tuple[int, int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(queries.COUNTS)
            row = await cur.fetchone()
        cards, feedback = row if row is not None else (0, 0)  # COUNT(*) always returns a row
        return int(cards), int(feedback)

    async def close(self) -> None:
        await self.pool.close()


async def _store_batch(
    conn: AsyncConnection, requests: Sequence[FeedbackRequest]
) -> list[int | FeedbackError]:
    """The batch in two statements: one lookup of its cards, one INSERT of its rows (see batch.py)."""
    cur = await conn.execute(
        f"SELECT {queries.ISSUED_COLUMNS} FROM cds_card WHERE uuid = ANY(%s)", (card_uuids(requests),)
    )
    batch = Batch(requests, issued_cards(await cur.fetchall()))
    new: list[str] = []
    for statement, params in batch.inserts("%s"):
        cur = await conn.execute(statement, params)
        new += [k for (k,) in await cur.fetchall()]
    return batch.count_new(new)


def _is_count(v: object) -> bool:
    # SUM() over integers is NUMERIC in PostgreSQL (Decimal in Python); counts are ints.
    return type(v).__name__ == "Decimal"
