"""SQLite plumbing: connections in WAL mode, and the schema migration (one writer at a time)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

from cds.db import migrations


def connect(path: str | Path, synchronous: Literal["FULL", "NORMAL"] = "FULL") -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, foreign keys on.

    `synchronous=FULL` fsyncs every commit (feedback: a 200 survives a power cut); `NORMAL` fsyncs
    only at WAL checkpoints (replay rows: still atomic and crash-safe for the process, only the
    last commits may be lost on power loss, which reopens a window of minutes for a captured token).
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def migrate(conn: sqlite3.Connection, now_ms: int) -> int:
    """Apply pending migrations in one IMMEDIATE transaction (other processes wait); the version."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(migrations.VERSION_TABLE)
        current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM cds_schema_version").fetchone()[0]
        for m in migrations.pending(current):
            for statement in m.statements("sqlite"):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO cds_schema_version (version, name, applied_ms) VALUES (?, ?, ?)",
                (m.version, m.name, now_ms),
            )
            current = m.version
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return current
