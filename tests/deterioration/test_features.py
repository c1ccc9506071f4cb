"""The deterioration feature extractor on FHIR edge cases: units, panels, statuses, windows, duplicates."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.fhir.record import PatientRecord
from cds.services.deterioration.features import extract, feature_names
from cds.services.deterioration.news2 import news2

from .fhir import NOW, bp_panel, component, obs, patient, procedure


def features(*resources):
    return extract(PatientRecord.from_resources([patient(), *resources], now=NOW))


def test_fahrenheit_is_converted_to_celsius() -> None:
    assert features(obs("8310-5", 100.4, "[degF]")).values["temperature"] == pytest.approx(38.0)


def test_creatinine_in_micromoles_becomes_mg_per_dl() -> None:
    assert features(obs("2160-0", 176.8, "umol/L")).values["creatinine"] == pytest.approx(2.0, abs=0.01)


def test_kilopascals_become_mmhg() -> None:
    f = features(obs("2703-7", 8.0, "kPa"), obs("2019-8", 5.3, "kPa"))
    assert f.values["pao2"] == pytest.approx(60.0, abs=0.1)
    assert f.values["paco2"] == pytest.approx(39.75, abs=0.1)


def test_glucose_and_urea_in_mmol_per_litre() -> None:
    f = features(obs("2345-7", 7.0, "mmol/L"), obs("3094-0", 7.0, "mmol/L"))
    assert f.values["glucose"] == pytest.approx(126.1, abs=0.2)
    assert f.values["bun"] == pytest.approx(19.6, abs=0.1)  # mmol/L urea x 2.8 = mg/dL urea nitrogen


def test_fio2_as_a_fraction_and_oxygen_flow() -> None:
    f = features(obs("3150-0", 0.4, "1"))
    assert f.values["fio2"] == pytest.approx(40.0)
    assert f.on_oxygen is True
    assert features(obs("3151-8", 0, "L/min")).on_oxygen is False
    assert features().on_oxygen is None


@pytest.mark.parametrize("panel", ["85354-9", "55284-4"])
def test_bp_panels_give_systolic_diastolic_and_a_derived_mean(panel: str) -> None:
    f = features(bp_panel(90, 60, code=panel))
    assert (f.values["systolic_bp"], f.values["diastolic_bp"]) == (90, 60)
    assert f.values["mean_bp"] == pytest.approx(70.0)


def test_stand_alone_bp_codes_and_a_charted_mean() -> None:
    f = features(obs("8480-6", 150, "mm[Hg]"), obs("8462-4", 95, "mm[Hg]"), obs("8478-0", 62, "mm[Hg]"))
    assert (f.values["systolic_bp"], f.values["diastolic_bp"], f.values["mean_bp"]) == (150, 95, 62)


def test_gcs_total_or_components_at_the_same_time() -> None:
    assert features(obs("9269-2", 9, "{score}")).values["gcs_total"] == 9
    panel = obs(
        "35088-4",
        hours_ago=2,
        components=[
            component("9267-6", 3, "{score}"),
            component("9270-0", 4, "{score}"),
            component("9268-4", 6, "{score}"),
        ],
    )
    f = features(panel)
    assert (f.values["gcs_total"], f.values["gcs_motor"]) == (13, 6)
    assert f.consciousness[0] == "C"
    # components charted at different times are not added up
    apart = features(
        obs("9267-6", 4, "{score}", 1), obs("9270-0", 5, "{score}", 2), obs("9268-4", 6, "{score}", 3)
    )
    assert math.isnan(apart.values["gcs_total"])


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled", "registered", "unknown"])
def test_invalid_statuses_are_ignored(status: str) -> None:
    f = features(obs("8867-4", 150, "/min", status=status), obs("8867-4", 80, "/min", hours_ago=2))
    assert f.values["heart_rate"] == 80


def test_preliminary_and_amended_values_count() -> None:
    f = features(
        obs("8867-4", 150, "/min", status="preliminary"), obs("9279-1", 30, "/min", status="amended")
    )
    assert (f.values["heart_rate"], f.values["respiratory_rate"]) == (150, 30)


def test_values_outside_the_24_hour_window_are_ignored() -> None:
    f = features(
        obs("8867-4", 150, "/min", hours_ago=24.5),
        obs("8867-4", 140, "/min", hours_ago=-1),
        obs("8867-4", 90, "/min", hours_ago=23.9),
    )
    assert f.values["heart_rate"] == 90


def test_a_value_without_a_time_or_unit_or_with_an_absent_reason_is_ignored() -> None:
    no_time = obs("8867-4", 150, "/min")
    del no_time["effectiveDateTime"]
    absent = obs("9279-1", hours_ago=1, dataAbsentReason={"text": "refused"})
    f = features(no_time, obs("2160-0", 2.0, None), absent)
    assert all(math.isnan(f.values[n]) for n in ("heart_rate", "creatinine", "respiratory_rate"))


def test_implausible_values_are_dropped() -> None:
    assert math.isnan(features(obs("8310-5", 370, "Cel")).values["temperature"])


def test_worst_is_feature_specific() -> None:
    f = features(
        obs("8867-4", 40, "/min", 3),
        obs("8867-4", 120, "/min", 2),
        obs("8867-4", 75, "/min", 1),  # furthest from 75
        bp_panel(85, 40, 3),
        bp_panel(140, 90, 1),  # lowest systolic
        obs("2160-0", 1.1, "mg/dL", 4),
        obs("2160-0", 2.4, "mg/dL", 2),  # highest creatinine
        obs("59408-5", 91, "%", 5),
        obs("59408-5", 97, "%", 1),  # lowest SpO2
    )
    assert (f.values["heart_rate"], f.values["systolic_bp"], f.values["creatinine"], f.values["spo2"]) == (
        120,
        85,
        2.4,
        91,
    )
    # NEWS2 scores the newest set, not the worst
    assert (f.latest["heart_rate"].value, f.latest["systolic_bp"].value, f.latest["spo2"].value) == (
        75,
        140,
        97,
    )
    assert news2(f.news2_inputs()).parts["pulse"] == 0
    assert news2(f.worst_news2_inputs()).parts["pulse"] == 2


def test_duplicates_count_once_and_urine_volumes_add_up() -> None:
    a = obs("9187-6", 300, "mL", hours_ago=2)
    same = dict(a, id="copy-of-a")  # the same reading sent twice under another id
    f = features(a, same, obs("9187-6", 0.2, "L", hours_ago=6))
    assert f.values["urine_output"] == pytest.approx(500)


def test_missing_stays_nan_never_zero() -> None:
    f = features()
    assert set(f.values) == set(feature_names())
    assert all(math.isnan(v) for k, v in f.values.items() if k not in ("age", "male"))
    assert f.values["male"] == 1.0 and f.values["age"] == 80


def test_procedures_in_the_window_set_flags() -> None:
    f = features(
        procedure("40617009"),
        procedure("108241001", status="completed", start_hours_ago=50, end_hours_ago=30),
    )
    assert f.values["ventilated"] == 1.0 and f.on_oxygen is True
    assert math.isnan(f.values["dialysis"])  # ended before the window
    assert math.isnan(features(procedure("40617009", status="not-done")).values["ventilated"])


def test_acvpu_is_read_from_snomed_or_text() -> None:
    voice = obs(
        "67775-7",
        hours_ago=1,
        valueCodeableConcept={"coding": [{"system": "http://snomed.info/sct", "code": "450847001"}]},
    )
    assert features(voice).consciousness[0] == "V"
    alert = obs("67775-7", hours_ago=0.5, valueCodeableConcept={"text": "Alert"})
    assert features(voice, alert).consciousness[0] == "A"  # the newest wins


def test_stale_vitals_are_named() -> None:
    f = features(obs("8867-4", 80, "/min", hours_ago=13), obs("9279-1", 16, "/min", hours_ago=1))
    assert f.stale(["heart_rate", "respiratory_rate", "spo2"]) == ["heart_rate"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
_codes = st.sampled_from(
    ["8867-4", "85354-9", "8480-6", "9269-2", "9267-6", "2160-0", "67775-7", "3150-0", "x"]
)


@settings(max_examples=200, deadline=None)
@given(
    code=_codes,
    value=_json | st.fixed_dictionaries({"value": _json, "code": _json, "unit": _json}),
    component=_json | st.lists(st.fixed_dictionaries({"code": _json, "valueQuantity": _json}), max_size=3),
    effective=_json | st.just("2024-05-01T11:00:00Z"),
    concept=_json,
)
def test_malformed_observations_never_raise(code, value, component, effective, concept) -> None:
    o = obs(code, 1, "/min")
    o.update(
        valueQuantity=value, component=component, effectiveDateTime=effective, valueCodeableConcept=concept
    )
    f = features(o)
    assert set(f.values) == set(feature_names())


@settings(max_examples=100, deadline=None)
@given(
    gender=_json,
    birth=_json,
    proc_code=_json,
    period=_json | st.fixed_dictionaries({"start": _json, "end": _json}),
    status=_json,
    concept=_json | st.fixed_dictionaries({"coding": _json, "text": _json}),
)
def test_malformed_patient_procedure_and_acvpu_never_raise(
    gender, birth, proc_code, period, status, concept
) -> None:
    pat = {"resourceType": "Patient", "id": "p1", "gender": gender, "birthDate": birth}
    proc = {
        "resourceType": "Procedure",
        "id": "x",
        "status": status if isinstance(status, str) else "completed",
        "code": proc_code,
        "performedPeriod": period,
    }
    acvpu = obs("67775-7", valueCodeableConcept=concept)
    f = extract(PatientRecord.from_resources([pat, proc, acvpu], now=NOW))
    assert set(f.values) == set(feature_names())


def test_new_resource_types_are_read_and_malformed_ones_ignored() -> None:
    """Conditions give categories, MedicationAdministrations vasoactive agents; junk never raises."""
    from cds.fhir.record import PatientRecord
    from cds.services.deterioration.features import extract

    from .fhir import NOW, at, patient

    rx = "http://www.nlm.nih.gov/research/umls/rxnorm"

    def ma(code: str, hours_ago: float, status: str = "in-progress", **kw) -> dict:
        return {
            "resourceType": "MedicationAdministration",
            "id": f"ma-{code}-{hours_ago}",
            "status": status,
            "medicationCodeableConcept": {"coding": [{"system": rx, "code": code}]},
            "effectiveDateTime": at(hours_ago),
            **kw,
        }

    good = [
        patient(),
        {
            "resourceType": "Condition",
            "id": "c1",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C78.7"}]},
        },
        {
            "resourceType": "Condition",
            "id": "c2",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "84114007"}]},
        },
        ma("7512", 2),  # norepinephrine
        ma("7512", 3),
        ma("11149", 1),  # vasopressin
        ma("3992", 30),  # epinephrine, outside the 24 h window
        ma("3616", 2, status="not-done"),  # dobutamine not given
    ]
    junk = [
        {"resourceType": "Condition", "id": "j1", "code": "C78.7", "onsetDateTime": 5},
        {"resourceType": "Condition", "id": "j2", "code": {"coding": {"code": "I50"}}},
        {
            "resourceType": "MedicationAdministration",
            "id": "j3",
            "status": "completed",
            "medicationCodeableConcept": [1],
        },
        {
            "resourceType": "MedicationAdministration",
            "id": "j4",
            "status": "completed",
            "effectivePeriod": [],
            "medicationCodeableConcept": {"coding": [{"system": rx, "code": "7512"}]},
        },
    ]
    f = extract(PatientRecord.from_resources(good + junk, now=NOW))
    assert f.values["metastatic_cancer"] == 1 and f.values["heart_failure"] == 1
    assert math.isnan(f.values["cirrhosis"])
    assert f.values["vasoactive_agents"] == 2 and f.vasoactive == ("norepinephrine", "vasopressin")
    assert f.vasoactive_time is not None and f.vasoactive_time.isoformat() == at(1)
    assert math.isnan(extract(PatientRecord.from_resources([patient()], now=NOW)).values["vasoactive_agents"])
