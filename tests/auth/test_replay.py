"""The in-process replay cache: one use per (iss, jti) while the token lives; bounded per issuer,
so one client filling its share never locks out another (issue 15, finding 4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds.auth.replay import ReplayCache, ReplayQuotaFull


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_seen_until_expiry_then_forgotten():
    clock = Clock()
    cache = ReplayCache(clock=clock)
    assert cache.add("iss", "a", expires_at=1100)
    assert not cache.add("iss", "a", expires_at=1100)
    assert cache.seen("iss", "a") and not cache.seen("iss", "b")
    assert cache.add("other-iss", "a", expires_at=1100)  # jti is unique per issuer
    clock.now = 1101
    assert not cache.seen("iss", "a")
    assert cache.add("iss", "b", expires_at=1200)
    assert len(cache) == 2  # "a" of iss evicted; other-iss's "a" goes at its next add


def test_quota_is_per_issuer_oldest_expired_evicted_first():
    clock = Clock()
    cache = ReplayCache(max_per_issuer=3, clock=clock)
    for i, exp in enumerate([1050, 1010, 1100]):
        cache.add("flood", str(i), expires_at=exp)
    with pytest.raises(ReplayQuotaFull):  # all live: refuse rather than forget a live jti
        cache.add("flood", "x", expires_at=1300)
    assert cache.add("quiet", "x", expires_at=1300)  # another issuer is not affected
    clock.now = 1020  # only "1" (exp 1010) has expired
    assert cache.add("flood", "x", expires_at=1300)
    assert not cache.add("flood", "0", expires_at=1050)  # still remembered
    with pytest.raises(ReplayQuotaFull):
        cache.add("flood", "y", expires_at=1300)


_ops = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),  # issuer
        st.sampled_from(["j1", "j2", "j3", "j4", "j5"]),  # jti
        st.integers(0, 30),  # lifetime
        st.integers(0, 10),  # time passing before the call
    ),
    max_size=60,
)


@given(_ops)
def test_matches_a_reference_model(ops):
    """Against the obvious dict: accepted iff not live; refused for quota iff the issuer's live
    entries fill it; never forgets a live token."""
    clock = Clock()
    cache = ReplayCache(max_per_issuer=3, clock=clock)
    live: dict[tuple[str, str], float] = {}
    for iss, jti, lifetime, wait in ops:
        clock.now += wait
        now = clock.now
        live = {k: exp for k, exp in live.items() if exp >= now}
        if (iss, jti) in live:
            assert cache.add(iss, jti, now + lifetime) is False
        elif sum(1 for i, _ in live if i == iss) >= 3:
            with pytest.raises(ReplayQuotaFull):
                cache.add(iss, jti, now + lifetime)
        else:
            assert cache.add(iss, jti, now + lifetime) is True
            live[(iss, jti)] = now + lifetime
