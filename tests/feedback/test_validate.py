"""Feedback body validation (CDS Hooks 2.0.1 "Feedback"): each bad entry names its index and field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds.feedback.records import IssuedCard
from cds.feedback.validate import MAX_ENTRIES, FeedbackError, match_cards, parse_feedback, parse_rfc3339

NOW_MS = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
CARD = "4e0a3a1e-3283-4575-ab82-028d55fe2719"
SUGGESTION = "e56e1945-20b3-4393-8503-a1a20fd73152"
ACCEPTED = {
    "card": CARD,
    "outcome": "accepted",
    "acceptedSuggestions": [{"id": SUGGESTION}],
    "outcomeTimestamp": "2021-12-11T10:05:31Z",
}
OVERRIDDEN = {
    "card": CARD,
    "outcome": "overridden",
    "overrideReason": {
        "reason": {"code": "d7ecf885", "system": "https://example.com/cds-hooks/override-reason-system"},
        "userComment": "A comment entered by the clinician.",
    },
    "outcomeTimestamp": "2020-12-11T00:00:00Z",
}


def test_spec_examples_parse() -> None:
    plain = {"card": CARD, "outcome": "overridden", "outcomeTimestamp": "2020-12-11T00:00:00Z"}
    a, o, p = parse_feedback({"feedback": [ACCEPTED, OVERRIDDEN, plain]}, NOW_MS)
    assert a.outcome == "accepted" and a.accepted_suggestions == (SUGGESTION,)
    assert a.outcome_ms == int(datetime(2021, 12, 11, 10, 5, 31, tzinfo=UTC).timestamp() * 1000)
    assert (o.reason_system, o.reason_code, o.has_comment) == (
        "https://example.com/cds-hooks/override-reason-system",
        "d7ecf885",
        True,
    )
    assert p.reason_code is None and not p.has_comment and p.index == 2


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    entry = dict(base)
    for k, v in changes.items():
        if v is None:
            entry.pop(k, None)
        else:
            entry[k] = v
    return entry


BAD_ENTRIES = [
    ("not an object", ["x"], "feedback[1]: must be an object"),
    ("no card", _with(ACCEPTED, card=None), "feedback[1].card"),
    ("empty card", _with(ACCEPTED, card=" "), "feedback[1].card"),
    ("bad outcome", _with(ACCEPTED, outcome="ignored"), "feedback[1].outcome"),
    ("no timestamp", _with(ACCEPTED, outcomeTimestamp=None), "feedback[1].outcomeTimestamp"),
    ("no zone", _with(ACCEPTED, outcomeTimestamp="2021-12-11T10:05:31"), "feedback[1].outcomeTimestamp"),
    ("date only", _with(ACCEPTED, outcomeTimestamp="2021-12-11"), "feedback[1].outcomeTimestamp"),
    ("bad month", _with(ACCEPTED, outcomeTimestamp="2021-13-11T10:05:31Z"), "feedback[1].outcomeTimestamp"),
    ("future", _with(ACCEPTED, outcomeTimestamp="2030-01-01T00:00:00Z"), "in the future"),
    ("accepted without suggestions", _with(ACCEPTED, acceptedSuggestions=None), "required when"),
    ("empty suggestions", _with(ACCEPTED, acceptedSuggestions=[]), "feedback[1].acceptedSuggestions"),
    (
        "suggestion without id",
        _with(ACCEPTED, acceptedSuggestions=[{}]),
        "feedback[1].acceptedSuggestions[0]",
    ),
    ("suggestion as string", _with(ACCEPTED, acceptedSuggestions=[SUGGESTION]), "acceptedSuggestions[0]"),
    (
        "suggestions when overridden",
        _with(OVERRIDDEN, acceptedSuggestions=[{"id": SUGGESTION}]),
        "only allowed",
    ),
    (
        "reason when accepted",
        _with(ACCEPTED, overrideReason={"userComment": "x"}),
        "feedback[1].overrideReason",
    ),
    ("empty reason", _with(OVERRIDDEN, overrideReason={}), "feedback[1].overrideReason"),
    ("coding without system", _with(OVERRIDDEN, overrideReason={"reason": {"code": "a"}}), "reason.system"),
    ("coding without code", _with(OVERRIDDEN, overrideReason={"reason": {"system": "urn:x"}}), "reason.code"),
    ("comment not text", _with(OVERRIDDEN, overrideReason={"userComment": 3}), "userComment"),
    ("typo field", _with(OVERRIDDEN, overideReason={"userComment": "x"}), "unknown field(s) overideReason"),
    ("NUL in card", _with(ACCEPTED, card="abc\x00"), "feedback[1].card"),
    (
        "NUL in code",
        _with(OVERRIDDEN, overrideReason={"reason": {"system": "urn:x", "code": "a\x00"}}),
        "reason.code",
    ),
]


@pytest.mark.parametrize(("name", "entry", "expected"), BAD_ENTRIES, ids=[b[0] for b in BAD_ENTRIES])
def test_bad_entry_names_index_and_field(name: str, entry: Any, expected: str) -> None:
    with pytest.raises(FeedbackError) as err:
        parse_feedback({"feedback": [ACCEPTED, entry]}, NOW_MS)
    assert err.value.status == 400
    assert expected in err.value.message


@pytest.mark.parametrize(
    "body",
    [[], "x", {}, {"feedback": []}, {"feedback": {}}, {"feedback": [ACCEPTED], "extra": 1}],
)
def test_bad_body(body: Any) -> None:
    with pytest.raises(FeedbackError):
        parse_feedback(body, NOW_MS)


def test_too_many_entries() -> None:
    with pytest.raises(FeedbackError, match="at most"):
        parse_feedback({"feedback": [ACCEPTED] * (MAX_ENTRIES + 1)}, NOW_MS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1985-04-12T23:20:50.52Z", datetime(1985, 4, 12, 23, 20, 50, 520000, tzinfo=UTC)),
        ("1985-04-12t23:20:50z", datetime(1985, 4, 12, 23, 20, 50, tzinfo=UTC)),
        ("1996-12-19T16:39:57-08:00", datetime(1996, 12, 20, 0, 39, 57, tzinfo=UTC)),
        ("2021-12-11T10:05:31.123456789+00:00", datetime(2021, 12, 11, 10, 5, 31, 123456, tzinfo=UTC)),
        ("2021-12-11 10:05:31Z", None),
        ("0001-01-01T00:08:12+01:00", None),  # before year 1 in UTC
        ("9999-12-31T23:59:59-01:00", None),  # after year 9999 in UTC
        ("2021-02-30T10:05:31Z", None),
        (20211211, None),
    ],
)
def test_rfc3339(text: Any, expected: datetime | None) -> None:
    assert parse_rfc3339(text) == expected


def test_entry_key_is_stable_and_distinguishes_events() -> None:
    (a,) = parse_feedback({"feedback": [ACCEPTED]}, NOW_MS)
    (b,) = parse_feedback({"feedback": [ACCEPTED]}, NOW_MS)
    (later,) = parse_feedback(
        {"feedback": [_with(ACCEPTED, outcomeTimestamp="2021-12-11T10:05:32Z")]}, NOW_MS
    )
    assert a.entry_key("svc") == b.entry_key("svc")
    assert a.entry_key("svc") != later.entry_key("svc")
    assert a.entry_key("svc") != a.entry_key("other")


REASON = ("https://example.com/cds-hooks/override-reason-system", "d7ecf885")


def issued(suggestions: tuple[str, ...] = (SUGGESTION,), issuer: str | None = "iss-a", tenant: str = "",
           reasons: frozenset = frozenset({REASON})) -> IssuedCard:  # fmt: skip
    return IssuedCard(suggestions, issuer, tenant, reasons)


def test_match_cards_checks_card_and_suggestions() -> None:
    entries = parse_feedback({"feedback": [ACCEPTED]}, NOW_MS)
    (row,) = match_cards("svc", entries, {CARD: issued()}, NOW_MS, issuer="iss-a")
    assert row.card_uuid == CARD and row.accepted_suggestions == (SUGGESTION,)
    with pytest.raises(FeedbackError, match=r"feedback\[0\].card: .* not a card issued by the svc service"):
        match_cards("svc", entries, {}, NOW_MS, issuer="iss-a")
    with pytest.raises(FeedbackError, match=r"acceptedSuggestions\[0\].id: .* is not a suggestion"):
        match_cards("svc", entries, {CARD: issued(("other",))}, NOW_MS, issuer="iss-a")


@pytest.mark.parametrize(
    ("issuer", "tenant", "card_issuer", "card_tenant", "ok"),
    [
        ("iss-a", "", "iss-a", "", True),
        ("iss-b", "", "iss-a", "", False),  # another client's card
        ("iss-a", "t2", "iss-a", "t1", False),  # the same client, another tenant
        ("iss-a", "", "iss-a", "t1", False),
        ("iss-a", "", None, "", False),  # issued before cards remembered their client: nobody's
        (None, "", "iss-a", "t1", True),  # unscoped (the CLI and the store's own tools)
    ],
)
def test_match_cards_only_the_callers_own_cards(issuer, tenant, card_issuer, card_tenant, ok) -> None:
    entries = parse_feedback({"feedback": [ACCEPTED]}, NOW_MS)
    cards = {CARD: issued(issuer=card_issuer, tenant=card_tenant)}
    if ok:
        assert len(match_cards("svc", entries, cards, NOW_MS, issuer=issuer, tenant=tenant)) == 1
    else:
        with pytest.raises(FeedbackError, match="not a card issued by the svc service to this client"):
            match_cards("svc", entries, cards, NOW_MS, issuer=issuer, tenant=tenant)


def test_override_reason_must_be_one_the_card_offered() -> None:
    (entry,) = parse_feedback({"feedback": [OVERRIDDEN]}, NOW_MS)
    (row,) = match_cards("svc", [entry], {CARD: issued()}, NOW_MS, issuer="iss-a")
    assert (row.reason_system, row.reason_code) == REASON
    free_text = {**OVERRIDDEN, "overrideReason": {"reason": {"system": "urn:x", "code": "Jane Doe MRN 123"}}}
    for body, reasons in ((free_text, frozenset({REASON})), (OVERRIDDEN, frozenset())):
        (entry,) = parse_feedback({"feedback": [body]}, NOW_MS)
        with pytest.raises(
            FeedbackError, match=r"overrideReason.reason: not one of the overrideReasons"
        ) as e:
            match_cards("svc", [entry], {CARD: issued(reasons=reasons)}, NOW_MS, issuer="iss-a")
        assert "Jane" not in e.value.message  # what the client sent is not echoed
    # same code in another system is not the offered reason
    other = {**OVERRIDDEN, "overrideReason": {"reason": {"system": "urn:x", "code": REASON[1]}}}
    (entry,) = parse_feedback({"feedback": [other]}, NOW_MS)
    with pytest.raises(FeedbackError):
        match_cards("svc", [entry], {CARD: issued()}, NOW_MS, issuer="iss-a")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
_timestamps = st.from_regex(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})", fullmatch=True
)
_entries = st.fixed_dictionaries(
    {},
    optional={
        "card": st.text(max_size=40) | _json,
        "outcome": st.sampled_from(["accepted", "overridden", "ignored"]) | _json,
        "outcomeTimestamp": _timestamps | _json,
        "acceptedSuggestions": st.lists(st.fixed_dictionaries({"id": st.text(max_size=8) | _json}), max_size=2)
        | _json,
        "overrideReason": st.fixed_dictionaries(
            {}, optional={"reason": st.fixed_dictionaries({"system": st.text(), "code": st.text()}) | _json,
                          "userComment": st.text() | _json}
        ) | _json,
    },
)  # fmt: skip


@given(st.fixed_dictionaries({"feedback": st.lists(_entries | _json, max_size=3)}) | _json)
def test_any_body_is_parsed_or_refused_with_a_400(body: Any) -> None:
    try:
        entries = parse_feedback(body, NOW_MS)
    except FeedbackError as e:
        assert e.status == 400 and e.message
    else:
        assert all(e.outcome in ("accepted", "overridden") for e in entries)
