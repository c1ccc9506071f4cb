"""Declared shapes decode with errors that name the entry, the field and what was expected."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import pytest

from cds.runtime.shapes import NOT_BLANK, ShapeError, convert, decode_json


class Band(msgspec.Struct, forbid_unknown_fields=True):
    op: Literal["<", ">="]
    value: float


class Rule(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    code: Annotated[str, msgspec.Meta(pattern=r"^[0-9]+$", title="code")]
    text: Annotated[str, msgspec.Meta(pattern=NOT_BLANK)]
    bands: list[Band] = []
    extra: Band | None = None


class Doc(msgspec.Struct):
    rules: list[Rule] = []
    named: dict[str, Rule] = {}
    groups: dict[str, list[Rule]] = {}


class Explained(msgspec.Struct, forbid_unknown_fields=True):
    """A thing that needs a name."""

    name: str


def _rule(**over: object) -> dict[str, object]:
    return {"id": "r1", "code": "12", "text": "x", "bands": [{"op": "<", "value": 1}], **over}


def _error(doc: dict[str, object]) -> ShapeError:
    with pytest.raises(ShapeError) as e:
        convert(doc, Doc)
    return e.value


def test_a_valid_document_decodes() -> None:
    doc = convert({"rules": [_rule()], "named": {"a": _rule(id="a")}}, Doc)
    assert doc.rules[0].bands[0].op == "<" and doc.named["a"].id == "a"


@pytest.mark.parametrize("position", [0, 1, 4])
def test_a_list_entry_is_named_by_its_id(position: int) -> None:
    rules = [_rule(id=f"r{i}") for i in range(5)]
    rules[position] = _rule(id=f"r{position}", bands=[{"op": "=>", "value": 1}])
    e = _error({"rules": rules})
    assert e.entry == f"r{position}"
    assert e.path == f"$.rules[{position}].bands[0].op"
    assert (
        str(e)
        == f"r{position}: op '=>' is not allowed; op must be < or >= (at $.rules[{position}].bands[0].op)"
    )


@pytest.mark.parametrize("bad", ["a", "m", "z"])
def test_an_object_entry_is_named_by_its_key(bad: str) -> None:
    named = {k: _rule(id=k) for k in "amz"}
    named[bad] = _rule(id=bad, text=3)
    e = _error({"named": named})
    assert e.entry == bad and e.path == f"$.named[{bad!r}].text"
    assert "Expected `str`, got `int`" in str(e)


def test_a_titled_pattern_says_what_the_value_should_be() -> None:
    assert "bad code '1x'" in str(_error({"rules": [_rule(code="1x")]}))


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_blank_text_is_missing(blank: str) -> None:
    assert "missing text: it must not be blank" in str(_error({"rules": [_rule(text=blank)]}))


def test_missing_and_unknown_fields_are_named() -> None:
    rule = _rule()
    del rule["text"]
    assert "missing required field `text`" in str(_error({"rules": [rule]}))
    assert "unknown field `txet`" in str(_error({"rules": [_rule(txet="x")]}))


def test_an_optional_struct_is_walked_into() -> None:
    e = _error({"rules": [_rule(extra={"op": "!", "value": 1})]})
    assert e.path == "$.rules[0].extra.op" and "op '!' is not allowed; op must be < or >=" in str(e)


def test_json_text_that_is_not_json_or_not_the_shape() -> None:
    with pytest.raises(ShapeError, match=r"^not valid JSON \("):
        decode_json(b"{nope", Doc)
    with pytest.raises(ShapeError, match=r"'rules': Expected `array`, got `str` \(at \$\.rules\)"):
        decode_json(b'{"rules": "x"}', Doc)
    with pytest.raises(ShapeError, match=r"^expected `object`, got `array`$"):
        decode_json(b"[]", Doc)


def test_strict_false_converts_text_from_the_environment() -> None:
    class Numbers(msgspec.Struct):
        port: int
        ratio: float
        flag: bool

    got = convert({"port": "8080", "ratio": "0.5", "flag": "true"}, Numbers, strict=False)
    assert (got.port, got.ratio, got.flag) == (8080, 0.5, True)
    with pytest.raises(ShapeError, match="'port': Expected `int`, got `str`"):
        convert({"port": "80a", "ratio": "1", "flag": "0"}, Numbers, strict=False)


def test_entries_on_the_way_are_all_named() -> None:
    groups = {"g1": [_rule(id="a")], "g2": [_rule(id="b"), _rule(id="c", code="x")]}
    e = _error({"groups": groups})
    assert e.entry == "g2 c" and e.path == "$.groups['g2'][1].code" and "bad code 'x'" in str(e)


def test_an_object_problem_adds_what_the_object_is_for() -> None:
    with pytest.raises(
        ShapeError, match=r"^object missing required field `name` \(A thing that needs a name\.\)$"
    ):
        convert({}, Explained)


def test_a_bad_key_is_named_with_what_keys_may_be() -> None:
    class Scores(msgspec.Struct):
        points: dict[Literal["A", "C"], int]

    with pytest.raises(ShapeError) as e:
        convert({"points": {"A": 1, "X": 2}}, Scores)
    assert str(e.value) == "key of points 'X' is not allowed; key of points must be A or C (at $.points)"
