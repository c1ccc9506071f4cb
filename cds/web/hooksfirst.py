"""Hook calls go first: other requests to the CDS endpoints wait while hooks are being answered.

A clinician waits on every hook answer; nobody waits on feedback or on a report. All of them share
one event loop per worker, and a request that is being worked on cannot be interrupted, so a hook
arriving behind a burst of feedback posts would wait for all of them. This middleware counts the
hook calls in flight and holds feedback posts and summaries at the door until there are none (or
for at most `max_wait_seconds`, so they are never starved), which keeps feedback load from
showing in the hooks' latency (issue #4: not more than 10% at p99 with 50 feedback clients).
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Receive, Scope, Send

MAX_WAIT_SECONDS = 0.25


def is_hook_call(scope: Scope) -> bool:
    """`POST /cds-services/{id}`: a hook call (one path segment after /cds-services)."""
    path: str = scope["path"]
    return scope.get("method") == "POST" and path.startswith("/cds-services/") and path.count("/") == 2


def can_wait(scope: Scope) -> bool:
    """Feedback posts and summaries: work that no clinician is waiting on."""
    path: str = scope["path"]
    return path.startswith("/feedback/") or (path.startswith("/cds-services/") and path.endswith("/feedback"))


class HooksFirst:
    def __init__(self, app: ASGIApp, max_wait_seconds: float = MAX_WAIT_SECONDS) -> None:
        self.app = app
        self.max_wait = max_wait_seconds
        self.in_flight = 0
        self._idle: asyncio.Event | None = None  # created on first use, inside the server's loop

    def _event(self) -> asyncio.Event:
        if self._idle is None:
            self._idle = asyncio.Event()
            self._idle.set()
        return self._idle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif is_hook_call(scope):
            idle = self._event()
            self.in_flight += 1
            idle.clear()
            try:
                await self.app(scope, receive, send)
            finally:
                self.in_flight -= 1
                if self.in_flight == 0:
                    idle.set()
        else:
            if self.in_flight and can_wait(scope):
                with contextlib.suppress(TimeoutError):  # hooks kept coming: go ahead rather than starve
                    await asyncio.wait_for(self._event().wait(), self.max_wait)
            await self.app(scope, receive, send)
