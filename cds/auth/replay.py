"""The in-process replay cache: each (issuer, jti) is accepted once within the token's lifetime.

Bounded per issuer: entries leave when their token expires (oldest first); when one issuer's share
is full of live entries, that issuer's new tokens are refused (rather than weakening replay
protection) while every other issuer keeps its own share. So a client flooding the service locks
out only itself. It is the front of the shared store (`cds.auth.replay_store`), and the whole of
replay protection when that store is unavailable.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

# Live tokens remembered per issuer: with 5-minute tokens (+ 60 s skew) that is ~270 calls per
# second per issuer and process, sustained; ~25 MB at most per issuer.
DEFAULT_MAX_PER_ISSUER = 100_000


class ReplayQuotaFull(Exception):
    """Every slot of this issuer holds a token that has not expired yet."""


class _Seen:
    __slots__ = ("expiry", "heap")

    def __init__(self) -> None:
        self.expiry: dict[str, float] = {}
        self.heap: list[tuple[float, str]] = []

    def purge(self, now: float) -> None:
        heap, expiry = self.heap, self.expiry
        while heap and heap[0][0] < now:
            _, jti = heapq.heappop(heap)
            if expiry.get(jti, now) < now:
                del expiry[jti]


class ReplayCache:
    def __init__(
        self, max_per_issuer: int = DEFAULT_MAX_PER_ISSUER, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_per_issuer = max_per_issuer
        self.clock = clock
        self._issuers: dict[str, _Seen] = {}

    def __len__(self) -> int:
        return sum(len(s.expiry) for s in self._issuers.values())

    def seen(self, iss: str, jti: str) -> bool:
        """Whether this (iss, jti) is remembered and its token has not expired."""
        s = self._issuers.get(iss)
        return s is not None and s.expiry.get(jti, float("-inf")) >= self.clock()

    def add(self, iss: str, jti: str, expires_at: float) -> bool:
        """Record a token; False if this (iss, jti) was already seen and has not expired.

        Raises ReplayQuotaFull when none of this issuer's slots can be freed.
        """
        s = self._issuers.get(iss)
        if s is None:
            s = self._issuers[iss] = _Seen()
        now = self.clock()
        s.purge(now)
        if s.expiry.get(jti, float("-inf")) >= now:
            return False
        if len(s.expiry) >= self.max_per_issuer:
            raise ReplayQuotaFull
        s.expiry[jti] = expires_at
        heapq.heappush(s.heap, (expires_at, jti))
        return True

    async def remember(self, iss: str, jti: str, expires_at: float) -> bool:
        """`add`, as the Authenticator calls it (the shared store's is asynchronous)."""
        return self.add(iss, jti, expires_at)
