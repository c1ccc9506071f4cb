"""The replay cache: one use per (iss, jti) while the token lives; bounded memory."""

from __future__ import annotations

import pytest

from cds.auth.replay import ReplayCache, ReplayCacheFull


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_seen_until_expiry_then_forgotten():
    clock = Clock()
    cache = ReplayCache(clock=clock)
    assert cache.add("iss", "a", expires_at=1100)
    assert not cache.add("iss", "a", expires_at=1100)
    assert cache.add("other-iss", "a", expires_at=1100)  # jti is unique per issuer
    clock.now = 1101
    assert cache.add("iss", "b", expires_at=1200)
    assert len(cache) == 1  # both expired entries evicted


def test_bounded_oldest_expired_evicted_first():
    clock = Clock()
    cache = ReplayCache(max_entries=3, clock=clock)
    for i, exp in enumerate([1050, 1010, 1100]):
        cache.add("iss", str(i), expires_at=exp)
    with pytest.raises(ReplayCacheFull):  # all live: refuse rather than forget a live jti
        cache.add("iss", "x", expires_at=1300)
    clock.now = 1020  # only "1" (exp 1010) has expired
    assert cache.add("iss", "x", expires_at=1300)
    assert not cache.add("iss", "0", expires_at=1050)  # still remembered
    assert len(cache) == 3
