"""PostgreSQL plumbing (psycopg 3): placeholder rewriting and the schema migration under an
advisory lock, so instances starting together migrate once."""

from __future__ import annotations

import re

from psycopg import AsyncConnection

from cds.db import migrations

MIGRATION_LOCK = 0x0CD5FEED  # pg_advisory_xact_lock key for schema migrations
MIGRATION_LOCK_TIMEOUT_MS = 30_000
_PARAM = re.compile(r"(?<![:\w]):(\w+)")


def sql(query: str) -> str:
    """A statement written with `:name` parameters, in psycopg's %(name)s placeholders."""
    return _PARAM.sub(r"%(\1)s", query)


async def migrate(conn: AsyncConnection, now_ms: int) -> int:
    """Apply pending migrations in one transaction under the advisory lock; the version."""
    async with conn.transaction():
        # Never wait forever behind another instance's migration (or a session that died holding
        # the lock): fail, and let the caller report the database as unavailable.
        await conn.execute(f"SET LOCAL lock_timeout = '{MIGRATION_LOCK_TIMEOUT_MS}ms'")
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(migrations.VERSION_TABLE)
        cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM cds_schema_version")
        row = await cur.fetchone()
        current = int(row[0]) if row else 0
        for m in migrations.pending(current):
            for statement in m.statements("postgresql"):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO cds_schema_version (version, name, applied_ms) VALUES (%s, %s, %s)",
                (m.version, m.name, now_ms),
            )
            current = m.version
    return current
