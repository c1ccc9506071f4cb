"""Storing a batch of feedback requests in one transaction with few statements, for both backends.

The store's writer hands a backend the requests that arrived together (group commit). Each backend
looks all their cards up in one query, checks every request here, inserts the accepted rows with
one multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING entry_key, and counts the new rows back
to the requests here. Few statements means few round trips (PostgreSQL) and few hand-overs of the
GIL between the SQLite writer thread and the event loop answering hooks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from cds.feedback import queries
from cds.feedback.records import FeedbackRecord, FeedbackRequest, IssuedCard, feedback_params
from cds.feedback.validate import FeedbackError, match_cards

ROWS_PER_STATEMENT = 90  # 90 rows x <= 10 columns stays under SQLite's oldest variable limit (999)
C = TypeVar("C")

NEW_ONLY = "ON CONFLICT (entry_key) DO NOTHING RETURNING entry_key"  # a repeated entry is a no-op
Issued = dict[str, dict[str, IssuedCard]]  # service -> card uuid -> what feedback is checked against


def chunks(items: Sequence[C], size: int = ROWS_PER_STATEMENT) -> list[Sequence[C]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def multi_row(
    columns: tuple[str, ...], table: str, rows: Sequence[dict[str, Any]], tail: str, mark: str
) -> tuple[str, list[Any]]:
    """One INSERT of many rows, with positional placeholders `mark` ("?" or "%s")."""
    one = "(" + ",".join([mark] * len(columns)) + ")"
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES {','.join([one] * len(rows))} {tail}"
    return sql, [row[c] for row in rows for c in columns]


def card_uuids(requests: Sequence[FeedbackRequest]) -> list[str]:
    """Every card the batch gives feedback on, once."""
    return sorted({e.card for r in requests for e in r.entries})


def issued_cards(rows: Iterable[tuple[Any, ...]]) -> Issued:
    """Rows of queries.ISSUED_COLUMNS looked up for the batch."""
    issued: Issued = {}
    for uuid, service, suggestions, issuer, tenant, reasons in rows:
        issued.setdefault(service, {})[uuid] = IssuedCard(
            suggestions=tuple(json.loads(suggestions)),
            issuer=issuer,
            tenant=tenant or "",
            override_reasons=frozenset((s, c) for s, c in json.loads(reasons or "[]")),
        )
    return issued


class Batch:
    """The requests of one transaction: which are refused, which rows to insert, what was new."""

    def __init__(self, requests: Sequence[FeedbackRequest], issued: Issued) -> None:
        self.results: list[int | FeedbackError] = []
        self.rows: list[tuple[int, FeedbackRecord]] = []
        for i, req in enumerate(requests):
            try:
                checked = match_cards(
                    req.service,
                    list(req.entries),
                    issued.get(req.service, {}),
                    req.received_ms,
                    issuer=req.issuer,
                    tenant=req.tenant,
                )
            except FeedbackError as e:
                self.results.append(e)
                continue
            self.results.append(0)
            self.rows += [(i, r) for r in checked]

    def inserts(self, mark: str) -> list[tuple[str, list[Any]]]:
        """The INSERT statements (with their parameters) of the accepted rows."""
        return [
            multi_row(
                queries.FEEDBACK_COLUMNS,
                "cds_feedback",
                [feedback_params(r) for _, r in chunk],
                NEW_ONLY,
                mark,
            )
            for chunk in chunks(self.rows)
        ]

    def count_new(self, new_keys: Iterable[str]) -> list[int | FeedbackError]:
        """Per request, how many of its rows were new (a repeat within the batch counts once)."""
        new = set(new_keys)
        for i, r in self.rows:
            if r.entry_key in new:  # counted once, for the first request that carried it
                new.discard(r.entry_key)
                self.results[i] += 1  # type: ignore[operator]
        return self.results
