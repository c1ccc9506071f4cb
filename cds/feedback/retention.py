"""Retention: cards and their feedback are deleted `settings.retention_days` after issue.

The purge runs once at start-up and then every hour in the background; with several instances on
one PostgreSQL database each runs it, which is harmless (deleting is idempotent).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cds.feedback.store import FeedbackStore

log = logging.getLogger("cds.feedback")


def cancelled() -> bool:
    """Whether this task is being cancelled (a driver may turn the CancelledError into its own)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def retention_loop(store: FeedbackStore, interval_seconds: float) -> None:
    """Purge expired rows now and every `interval_seconds`; errors are logged, never raised."""
    while True:
        try:
            deleted = await store.purge_expired()
            if deleted:
                log.info(
                    "retention: deleted %d cards older than %d days", deleted, store.settings.retention_days
                )
        except Exception as e:
            log.error("retention purge failed (retrying in %.0fs): %r", interval_seconds, e)
        if cancelled():  # the database driver may have swallowed our cancellation
            raise asyncio.CancelledError
        await asyncio.sleep(interval_seconds)
