"""Properties of the FHIR quantity/unit parser (cds/fhir/units.py): it never raises on anything an EHR
might send, and conversions between convertible units round-trip."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cds.fhir.units import convert, quantity_in

# Units EHRs really send (UCUM and the aliases units.py knows), plus nonsense.
REAL_UNITS = [
    "mm[Hg]",
    "mmHg",
    "kPa",
    "Cel",
    "°C",
    "[degF]",
    "°F",
    "/min",
    "bpm",
    "%",
    "mg/dL",
    "mmol/L",
    "umol/L",
    "µmol/L",
    "mEq/L",
    "meq/L",
    "g/dL",
    "g/L",
    "10*3/uL",
    "K/uL",
    "10*9/L",
    "kg",
    "[lb_av]",
    "cm",
    "[in_i]",
    "mL/min/{1.73_m2}",
    "ms",
    "s",
    "L/min",
    "mg",
    "ug",
    "ng/mL",
    "{score}",
    "1",
]
units = (
    st.sampled_from(REAL_UNITS)
    | st.text(max_size=24)
    | st.from_regex(r"[a-zA-Z0-9/*.\[\]{}^%_-]{1,12}", fullmatch=True)
)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=8,
)
quantities = st.fixed_dictionaries(
    {},
    optional={
        "value": st.floats() | st.integers() | json_values,
        "unit": units | json_values,
        "code": units | json_values,
        "system": st.just("http://unitsofmeasure.org") | json_values,
        "comparator": st.sampled_from(["<", "<=", ">=", ">"]) | json_values,
    },
)


@given(
    value=st.floats(allow_nan=True, allow_infinity=True),
    src=st.none() | units,
    dst=units,
    mm=st.none() | st.floats(),
)
@settings(max_examples=300, deadline=None)
def test_convert_never_raises(value: float, src: str | None, dst: str, mm: float | None) -> None:
    result = convert(value, src, dst, mm)
    assert result is None or isinstance(result, float)


@given(q=quantities | json_values, dst=units, mm=st.none() | st.floats(min_value=1, max_value=1000))
@settings(max_examples=300, deadline=None)
def test_quantity_in_never_raises_and_is_finite(q: Any, dst: str, mm: float | None) -> None:
    result = quantity_in(q, dst, mm)
    assert result is None or (isinstance(result, float) and math.isfinite(result))


# (from, to, molar mass or None): pairs that must convert, both ways.
PAIRS = [
    ("mm[Hg]", "kPa", None),
    ("mmHg", "kPa", None),
    ("Cel", "[degF]", None),
    ("°F", "Cel", None),
    ("mg/dL", "mmol/L", 180.156),  # glucose
    ("mg/dL", "umol/L", 113.12),  # creatinine
    ("mEq/L", "mmol/L", None),
    ("g/dL", "g/L", None),
    ("K/uL", "10*9/L", None),
    ("kg", "[lb_av]", None),
    ("cm", "[in_i]", None),
    ("s", "ms", None),
]


@pytest.mark.parametrize(("src", "dst", "mm"), PAIRS)
@given(value=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
@settings(max_examples=60, deadline=None)
def test_round_trip(src: str, dst: str, mm: float | None, value: float) -> None:
    there = convert(value, src, dst, mm)
    assert there is not None, f"{src} -> {dst} should convert"
    back = convert(there, dst, src, mm)
    assert back is not None
    assert math.isclose(back, value, rel_tol=1e-9, abs_tol=1e-6)


@given(value=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), unit=st.sampled_from(REAL_UNITS))
@settings(max_examples=100, deadline=None)
def test_same_unit_is_identity_and_quantity_uses_code_first(value: float, unit: str) -> None:
    same = convert(value, unit, unit)
    assume(same is not None)
    assert math.isclose(same, value, rel_tol=1e-12, abs_tol=1e-12)
    assert quantity_in({"value": value, "code": unit, "unit": "nonsense-unit"}, unit) == same


def test_known_values() -> None:
    assert math.isclose(convert(100, "[degF]", "Cel"), 37.7777777, rel_tol=1e-6)
    assert math.isclose(convert(120, "mmHg", "kPa"), 15.99869, rel_tol=1e-5)
    assert math.isclose(convert(1, "mg/dL", "umol/L", 113.12), 88.4016, rel_tol=1e-4)
    assert convert(1, "kg", "Cel") is None
    assert convert(1, None, "Cel") is None
    assert quantity_in({"value": True, "unit": "kg"}, "kg") is None
    assert quantity_in({"value": float("nan"), "unit": "kg"}, "kg") is None
