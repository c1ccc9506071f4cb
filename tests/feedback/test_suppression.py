"""Repeat-alert suppression policy (pure logic; the store tests cover it end to end)."""

from __future__ import annotations

import pytest

from cds.feedback.records import RecentCard
from cds.feedback.suppression import SuppressionPolicy
from cds.hooks.cards import Card, Source

MIN = 60_000
NOW = 1_000_000_000_000


def card(kind: str = "ddi:warfarin-nsaid", indicator: str = "warning") -> Card:
    return Card("Interaction", indicator, Source("test"), kind=kind)  # type: ignore[arg-type]


def shown(
    minutes_ago: float, kind: str = "ddi:warfarin-nsaid", indicator: str = "warning", overridden: bool = False
):
    return RecentCard(kind, indicator, NOW - int(minutes_ago * MIN), overridden)


POLICY = SuppressionPolicy.from_options({"suppress_minutes": 60, "suppress_overridden_minutes": 1440})


def test_default_is_off() -> None:
    policy = SuppressionPolicy.from_options({})
    assert not policy.enabled
    cards = [card()]
    assert policy.apply(cards, [shown(1)], NOW) == cards


@pytest.mark.parametrize(
    "options",
    [{"suppress_minutes": -1}, {"suppress_minutes": "60"}, {"suppress_overridden_minutes": True}],
)
def test_bad_options(options: dict) -> None:
    with pytest.raises(ValueError, match="suppress"):
        SuppressionPolicy.from_options(options)


def test_overridden_window_is_at_least_the_normal_one() -> None:
    p = SuppressionPolicy.from_options({"suppress_minutes": 30})
    assert p.window_ms == p.overridden_window_ms == 30 * MIN


@pytest.mark.parametrize(
    ("recent", "new_indicator", "quiet"),
    [
        ([shown(10)], "warning", True),  # same kind, same severity, within the window
        ([shown(10)], "info", True),  # lower severity
        ([shown(10)], "critical", False),  # severity rose
        ([shown(10, indicator="critical")], "critical", True),
        ([shown(61)], "warning", False),  # window passed
        ([shown(10, kind="ddi:other")], "warning", False),  # another kind
        ([shown(61, overridden=True)], "warning", True),  # overridden: quiet for a day
        ([shown(1441, overridden=True)], "warning", False),
        ([shown(61, overridden=True)], "critical", False),  # ... unless severity rose
    ],
)
def test_quiets(recent: list[RecentCard], new_indicator: str, quiet: bool) -> None:
    assert POLICY.quiets(card(indicator=new_indicator), recent, NOW) is quiet


def test_apply_keeps_order_and_other_cards() -> None:
    cards = [card(kind="a"), card(kind="ddi:warfarin-nsaid"), card(kind="b")]
    assert [c.kind for c in POLICY.apply(cards, [shown(5)], NOW)] == ["a", "b"]
