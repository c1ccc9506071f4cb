"""Recognise ingredient names in free text ("Warfarin Sodium 5 MG Oral Tablet", "Coumadin").

Used when an EHR sends a medication without a code we know, and by the script that maps RxNorm
product codes to their ingredients. Matching is on whole words (so "heparin" never matches inside
"enoxaparin") and prefers the longest name ("isosorbide mononitrate" over a shorter one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_WORD = re.compile(r"[a-z0-9]+(?:\.[a-z0-9]+)*")


def words(text: str) -> tuple[str, ...]:
    """Lower-case word tokens of a text (punctuation, slashes and hyphens separate words)."""
    return tuple(_WORD.findall(text.lower()))


class NameIndex:
    """Maps names (each one or more words) to keys; finds every name that occurs in a text."""

    __slots__ = ("_by_first", "_longest")

    def __init__(self, names: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        pairs = names.items() if isinstance(names, Mapping) else names
        self._by_first: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        self._longest = 1
        for name, key in pairs:
            toks = words(name)
            if not toks:
                continue
            self._by_first.setdefault(toks[0], []).append((toks, key))
            self._longest = max(self._longest, len(toks))
        for options in self._by_first.values():
            options.sort(key=lambda o: -len(o[0]))

    def find(self, text: str) -> list[str]:
        """The keys of the names found in `text`, in order of appearance, without repeats."""
        toks = words(text)
        found: list[str] = []
        i = 0
        while i < len(toks):
            step = 1
            for name, key in self._by_first.get(toks[i], ()):
                if toks[i : i + len(name)] == name:
                    if key not in found:
                        found.append(key)
                    step = len(name)
                    break
            i += step
        return found
