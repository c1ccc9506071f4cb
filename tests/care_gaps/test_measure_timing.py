"""Timing rules the CQL spells out: lookback edges, ages at start/end of the period, "most recent
day" logic, prevalence intervals, and what does not count."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from cds.services.care_gaps.measures import qicore as q
from cds.services.care_gaps.measures.medication_period import medication_request_period
from cds.services.care_gaps.measures.period import Period
from tests.care_gaps.conftest import (
    ATORVASTATIN_20,
    COLONOSCOPY,
    DIABETES,
    ED_VISIT,
    EGFR,
    FIT_DNA,
    FOBT,
    HBA1C,
    HPV,
    HYPERTENSION,
    MAMMOGRAM,
    MI,
    PAP,
    UACR,
    blood_pressure,
    condition,
    encounter,
    med_request,
    observation,
    patient,
    pops,
    populations,
    procedure,
)

ADULT = patient("1970-06-15", "female")  # 55 at the end of 2025


# --- CMS130 lookbacks ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("when", "counts"),
    [
        ("2016-01-01T10:00:00Z", 1),
        ("2015-12-31T10:00:00Z", 0),
        ("2025-12-31T23:00:00Z", 1),
        ("2026-01-01T01:00:00Z", 0),
    ],
)
def test_colonoscopy_counts_from_nine_years_before_the_period(when: str, counts: int) -> None:
    assert pops("CMS130", ADULT, encounter(), procedure(COLONOSCOPY, when))["numerator"] == counts


def test_colonoscopy_not_completed_does_not_count() -> None:
    assert (
        pops("CMS130", ADULT, encounter(), procedure(COLONOSCOPY, "2020-01-01", status="not-done"))[
            "numerator"
        ]
        == 0
    )


@pytest.mark.parametrize(("when", "counts"), [("2023-01-01T08:00:00Z", 1), ("2022-12-31T08:00:00Z", 0)])
def test_fit_dna_counts_for_two_years_before_the_period(when: str, counts: int) -> None:
    assert pops("CMS130", ADULT, encounter(), observation(FIT_DNA, when))["numerator"] == counts


def test_fobt_needs_a_result_and_the_laboratory_category() -> None:
    assert pops("CMS130", ADULT, encounter(), observation(FOBT, "2025-02-01T08:00:00Z"))["numerator"] == 1
    assert (
        pops("CMS130", ADULT, encounter(), observation(FOBT, "2025-02-01T08:00:00Z", value=None))["numerator"]
        == 0
    )
    no_cat = observation(FOBT, "2025-02-01T08:00:00Z", category=None)
    assert pops("CMS130", ADULT, encounter(), no_cat)["numerator"] == 0
    assert pops("CMS130", ADULT, encounter(), observation(FOBT, "2024-12-31T08:00:00Z"))["numerator"] == 0


@pytest.mark.parametrize(
    ("birth", "in_ip"), [("1979-12-31", 1), ("1980-01-01", 0), ("1950-01-01", 1), ("1949-12-31", 0)]
)
def test_colorectal_age_46_to_75_at_the_end_of_the_period(birth: str, in_ip: int) -> None:
    assert pops("CMS130", patient(birth), encounter())["initial-population"] == in_ip


def test_encounter_must_fall_within_the_period_and_be_performed() -> None:
    assert pops("CMS130", ADULT, encounter("2024-12-31T09:00:00Z"))["initial-population"] == 0
    assert pops("CMS130", ADULT, encounter(status="cancelled"))["initial-population"] == 0
    # An encounter running past the end of the period is not "during" it.
    late = encounter("2025-12-31T22:00:00Z", end="2026-01-01T02:00:00Z")
    assert pops("CMS130", ADULT, late)["initial-population"] == 0


# --- CMS125 / CMS124 -------------------------------------------------------------------------
@pytest.mark.parametrize(("when", "counts"), [("2023-10-01T08:00:00Z", 1), ("2023-09-30T08:00:00Z", 0)])
def test_mammogram_window_starts_october_first_two_years_before(when: str, counts: int) -> None:
    mammo = observation(MAMMOGRAM, when, category="imaging", value=None)
    assert pops("CMS125", ADULT, encounter(), mammo)["numerator"] == counts


def test_breast_screening_is_for_women_only() -> None:
    assert pops("CMS125", patient("1970-06-15", "male"), encounter())["initial-population"] == 0


def test_hpv_counts_only_at_30_or_older() -> None:
    young = patient("1996-06-01", "female")  # turns 29 on 2025-06-01
    assert pops("CMS124", young, encounter(), observation(HPV, "2025-07-01T08:00:00Z"))["numerator"] == 0
    thirty = patient("1995-06-01", "female")
    assert pops("CMS124", thirty, encounter(), observation(HPV, "2025-07-01T08:00:00Z"))["numerator"] == 1
    # Five-year window for HPV, three for cytology.
    assert pops("CMS124", ADULT, encounter(), observation(HPV, "2021-01-01T08:00:00Z"))["numerator"] == 1
    assert pops("CMS124", ADULT, encounter(), observation(PAP, "2021-01-01T08:00:00Z"))["numerator"] == 0
    assert pops("CMS124", ADULT, encounter(), observation(PAP, "2023-01-01T08:00:00Z"))["numerator"] == 1


# --- CMS122: most recent day, lowest value ---------------------------------------------------
def _diabetic(*extra: dict) -> dict[str, int]:
    return pops("CMS122", ADULT, encounter(), condition(DIABETES), *extra)


def test_no_hba1c_is_the_gap_of_the_inverse_measure() -> None:
    assert _diabetic() == {
        "initial-population": 1,
        "denominator": 1,
        "denominator-exclusion": 0,
        "numerator": 1,
    }


def test_most_recent_hba1c_decides() -> None:
    high_then_low = (observation(HBA1C, "2025-02-01T08:00:00Z", value=(10.2, "%")),
                     observation(HBA1C, "2025-09-01T08:00:00Z", value=(7.1, "%")))  # fmt: skip
    assert _diabetic(*high_then_low)["numerator"] == 0
    low_then_high = (observation(HBA1C, "2025-02-01T08:00:00Z", value=(7.1, "%")),
                     observation(HBA1C, "2025-09-01T08:00:00Z", value=(9.1, "%")))  # fmt: skip
    assert _diabetic(*low_then_high)["numerator"] == 1


def test_lowest_reading_on_the_most_recent_day_and_exactly_nine_is_controlled() -> None:
    same_day = (observation(HBA1C, "2025-09-01T08:00:00Z", value=(9.6, "%")),
                observation(HBA1C, "2025-09-01T15:00:00Z", value=(9.0, "%")))  # fmt: skip
    assert _diabetic(*same_day)["numerator"] == 0


def test_hba1c_without_a_result_is_a_gap_and_last_years_test_does_not_count() -> None:
    assert _diabetic(observation(HBA1C, "2025-09-01T08:00:00Z", value=None))["numerator"] == 1
    assert _diabetic(observation(HBA1C, "2024-12-30T08:00:00Z", value=(6.0, "%")))["numerator"] == 1


def test_diabetes_resolved_before_the_period_is_not_in_the_population() -> None:
    resolved = condition(DIABETES, clinical="resolved", abatementDateTime="2024-06-01T00:00:00Z")
    assert pops("CMS122", ADULT, encounter(), resolved)["initial-population"] == 0
    # Inactive with no abatement date: the prevalence end is unknown, so it does not overlap.
    assert (
        pops("CMS122", ADULT, encounter(), condition(DIABETES, clinical="inactive"))["initial-population"]
        == 0
    )


# --- CMS165 ----------------------------------------------------------------------------------
def _hypertensive(*extra: dict, onset: str = "2020-01-01T00:00:00Z") -> dict[str, int]:
    return pops("CMS165", ADULT, encounter(id="visit"), condition(HYPERTENSION, onset=onset), *extra)


@pytest.mark.parametrize(("onset", "in_ip"), [("2025-06-30T12:00:00Z", 1), ("2025-07-01T00:00:00Z", 0)])
def test_hypertension_must_start_in_the_first_six_months(onset: str, in_ip: int) -> None:
    assert _hypertensive(onset=onset)["initial-population"] == in_ip


def test_bp_lowest_systolic_and_diastolic_of_the_most_recent_day() -> None:
    # 150/80 and 130/95 on the same day: lowest systolic 130, lowest diastolic 80 -> controlled.
    readings = (
        blood_pressure("2025-10-01T09:00:00Z", 150, 80),
        blood_pressure("2025-10-01T10:00:00Z", 130, 95),
    )
    assert _hypertensive(*readings)["numerator"] == 1
    # An earlier controlled day does not help when the most recent day is high.
    days = (blood_pressure("2025-03-01T09:00:00Z", 120, 70), blood_pressure("2025-10-01T09:00:00Z", 140, 85))
    assert _hypertensive(*days)["numerator"] == 0


def test_bp_from_an_emergency_visit_is_ignored() -> None:
    ed = encounter("2025-10-01T09:00:00Z", code=ED_VISIT, cls="EMER", id="ed")
    high_in_ed = blood_pressure("2025-10-02T09:00:00Z", 170, 100, encounter={"reference": "Encounter/ed"})
    controlled = blood_pressure("2025-05-01T09:00:00Z", 128, 78, encounter={"reference": "Encounter/visit"})
    assert _hypertensive(ed, high_in_ed, controlled)["numerator"] == 1


# --- CMS951 and CMS347: age at the START of the period ----------------------------------------
def test_kidney_health_age_is_taken_at_the_start_of_the_period() -> None:
    turns_18_in_march = patient("2007-03-01")
    assert pops("CMS951", turns_18_in_march, encounter(), condition(DIABETES))["initial-population"] == 0
    assert pops("CMS951", patient("2007-01-01"), encounter(), condition(DIABETES))["initial-population"] == 1


def test_kidney_health_needs_both_egfr_and_uacr_in_the_period() -> None:
    base = (ADULT, encounter(), condition(DIABETES))
    egfr = observation(EGFR, "2025-04-01T08:00:00Z", value=(75, "mL/min/{1.73_m2}"))
    uacr = observation(UACR, "2025-04-01T08:00:00Z", value=(12, "mg/g"))
    assert pops("CMS951", *base, egfr)["numerator"] == 0
    assert pops("CMS951", *base, egfr, uacr)["numerator"] == 1


def test_statin_covering_the_period_counts_even_if_ordered_before() -> None:
    mi = condition(MI, onset="2019-01-01T00:00:00Z")
    old = med_request(ATORVASTATIN_20, "2024-06-01T00:00:00Z")
    assert populations("CMS347", patient("1960-01-01", "male"), encounter(), mi, old)[0]["numerator"] == 0
    bounded = med_request(
        ATORVASTATIN_20,
        "2024-06-01T00:00:00Z",
        dosageInstruction=[
            {"timing": {"repeat": {"boundsPeriod": {"start": "2024-06-01", "end": "2025-06-01"}}}}
        ],
    )
    assert populations("CMS347", patient("1960-01-01", "male"), encounter(), mi, bounded)[0]["numerator"] == 1


def test_ascvd_diagnosis_must_be_on_the_problem_list() -> None:
    enc = encounter()
    listed = populations("CMS347", patient("1960-01-01", "male"), enc, condition(MI))
    assert [g["initial-population"] for g in listed] == [1, 0, 0, 0]
    encounter_dx = condition(MI, category="encounter-diagnosis")
    assert (
        populations("CMS347", patient("1960-01-01", "male"), enc, encounter_dx)[0]["initial-population"] == 0
    )


# --- QI-Core helpers -------------------------------------------------------------------------
def test_prevalence_interval_bounds() -> None:
    active = q.prevalence_interval({"clinicalStatus": {"coding": [{"system": q.CONDITION_CLINICAL, "code": "active"}]},
                                    "onsetDateTime": "2020-01-01"}, None)  # fmt: skip
    assert active.high == q.MAX
    no_onset = q.prevalence_interval(
        {"clinicalStatus": {"coding": [{"system": q.CONDITION_CLINICAL, "code": "active"}]}}, None
    )
    assert no_onset.low == q.MIN
    abated = q.prevalence_interval({"onsetDateTime": "2020-01-01", "abatementDateTime": "2021-01-01"}, None)
    # A date keeps its day precision (carried in the microseconds, see qicore.instant).
    assert abated.high.replace(microsecond=0) == datetime(2021, 1, 1, tzinfo=UTC)
    assert q.le(abated.high, datetime(2021, 1, 1, 12, tzinfo=UTC)) is None  # same day: uncertain


def test_latest_uses_the_start_of_an_open_period() -> None:
    iv = q.period_interval({"start": "2025-03-01T00:00:00Z"})
    assert iv is not None and iv.high == q.MAX
    assert q.latest(iv).replace(microsecond=0) == datetime(2025, 3, 1, tzinfo=UTC)  # type: ignore[union-attr]
    assert q.period_interval({"end": "2025-03-01T00:00:00Z"}).low is None  # type: ignore[union-attr]


def test_onset_age_is_an_interval_of_one_year() -> None:
    iv = q.choice_interval({"onsetAge": {"value": 50, "code": "a"}}, "onset", date(1970, 6, 15))
    assert iv is not None and q.day(iv.low) == date(2020, 6, 15) and q.day(iv.high) == date(2021, 6, 14)


def test_medication_request_period_from_supply_and_refills() -> None:
    req = {"authoredOn": "2025-01-10", "dispenseRequest": {"expectedSupplyDuration": {"value": 30, "code": "d"},
           "numberOfRepeatsAllowed": 2}}  # fmt: skip
    iv = medication_request_period(req)
    assert iv is not None and q.day(iv.low) == date(2025, 1, 10) and q.day(iv.high) == date(2025, 4, 9)
    by_quantity = {"authoredOn": "2025-01-10", "dispenseRequest": {"quantity": {"value": 60}},
                   "dosageInstruction": [{"timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                                          "doseAndRate": [{"doseQuantity": {"value": 1}}]}]}  # fmt: skip
    iv = medication_request_period(by_quantity)
    assert iv is not None and q.day(iv.high) == date(2025, 2, 8)
    assert medication_request_period({"authoredOn": "2025-01-10"}) is None


def test_periods() -> None:
    assert Period.calendar_year(date(2025, 11, 25)) == Period(date(2025, 1, 1), date(2025, 12, 31))
    assert Period.rolling_12_months(date(2025, 11, 25)) == Period(date(2024, 11, 26), date(2025, 11, 25))
    assert Period.rolling_12_months(date(2024, 2, 29)) == Period(date(2023, 3, 1), date(2024, 2, 29))
    with pytest.raises(ValueError):
        Period.parse("2025-12-31", "2025-01-01")


def test_statin_by_medication_reference_is_resolved() -> None:
    mi = condition(MI, onset="2019-01-01T00:00:00Z")
    med = {"resourceType": "Medication", "id": "atorva", "code": {"coding": [{"system": ATORVASTATIN_20[0],
           "code": ATORVASTATIN_20[1]}]}}  # fmt: skip
    req = med_request(ATORVASTATIN_20, "2025-02-01T00:00:00Z")
    del req["medicationCodeableConcept"]
    req["medicationReference"] = {"reference": "Medication/atorva"}
    man = patient("1960-01-01", "male")
    assert populations("CMS347", man, encounter(), mi, req, med)[0]["numerator"] == 1
    assert populations("CMS347", man, encounter(), mi, req)[0]["numerator"] == 0  # unresolvable
