"""Repeat-alert suppression: fewer, better cards (alert fatigue is the main failure of CDS).

Per-service options (`[services.<id>]` in the settings TOML):

- `suppress_minutes` (default 0 = off): a card of the same kind for the same patient is not shown
  again within this many minutes of the last time it was shown, unless its severity (indicator:
  info < warning < critical) is higher than that of every card of the kind shown in the window.
- `suppress_overridden_minutes` (default 0 = same as suppress_minutes): a card the clinician
  overrode stays quiet for this long instead.

Off by default because hiding a card is a clinical decision the deploying site should make.
Suppressed cards are not recorded, so the window runs from the last card actually shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cds.feedback.records import RecentCard
from cds.hooks.cards import SEVERITY_RANK, Card

OPTION_KEYS = ("suppress_minutes", "suppress_overridden_minutes")


@dataclass(frozen=True, slots=True)
class SuppressionPolicy:
    window_ms: int = 0
    overridden_window_ms: int = 0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SuppressionPolicy:
        """The policy for a service's options; ValueError naming the bad option."""
        values = {}
        for key in OPTION_KEYS:
            raw = options.get(key, 0)
            if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
                raise ValueError(f"{key} must be a number of minutes >= 0, not {raw!r}")
            values[key] = int(raw * 60_000)
        window = values["suppress_minutes"]
        return cls(window_ms=window, overridden_window_ms=max(window, values["suppress_overridden_minutes"]))

    @property
    def enabled(self) -> bool:
        return self.overridden_window_ms > 0

    @property
    def lookback_ms(self) -> int:
        """How far back shown cards matter."""
        return max(self.window_ms, self.overridden_window_ms)

    def quiets(self, card: Card, recent: Iterable[RecentCard], now_ms: int) -> bool:
        """Whether a recent card of the same kind, at least as severe, keeps this card quiet."""
        rank = SEVERITY_RANK[card.indicator]
        for r in recent:
            if r.kind != card.kind or SEVERITY_RANK.get(r.indicator, 0) < rank:
                continue
            window = self.overridden_window_ms if r.overridden else self.window_ms
            if now_ms - r.issued_ms < window:
                return True
        return False

    def apply(self, cards: list[Card], recent: list[RecentCard], now_ms: int) -> list[Card]:
        """The cards still worth showing, in their original order."""
        if not self.enabled or not recent:
            return cards
        return [c for c in cards if not self.quiets(c, recent, now_ms)]
