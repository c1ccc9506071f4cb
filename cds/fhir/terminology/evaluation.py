"""Scoring the mapper against a labelled set of local names (tests/terminology/evaluation.csv).

Each row names the concept it should map to (or `none`) and, where the unit or specimen decides it,
the LOINC codes that are right. An automatic map is correct when its target is in the expected
concept and (if listed) among the expected codes. Rows of kind `in` are in scope; `near` and `out`
must never be mapped automatically.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from cds.fhir.terminology.mapper import Decision, LocalRow, Mapper


@dataclass(frozen=True)
class Labelled:
    row: LocalRow
    expected: str  # concept id or "none"
    codes: frozenset[str]
    kind: str  # in | near | out
    source: str


@dataclass
class Scores:
    rows: int
    in_scope: int
    auto: int
    auto_correct: int
    in_scope_auto_correct: int
    review: int
    unmatched: int
    near_auto: list[str]
    wrong: list[str]

    @property
    def precision(self) -> float:
        return self.auto_correct / self.auto if self.auto else 1.0

    @property
    def coverage(self) -> float:
        return self.in_scope_auto_correct / self.in_scope if self.in_scope else 0.0

    @property
    def review_rate(self) -> float:
        return self.review / self.rows if self.rows else 0.0


def read_labelled(path: Path) -> list[Labelled]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [
            Labelled(
                LocalRow(
                    r["code"], r["display"], unit=r["unit"], specimen=r["specimen"], category=r["category"]
                ),
                r["expected"],
                frozenset(r["expected_codes"].split()),
                r["kind"],
                r["source"],
            )
            for r in csv.DictReader(fh)
        ]


def is_correct(item: Labelled, d: Decision) -> bool:
    if d.target is None or d.concept is None or item.expected == "none":
        return False
    return d.concept.id == item.expected and (not item.codes or d.target.code in item.codes)


def score(items: list[Labelled], decisions: list[Decision]) -> Scores:
    s = Scores(len(items), sum(i.kind == "in" for i in items), 0, 0, 0, 0, 0, [], [])
    for item, d in zip(items, decisions, strict=True):
        if d.equivalence == "equivalent":
            s.auto += 1
            if is_correct(item, d):
                s.auto_correct += 1
                s.in_scope_auto_correct += item.kind == "in"
            else:
                s.wrong.append(
                    f"{item.row.code} {item.row.display!r} -> {d.target.code if d.target else '-'}"
                )
            if item.kind != "in":
                s.near_auto.append(f"{item.row.code} {item.row.display!r}")
        elif d.equivalence == "inexact":
            s.review += 1
        else:
            s.unmatched += 1
    return s


def evaluate(path: Path, mapper: Mapper) -> Scores:
    items = read_labelled(path)
    return score(items, mapper.map_rows([i.row for i in items]))
