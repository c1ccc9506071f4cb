"""The replay cache: each (issuer, jti) is accepted once within the token's lifetime.

Bounded in memory: entries leave when their token expires (oldest first); when the cache is full
of live entries, new tokens are refused rather than weakening replay protection.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

DEFAULT_MAX_ENTRIES = 200_000


class ReplayCacheFull(Exception):
    """Every slot holds a token that has not expired yet."""


class ReplayCache:
    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, iss: str, jti: str, expires_at: float) -> bool:
        """Record a token; False if this (iss, jti) was already seen and has not expired.

        Raises ReplayCacheFull when no slot can be freed.
        """
        now = self.clock()
        self._purge(now)
        key = (iss, jti)
        if key in self._expiry:
            return False
        if len(self._expiry) >= self.max_entries:
            raise ReplayCacheFull
        self._expiry[key] = expires_at
        heapq.heappush(self._heap, (expires_at, key))
        return True

    def _purge(self, now: float) -> None:
        heap, expiry = self._heap, self._expiry
        while heap and heap[0][0] < now:
            _, key = heapq.heappop(heap)
            expiry.pop(key, None)
