"""Schema versions of the service's database, applied in order at start-up (by the feedback store
and by the replay store, whichever opens it first).

A migration is never edited once released: add a new version instead. Each version lists its
statements per dialect; the backend runs all pending versions in one transaction under a lock, so
several instances starting together against one PostgreSQL database migrate it once.
Times are epoch milliseconds (UTC) in both dialects, which keeps analytics SQL portable.
"""

from __future__ import annotations

from dataclasses import dataclass


class SchemaError(RuntimeError):
    """The database was migrated by a newer version of cds than this one."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, dialect: str) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgresql


VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS cds_schema_version "
    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
)


def _v1(real: str, serial: str, boolean: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE cds_card (
            uuid TEXT PRIMARY KEY,
            service TEXT NOT NULL,
            kind TEXT NOT NULL,
            indicator TEXT NOT NULL,
            model_version TEXT,
            score {real},
            issued_ms BIGINT NOT NULL,
            patient_key TEXT NOT NULL,   -- HMAC of the patient id, never the id
            suggestions TEXT NOT NULL    -- JSON array of suggestion uuids
        )""",
        "CREATE INDEX cds_card_patient ON cds_card (service, patient_key, kind, issued_ms)",
        "CREATE INDEX cds_card_issued ON cds_card (issued_ms)",
        f"""CREATE TABLE cds_feedback (
            id {serial},
            card_uuid TEXT NOT NULL REFERENCES cds_card (uuid) ON DELETE CASCADE,
            service TEXT NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN ('accepted', 'overridden')),
            accepted_suggestions TEXT NOT NULL,  -- JSON array of suggestion uuids
            reason_system TEXT,
            reason_code TEXT,
            has_comment {boolean} NOT NULL,      -- the comment itself is never stored
            outcome_ms BIGINT NOT NULL,
            received_ms BIGINT NOT NULL,
            entry_key TEXT NOT NULL UNIQUE       -- idempotency: the same entry is stored once
        )""",
        "CREATE INDEX cds_feedback_card ON cds_feedback (card_uuid, outcome_ms)",
    )


def _v2(table_options: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE cds_replay (
            iss TEXT NOT NULL,
            jti TEXT NOT NULL,
            expires_ms BIGINT NOT NULL,  -- the token's exp + clock skew; purged after it
            PRIMARY KEY (iss, jti)
        ){table_options}""",
        "CREATE INDEX cds_replay_expires ON cds_replay (expires_ms)",
    )


# Each card remembers whom it was issued to (feedback and summaries are scoped to that client) and
# the override reasons it offered (feedback may only name one of those).
_V3 = (
    "ALTER TABLE cds_card ADD COLUMN issuer TEXT",  # NULL: issued before version 3, nobody's
    "ALTER TABLE cds_card ADD COLUMN tenant TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE cds_card ADD COLUMN override_reasons TEXT NOT NULL DEFAULT '[]'",  # JSON [[system, code]]
    "CREATE INDEX cds_card_owner ON cds_card (issuer, tenant, issued_ms)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "cards and feedback",
        sqlite=_v1("REAL", "INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER"),
        postgresql=_v1("DOUBLE PRECISION", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BOOLEAN"),
    ),
    Migration(2, "replay seen-set", sqlite=_v2(" WITHOUT ROWID"), postgresql=_v2("")),
    Migration(3, "card issuer, tenant and offered override reasons", sqlite=_V3, postgresql=_V3),
)
LATEST = MIGRATIONS[-1].version


def pending(current: int) -> list[Migration]:
    """The migrations to apply on a database at `current` version (0: empty database)."""
    if current > LATEST:
        raise SchemaError(
            f"the feedback database is at schema version {current}, newer than this cds "
            f"understands ({LATEST}); upgrade cds or point CDS_DATABASE_URL elsewhere"
        )
    return [m for m in MIGRATIONS if m.version > current]
