"""Retention: cards and their feedback are deleted `settings.retention_days` after issue, replay
rows (cds.db.replay) once their token has expired.

The purge runs once at start-up and then every few minutes in the background; with several
instances on one database each runs it, which is harmless (deleting is idempotent).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("cds.feedback")


def cancelled() -> bool:
    """Whether this task is being cancelled (a driver may turn the CancelledError into its own)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def retention_loop(
    purge: Callable[[], Awaitable[int]], retention_days: int, interval_seconds: float
) -> None:
    """Run `purge` (expired rows; returns cards deleted) now and every `interval_seconds`; errors are
    logged, never raised."""
    while True:
        try:
            deleted = await purge()
            if deleted:
                log.info("retention: deleted %d cards older than %d days", deleted, retention_days)
        except Exception as e:
            log.error("retention purge failed (retrying in %.0fs): %r", interval_seconds, e)
        if cancelled():  # the database driver may have swallowed our cancellation
            raise asyncio.CancelledError
        await asyncio.sleep(interval_seconds)
