"""CQL semantics the reference engine (cql-execution on the official ELM) showed the Python engine
had wrong: day-precision comparisons use each DateTime's own calendar date, and quantities compare
by UCUM conversion."""

from __future__ import annotations

from tests.care_gaps.conftest import (
    DIABETES,
    HBA1C,
    PAP,
    condition,
    encounter,
    observation,
    patient,
    pops,
)


def test_day_of_comparisons_use_the_local_calendar_date() -> None:
    """CQL normalises time zones only at hour precision or finer: 2022-12-31T23:30-05:00 is on
    2022-12-31 (UTC 2023-01-01), one day before the cytology look-back of 2025 opens."""
    woman = patient("1990-06-01", "female")
    inside = observation(PAP, "2023-01-01T00:30:00+05:00", value=(1, "1"))  # UTC 2022-12-31
    outside = observation(PAP, "2022-12-31T23:30:00-05:00", value=(1, "1"))  # UTC 2023-01-01
    assert pops("CMS124", woman, encounter(), inside)["numerator"] == 1
    assert pops("CMS124", woman, encounter(), outside)["numerator"] == 0


def test_hba1c_units_convert_by_ucum() -> None:
    """`value > 9 '%'`: 139 mg/g is 13.9 %; 85 mg/g is 8.5 %; mg/dL is not a fraction (null)."""
    chart = (patient("1960-01-01"), encounter(), condition(DIABETES))
    for value, unit, expected in ((139, "mg/g", 1), (85, "mg/g", 0), (9.5, "%", 1), (12, "mg/dL", 0)):
        obs = observation(HBA1C, "2025-05-01T00:00:00Z", value=(value, unit))
        assert pops("CMS122", *chart, obs)["numerator"] == expected, (value, unit)


def test_comparisons_at_millisecond_precision_are_uncertain_for_coarser_values() -> None:
    """CMS951 `ValidEncounter.period during "Measurement Period"`: a start of 2025-01-01T00:00:00Z
    (second precision) equals the period start 00:00:00.000 only up to seconds: null, not during."""
    from tests.care_gaps.conftest import EGFR, UACR

    chart = (patient("1960-01-01"), condition(DIABETES), observation(EGFR, "2025-05-01T00:00:00Z"))
    chart += (observation(UACR, "2025-05-01T00:00:00Z"),)
    for start, end, expected in (
        ("2025-01-01T00:00:00.000Z", "2025-01-01T00:30:00.000Z", 1),
        ("2025-01-01T00:00:00Z", "2025-01-01T00:30:00Z", 0),
        ("2025-01-01T00:00:01Z", "2025-01-01T00:30:00Z", 1),
        ("2025-12-31T23:00:00Z", "2025-12-31T23:59:59Z", 0),
        ("2025-12-31T23:00:00Z", "2025-12-31T23:59:58Z", 1),
    ):
        visit = encounter(start, end=end)
        assert pops("CMS951", *chart, visit)["initial-population"] == expected, (start, end)
