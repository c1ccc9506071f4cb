"""The card model can only produce spec-valid JSON."""

from __future__ import annotations

import msgspec
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds.hooks.cards import (
    CARD_KIND_SYSTEM,
    Action,
    Card,
    CdsServiceResponse,
    Coding,
    Link,
    Source,
    Suggestion,
    WireCard,
    encode_response,
    override_reason,
    truncate_summary,
)
from cds.sandbox.scenarios import spec_problems

SRC = Source(label="cds test")


def test_minimal_card_omits_empty_optional_fields() -> None:
    j = Card(summary="Hello", indicator="info", source=SRC, kind="t").to_json()
    assert set(j) == {"uuid", "summary", "indicator", "source"}
    # the card kind travels as source.topic, so clients and QA can tell cards apart
    assert j["source"] == {"label": "cds test", "topic": {"system": CARD_KIND_SYSTEM, "code": "t"}}


def test_suggestions_bring_selection_behavior_and_uuids() -> None:
    s = Suggestion(
        label="Stop", actions=(Action("delete", "Remove the order", resource_id="MedicationRequest/1"),)
    )
    j = Card(summary="x", indicator="warning", source=SRC, kind="t", suggestions=(s,)).to_json()
    assert j["selectionBehavior"] == "at-most-one"
    assert j["suggestions"][0]["uuid"] == s.uuid
    assert j["suggestions"][0]["actions"] == [
        {"type": "delete", "description": "Remove the order", "resourceId": "MedicationRequest/1"}
    ]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Card(summary="x" * 140, indicator="info", source=SRC, kind="t"),
        lambda: Card(summary="", indicator="info", source=SRC, kind="t"),
        lambda: Card(summary="x", indicator="urgent", source=SRC, kind="t"),  # type: ignore[arg-type]
        lambda: Card(summary="x", indicator="info", source=SRC, kind=""),
        lambda: Card(
            summary="x", indicator="info", source=SRC, kind="t", override_reasons=(Coding("a", "s"),)
        ),
        lambda: Action("create", "make it"),
        lambda: Action("delete", "remove it"),
        lambda: Action("delete", "remove it", resource_id="no-slash"),
        lambda: Link(label="x", url="/relative"),
        lambda: Link(label="x", url="https://a.example", app_context="ctx"),
        lambda: Source(label="x", url="relative/path"),
    ],
)
def test_invalid_cards_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


@given(
    summary=st.text(min_size=1, max_size=200).filter(lambda s: s.strip()),
    indicator=st.sampled_from(["info", "warning", "critical"]),
    n_suggestions=st.integers(0, 3),
    n_reasons=st.integers(0, 3),
    detail=st.one_of(st.none(), st.text(max_size=50)),
)
def test_any_valid_card_serializes_to_spec_json(
    summary: str, indicator: str, n_suggestions: int, n_reasons: int, detail: str | None
) -> None:
    summary = truncate_summary(summary)
    card = Card(
        summary=summary,
        indicator=indicator,  # type: ignore[arg-type]
        source=SRC,
        kind="k",
        detail=detail,
        suggestions=tuple(Suggestion(label=f"s{i}") for i in range(n_suggestions)),
        override_reasons=tuple(override_reason(f"r{i}", f"Reason {i}") for i in range(n_reasons)),
    )
    j = card.to_json()
    assert 0 < len(j["summary"]) < 140
    assert j["indicator"] in ("info", "warning", "critical")
    assert all(v not in (None, [], {}, "") for v in j.values())
    assert ("suggestions" in j) == ("selectionBehavior" in j) == (n_suggestions > 0)
    assert all(r["display"] for r in j.get("overrideReasons", []))
    assert "kind" not in j and "score" not in j


# --- one declaration: what the builder makes is what the wire declaration accepts ------------------


@given(
    summary=st.text(min_size=1, max_size=200).filter(lambda s: s.strip()),
    n_suggestions=st.integers(0, 3),
    n_links=st.integers(0, 2),
    detail=st.one_of(st.none(), st.just(""), st.text(max_size=50)),
)
def test_every_built_card_decodes_against_the_wire_declaration(
    summary: str, n_suggestions: int, n_links: int, detail: str | None
) -> None:
    card = Card(
        summary=truncate_summary(summary),
        indicator="warning",
        source=Source(label="s", url="https://a.example/x"),
        kind="k",
        detail=detail,
        suggestions=tuple(
            Suggestion(label=f"s{i}", actions=(Action("delete", "d", resource_id="MedicationRequest/1"),))
            for i in range(n_suggestions)
        ),
        links=tuple(Link(label=f"l{i}", url="https://a.example") for i in range(n_links)),
    )
    body = encode_response([card])
    decoded = msgspec.json.decode(body, type=CdsServiceResponse)
    assert (
        orjson.loads(msgspec.json.encode(decoded.cards[0]))
        == card.to_json()
        == orjson.loads(body)["cards"][0]
    )
    assert [p for p in spec_problems(card.to_json()) if "HTML" not in p] == []  # HTML: a sandbox concern


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"summary": "x" * 140}, "must be under 140"),
        ({"indicator": "urgent"}, "not info, warning or critical"),
        ({"detail": None}, "detail is empty/null"),
        ({"suggestions": [{"label": "a"}]}, "suggestions without a valid selectionBehavior"),
        (
            {"overrideReasons": [{"system": "s", "code": "c"}]},
            "overrideReasons: Object missing required field `display`",
        ),
        ({"links": [{"label": "l", "url": "x", "type": "absolute", "appContext": "c"}]}, "links:"),
        ({"colour": "red"}, "colour is not a card field"),
    ],
)
def test_the_qa_card_check_is_the_declaration(change: dict, problem: str) -> None:
    good = Card(summary="s", indicator="info", source=SRC, kind="k").to_json()
    assert spec_problems(good) == []
    problems = spec_problems({**good, **change})
    assert any(problem in p for p in problems), problems
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({**good, **change}, WireCard)
