"""NEWS2 against the RCP 2017 chart, written out here independently of cds/knowledge/news2.json."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds.services.deterioration.news2 import News2Inputs, band_points, news2, risk_band

# The chart as the issue states it: (lowest, highest, points), inclusive whole-number ranges.
RR = [(0, 8, 3), (9, 11, 1), (12, 20, 0), (21, 24, 2), (25, 200, 3)]
SPO2_1 = [(0, 91, 3), (92, 93, 2), (94, 95, 1), (96, 100, 0)]
SPO2_2_AIR = [(0, 83, 3), (84, 85, 2), (86, 87, 1), (88, 100, 0)]
SPO2_2_O2 = [(0, 83, 3), (84, 85, 2), (86, 87, 1), (88, 92, 0), (93, 94, 1), (95, 96, 2), (97, 100, 3)]
SBP = [(0, 90, 3), (91, 100, 2), (101, 110, 1), (111, 219, 0), (220, 400, 3)]
PULSE = [(0, 40, 3), (41, 50, 1), (51, 90, 0), (91, 110, 1), (111, 130, 2), (131, 400, 3)]
TEMP_TENTHS = [(0, 350, 3), (351, 360, 1), (361, 380, 0), (381, 390, 1), (391, 450, 2)]


def ref(table: list[tuple[int, int, int]], value: int) -> int:
    return next(p for lo, hi, p in table if lo <= value <= hi)


def edges(table: list[tuple[int, int, int]]) -> list[int]:
    return sorted({v for lo, hi, _ in table for v in (lo, hi)})


@pytest.mark.parametrize("value", edges(RR))
def test_respiratory_rate_edges(value: int) -> None:
    assert band_points("respiratory_rate", value) == ref(RR, value)


@pytest.mark.parametrize("value", edges(SPO2_1))
def test_spo2_scale1_edges(value: int) -> None:
    assert news2(News2Inputs(spo2=value)).parts["spo2"] == ref(SPO2_1, value)


@pytest.mark.parametrize("value", edges(SPO2_2_AIR))
def test_spo2_scale2_air_edges(value: int) -> None:
    assert news2(News2Inputs(spo2=value, on_oxygen=False), scale=2).parts["spo2"] == ref(SPO2_2_AIR, value)


@pytest.mark.parametrize("value", edges(SPO2_2_O2))
def test_spo2_scale2_oxygen_edges(value: int) -> None:
    assert news2(News2Inputs(spo2=value, on_oxygen=True), scale=2).parts["spo2"] == ref(SPO2_2_O2, value)


@pytest.mark.parametrize("value", edges(SBP))
def test_systolic_edges(value: int) -> None:
    assert band_points("systolic_bp", value) == ref(SBP, value)


@pytest.mark.parametrize("value", edges(PULSE))
def test_pulse_edges(value: int) -> None:
    assert band_points("pulse", value) == ref(PULSE, value)


@pytest.mark.parametrize("tenths", edges(TEMP_TENTHS))
def test_temperature_edges(tenths: int) -> None:
    assert band_points("temperature", tenths / 10) == ref(TEMP_TENTHS, tenths)


@given(
    st.integers(0, 200), st.integers(0, 100), st.integers(0, 400), st.integers(0, 400), st.integers(250, 450)
)
def test_every_whole_value_matches_the_chart(rr: int, spo2: int, sbp: int, pulse: int, tenths: int) -> None:
    s = news2(
        News2Inputs(
            respiratory_rate=rr,
            spo2=spo2,
            on_oxygen=False,
            systolic_bp=sbp,
            pulse=pulse,
            consciousness="A",
            temperature=tenths / 10,
        )
    )
    assert s.parts == {
        "respiratory_rate": ref(RR, rr),
        "spo2": ref(SPO2_1, spo2),
        "oxygen": 0,
        "systolic_bp": ref(SBP, sbp),
        "pulse": ref(PULSE, pulse),
        "consciousness": 0,
        "temperature": ref(TEMP_TENTHS, tenths),
    }
    assert s.complete


@given(
    st.integers(0, 200),
    st.integers(0, 100),
    st.booleans(),
    st.integers(0, 400),
    st.integers(0, 400),
    st.sampled_from("ACVPU"),
    st.integers(250, 450),
    st.sampled_from([1, 2]),
)
def test_total_and_band_follow_chart_2(rr, spo2, oxygen, sbp, pulse, level, tenths, scale) -> None:
    s = news2(News2Inputs(rr, spo2, oxygen, sbp, pulse, level, tenths / 10), scale=scale)
    assert s.total == sum(s.parts.values())
    assert s.parts["oxygen"] == (2 if oxygen else 0)
    assert s.parts["consciousness"] == (0 if level == "A" else 3)
    table = SPO2_1 if scale == 1 else SPO2_2_O2 if oxygen else SPO2_2_AIR
    assert s.parts["spo2"] == ref(table, spo2)
    if s.total >= 7:
        assert s.band == "high"
    elif s.total >= 5:
        assert s.band == "medium"
    elif 3 in s.parts.values():
        assert s.band == "low-medium"
    else:
        assert s.band == "low"


@pytest.mark.parametrize(
    ("total", "single_three", "band"),
    [
        (0, False, "low"),
        (4, False, "low"),
        (3, True, "low-medium"),
        (4, True, "low-medium"),
        (5, False, "medium"),
        (6, True, "medium"),
        (7, False, "high"),
        (20, True, "high"),
    ],
)
def test_band_edges(total: int, single_three: bool, band: str) -> None:
    assert risk_band(total, single_three) == band


def test_new_confusion_alone_is_low_medium() -> None:
    s = news2(News2Inputs(18, 97, False, 130, 80, "C", 37.0))
    assert (s.total, s.band) == (3, "low-medium")


def test_missing_parameters_are_named_not_scored_as_normal() -> None:
    s = news2(News2Inputs(respiratory_rate=26))
    assert s.parts == {"respiratory_rate": 3}
    assert s.missing == ("spo2", "oxygen", "systolic_bp", "pulse", "consciousness", "temperature")
    assert not s.complete and s.band == "low-medium"


def test_scale_2_without_oxygen_information_scores_as_air_and_names_oxygen() -> None:
    s = news2(News2Inputs(spo2=97), scale=2)
    assert s.parts["spo2"] == 0 and "oxygen" in s.missing


def test_fractional_values_fall_in_the_higher_band() -> None:
    assert band_points("respiratory_rate", 8.5) == 1
    assert band_points("temperature", 35.05) == 1


def test_bad_scale_refused() -> None:
    with pytest.raises(ValueError):
        news2(News2Inputs(), scale=3)
