"""What the feedback store needs of a database backend (sqlite.py, postgres.py implement it).

Kept apart from store.py so the backends do not import the store that imports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cds.feedback.records import CardRecord, FeedbackRequest, RecentCard
from cds.feedback.validate import FeedbackError


@dataclass
class SummaryRows:
    """Raw aggregates for the analytics report (see queries.py for their columns)."""

    # service, kind, model_version, issued, accepted, overridden
    outcomes: list[tuple] = field(default_factory=list)
    # service, kind, reason_system, reason_code, cards
    reasons: list[tuple] = field(default_factory=list)
    # service, kind, bucket, issued, overridden
    series: list[tuple] = field(default_factory=list)


class Backend(Protocol):
    """What a database backend provides; implemented by sqlite.py and postgres.py."""

    dialect: str

    async def migrate(self, now_ms: int) -> int: ...
    async def write_cards(self, rows: Sequence[CardRecord]) -> None: ...
    async def recent_cards(self, service: str, patient_key: str, since_ms: int) -> list[RecentCard]: ...
    async def store_feedback(self, requests: Sequence[FeedbackRequest]) -> list[int | FeedbackError]:
        """Store requests in one transaction, each all or nothing: rows stored, or why refused."""
        ...

    async def purge(self, cutoff_ms: int) -> int: ...
    async def purge_replay(self, now_ms: int) -> int: ...
    async def summary(
        self,
        since_ms: int,
        until_ms: int,
        service: str | None,
        bucket_ms: int,
        issuer: str | None,
        tenant: str,
    ) -> SummaryRows: ...
    async def counts(self) -> tuple[int, int]: ...
    async def close(self) -> None: ...
