"""Charts from another country's hospital system (issue 16): SI units, other LOINC codes for the same
quantity, arterial lines, blood-gas analysers, ventilators. The same patient charted that way must
give the same features as when charted in US units under the US codes, never silently lose an input,
and never let a venous blood gas stand in for an arterial one."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.cli import main
from cds.fhir.record import PatientRecord
from cds.fhir.terminology.concepts import loinc_table
from cds.fhir.units import convert
from cds.services.deterioration.features import extract, knowledge, specs

from .fhir import NOW, component, obs, patient

SPECS = {s.name: s for s in specs()}
ADDED = [
    (f["name"], code, note) for f in knowledge()["features"] for code, note in f.get("code_notes", {}).items()
]
RELATED = {code: c for f in knowledge()["features"] for code, c in f.get("related_codes", {}).items()}
ARTERIAL_GASES = ("ph", "pao2", "paco2")
LAB_FEATURES = [s.name for s in specs() if s.category == "lab"]


def features(*resources: dict[str, Any]):
    return extract(PatientRecord.from_resources([patient(), *resources], now=NOW))


def interior(name: str, share: float) -> float:
    """A value inside the feature's plausible range, `share` of the way from its low to its high end."""
    s = SPECS[name]
    return s.low + (s.high - s.low) * (0.02 + 0.96 * share)


# --- the code lists as data -----------------------------------------------------------------------
def test_codes_were_added_to_every_lab_and_the_named_vitals() -> None:
    per_feature: dict[str, int] = {}
    for name, _, _ in ADDED:
        per_feature[name] = per_feature.get(name, 0) + 1
    expected = set(LAB_FEATURES) | {
        "heart_rate",
        "systolic_bp",
        "diastolic_bp",
        "mean_bp",
        "temperature",
        "fio2",
    }
    assert expected <= set(per_feature), expected - set(per_feature)


@pytest.mark.parametrize(("name", "code", "note"), ADDED, ids=[c for _, c, _ in ADDED])
def test_each_added_code_is_named_as_the_attribute_table_names_it(name: str, code: str, note: dict) -> None:
    entry = loinc_table()["codes"][code]
    assert entry["name"] == note["name"]
    assert set(note["sources"]) <= set(knowledge()["code_sources"])


def test_arterial_gas_features_list_no_venous_or_capillary_code() -> None:
    """pH, PaO2 and PaCO2 are arterial (APACHE III): arterial codes only, and for the partial
    pressures not even unspecified blood (a venous PO2 of 40 read as PaO2 would be a false alarm;
    pH keeps its long-standing unspecified-blood code 11558-4, venous pH differing by ~0.05)."""
    table = loinc_table()["codes"]
    for name in ARTERIAL_GASES:
        allowed = ("BldA", "Bld") if name == "ph" else ("BldA",)
        for code in SPECS[name].codes:
            assert table[code]["system"] in allowed, (name, code, table[code]["system"])


@pytest.mark.parametrize(
    ("code", "value", "unit"),
    [
        ("2746-6", 7.21, "[pH]"),  # pH of Venous blood
        ("19213-8", 7.21, "[pH]"),  # pH of Mixed venous blood
        ("2705-2", 40.0, "mm[Hg]"),  # Oxygen [Partial pressure] in Venous blood
        ("2021-4", 55.0, "mm[Hg]"),  # Carbon dioxide [Partial pressure] in Venous blood
        ("2021-4", 7.3, "kPa"),
        ("11556-8", 40.0, "mm[Hg]"),  # Oxygen [Partial pressure] in Blood: may be a venous sample
        ("11557-6", 55.0, "mm[Hg]"),  # Carbon dioxide [Partial pressure] in Blood: likewise
    ],
)
def test_a_venous_blood_gas_never_feeds_the_arterial_features(code: str, value: float, unit: str) -> None:
    f = features(obs(code, value, unit))
    assert all(math.isnan(f.values[n]) for n in ARTERIAL_GASES)


@pytest.mark.parametrize(("name", "code", "note"), ADDED, ids=[c for _, c, _ in ADDED])
def test_each_added_code_is_read_in_its_own_unit(name: str, code: str, note: dict) -> None:
    spec = SPECS[name]
    unit = loinc_table()["codes"][code]["unit"]  # the code's example UCUM unit (mass or molar)
    value = interior(name, 0.37)
    related = RELATED.get(code)  # a related substance (urea for urea nitrogen): its own molar mass
    own = value / related["factor"] if related else value
    mass = related["molar_mass"] if related else spec.molar_mass
    sent = own if unit == spec.unit else convert(own, spec.unit, unit, mass)
    assert sent is not None, f"{code} in {unit} does not convert to {spec.unit}: not a pure unit change"
    assert features(obs(code, sent, unit)).values[name] == pytest.approx(value, rel=1e-9)


# --- urea (not urea nitrogen) by mass ----------------------------------------------------------------
def test_a_related_code_factor_is_the_ratio_of_the_molar_masses() -> None:
    for f in knowledge()["features"]:
        for code, c in f.get("related_codes", {}).items():
            assert c["factor"] == pytest.approx(f["molar_mass"] / c["molar_mass"], rel=1e-4), code


@settings(max_examples=40, deadline=None)
@given(st.floats(5.0, 600.0))
def test_urea_by_mass_is_read_as_urea_nitrogen(urea_mg_dl: float) -> None:
    """Textbook: BUN (mg/dL) = urea (mg/dL) / 2.14; the same urea in mmol/L under either urea code agrees."""
    bun = features(obs("3091-6", urea_mg_dl, "mg/dL")).values["bun"]
    assert bun == pytest.approx(urea_mg_dl / 2.14, rel=0.002)
    urea_mmol = urea_mg_dl * 10 / 60.06  # mg/dL -> mg/L -> mmol/L
    for code in ("3091-6", "22664-7"):
        assert features(obs(code, urea_mmol, "mmol/L")).values["bun"] == pytest.approx(bun, rel=0.001)


def test_urea_by_mass_is_not_read_as_urea_nitrogen_mass() -> None:
    """The trap the factor avoids: 60 mg/dL of urea is 28 mg/dL of urea nitrogen, not 60."""
    assert features(obs("3091-6", 60.0, "mg/dL")).values["bun"] == pytest.approx(27.99, abs=0.01)
    assert features(obs("3094-0", 60.0, "mg/dL")).values["bun"] == 60.0


def test_a_urea_row_is_never_mapped_onto_a_urea_nitrogen_code() -> None:
    """Urea codes are related codes, not the feature's own: the terminology mapper, which maps local
    codes onto the features' codes, must not send a urea row to a BUN code (a 2.14-fold error)."""
    from cds.fhir.terminology.mapper import LocalRow, Mapper

    rows = [
        LocalRow(f"u{i}", name, unit=unit)
        for i, (name, unit) in enumerate(
            [("Urea", "mg/dL"), ("Urea", "mmol/L"), ("UREA", "mg/dL"), ("Urea serum", "mg/dL")]
        )
    ]
    for d in Mapper(embeddings=False).map_rows(rows):
        assert not (d.equivalence == "equivalent" and d.target and d.target.code in SPECS["bun"].codes), d


# --- the same patient, charted in SI units under other codes ---------------------------------------
Conv = Callable[[float], float]
_same: Conv = lambda v: v  # noqa: E731

# feature -> (US code, US unit, value in US unit, other code, other unit, value in the other unit).
# The factors are the textbook SI conversion factors (AMA Manual of Style, SI conversion table;
# 1 mm Hg = 0.133322 kPa), written out independently of the converter under test.
CHARTS: dict[str, tuple[str, str, Conv, str, str, Conv]] = {
    "creatinine": ("2160-0", "mg/dL", _same, "14682-9", "umol/L", lambda v: v * 88.4),
    "bun": ("3094-0", "mg/dL", _same, "22664-7", "mmol/L", lambda v: v * 0.357),  # urea mmol/L
    "glucose": ("2345-7", "mg/dL", _same, "14749-6", "mmol/L", lambda v: v * 0.0555),
    "bilirubin": ("1975-2", "mg/dL", _same, "14631-6", "umol/L", lambda v: v * 17.1),
    "albumin": ("1751-7", "g/dL", _same, "61152-5", "g/L", lambda v: v * 10),
    "wbc": ("6690-2", "10*3/uL", _same, "804-5", "x10E9/L", _same),
    "hematocrit": ("4544-3", "%", _same, "32354-3", "L/L", lambda v: v / 100),
    "lactate": ("2524-7", "mmol/L", _same, "14118-4", "mg/dL", lambda v: v * 9.01),
    "sodium": ("2951-2", "mmol/L", _same, "32717-1", "mmol/l", _same),
    "potassium": ("2823-3", "mEq/L", _same, "32713-0", "mmol/L", _same),
    "ph": ("2744-1", "[pH]", _same, "33254-4", "[pH]", _same),
    "pao2": ("2703-7", "mm[Hg]", _same, "19255-9", "kPa", lambda v: v * 0.133322),
    "paco2": ("2019-8", "mm[Hg]", _same, "32771-8", "kPa", lambda v: v * 0.133322),
    "heart_rate": ("8867-4", "/min", _same, "8889-8", "/min", _same),
    "temperature": ("8310-5", "[degF]", lambda c: c * 9 / 5 + 32, "8329-5", "Cel", _same),
    "fio2": ("3150-0", "%", _same, "19994-3", "1", lambda v: v / 100),
}
# Rounded textbook factors: within 0.05% of the molar masses on the specs (lactate: 9.01, lactic acid
# 90.08 g/mol, the factor laboratories use).
TOLERANCE: dict[str, float] = {}
REL = 0.005


def _charts(values: dict[str, float]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    us, other = [], []
    for i, (name, (c1, u1, f1, c2, u2, f2)) in enumerate(CHARTS.items()):
        us.append(obs(c1, f1(values[name]), u1, hours_ago=1 + i % 5))
        other.append(obs(c2, f2(values[name]), u2, hours_ago=1 + i % 5))
    return us, other


@settings(max_examples=40, deadline=None)
@given(st.fixed_dictionaries({name: st.floats(0.0, 1.0) for name in CHARTS}))
def test_an_si_chart_under_other_codes_gives_the_us_chart_features(shares: dict[str, float]) -> None:
    values = {name: interior(name, share) for name, share in shares.items()}
    us, other = _charts(values)
    a, b = features(*us).values, features(*other).values
    for name, value in values.items():
        tol = TOLERANCE.get(name, REL)
        assert a[name] == pytest.approx(value, rel=1e-6), name
        assert b[name] == pytest.approx(a[name], rel=tol), name


# --- arterial line and cuff -------------------------------------------------------------------------
CUFF = {"systolic_bp": "8480-6", "diastolic_bp": "8462-4", "mean_bp": "8478-0"}
LINE = {"systolic_bp": "76215-3", "diastolic_bp": "76213-8", "mean_bp": "76214-6"}


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(CUFF)),
    readings=st.lists(
        st.tuples(st.booleans(), st.floats(0.0, 1.0), st.floats(0.5, 23.5)), min_size=1, max_size=8
    ),
)
def test_cuff_and_arterial_line_readings_share_the_worst_rule(
    name: str, readings: list[tuple[bool, float, float]]
) -> None:
    spec = SPECS[name]
    charted = [(round(interior(name, share), 1), hours) for _, share, hours in readings]
    resources = [
        obs((LINE if line else CUFF)[name], value, "mm[Hg]", hours_ago=hours)
        for (line, _, _), (value, hours) in zip(readings, charted, strict=True)
    ]
    got = features(*resources).values[name]
    values = [v for v, _ in charted]
    if spec.worst == "min":
        assert got == min(values)
    else:  # furthest from the reference, either side
        assert abs(got - spec.reference) == max(abs(v - spec.reference) for v in values)


def test_an_arterial_line_panel_gives_its_own_mean() -> None:
    panel = obs(
        "85354-9",
        hours_ago=2,
        components=[component("76215-3", 84, "mm[Hg]"), component("76213-8", 42, "mm[Hg]")],
    )
    f = features(panel)
    assert (f.values["systolic_bp"], f.values["diastolic_bp"]) == (84, 42)
    assert f.values["mean_bp"] == pytest.approx(56.0)


def test_the_systolic_trend_reads_the_cuff_only() -> None:
    cuff = [obs("8480-6", 130, "mm[Hg]", hours_ago=22), obs("8480-6", 100, "mm[Hg]", hours_ago=2)]
    line = [obs("76215-3", 90, "mm[Hg]", hours_ago=21), obs("76215-3", 160, "mm[Hg]", hours_ago=1)]
    assert features(*cuff).values["systolic_trend"] == -30
    both = features(*cuff, *line)
    assert both.values["systolic_trend"] == -30
    assert both.values["systolic_bp"] == 90  # ... while the worst value counts the line too


# --- units EHRs send ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("unit", "to", "value", "expected"),
    [
        ("x10E9/L", "10*3/uL", 12.0, 12.0),
        ("10E9/L", "10*3/uL", 12.0, 12.0),
        ("x10^9/L", "10*3/uL", 12.0, 12.0),
        ("x10*9/L", "10*3/uL", 12.0, 12.0),
        ("Gpt/L", "10*3/uL", 12.0, 12.0),
        ("Gpt/l", "10*3/uL", 12.0, 12.0),
        ("x10E3/uL", "10*3/uL", 12.0, 12.0),
        ("10E3/uL", "10*3/uL", 12.0, 12.0),
        ("x10*3/uL", "10*3/uL", 12.0, 12.0),
        ("K/µL", "10*3/uL", 12.0, 12.0),  # micro sign U+00B5
        ("K/μL", "10*3/uL", 12.0, 12.0),  # Greek mu U+03BC
        ("10^3/µL", "10*3/uL", 12.0, 12.0),
        ("10^3/μL", "10*3/uL", 12.0, 12.0),
        ("Tsd/µl", "10*3/uL", 12.0, 12.0),
        ("Tsd/µL", "10*3/uL", 12.0, 12.0),
        ("µmol/l", "umol/L", 80.0, 80.0),
        ("μmol/l", "umol/L", 80.0, 80.0),
        ("mmol/l", "mmol/L", 4.0, 4.0),
        ("kpa", "mm[Hg]", 10.0, 75.006),
        ("KPa", "mm[Hg]", 10.0, 75.006),
        ("Torr", "mm[Hg]", 40.0, 40.0),
        ("torr", "mm[Hg]", 40.0, 40.0),
        ("°C", "Cel", 38.5, 38.5),
        ("ºC", "Cel", 38.5, 38.5),  # masculine ordinal U+00BA, typed for the degree sign
    ],
)
def test_unit_spellings_ehrs_send_convert(unit: str, to: str, value: float, expected: float) -> None:
    assert convert(value, unit, to) == pytest.approx(expected, rel=1e-4)


def test_gauss_per_litre_is_not_read_as_a_cell_count() -> None:
    """UCUM G is gauss: `G/L` is not guessed to be 10^9/L (German labs' Gpt/L is)."""
    assert convert(12.0, "G/L", "10*3/uL") is None


# --- through `cds score deterioration` ---------------------------------------------------------------
def _external_chart() -> list[dict[str, Any]]:
    """An ICU day charted by a European system: SI units, arterial line, analyser and ventilator codes."""
    return [
        patient(),
        obs("8889-8", 124, "/min", 1),
        obs("9279-1", 27, "/min", 1),
        obs("59408-5", 89, "%", 1),
        obs(
            "85354-9",
            hours_ago=1,
            components=[component("76215-3", 86, "mmHg"), component("76213-8", 44, "mmHg")],
        ),
        obs("8329-5", 38.9, "°C", 2),
        obs("19994-3", 0.6, "1", 2),
        obs("14682-9", 310, "µmol/l", 5),
        obs("22664-7", 21.0, "mmol/l", 5),
        obs("14631-6", 62, "µmol/l", 5),
        obs("14749-6", 12.4, "mmol/l", 5),
        obs("804-5", 19.5, "x10E9/L", 5),
        obs("32354-3", 0.29, "L/L", 5),
        obs("61152-5", 24, "g/l", 5),
        obs("2518-9", 4.6, "mmol/l", 3),
        obs("32717-1", 129, "mmol/l", 3),
        obs("32713-0", 5.8, "mmol/l", 3),
        obs("33254-4", 7.22, "[pH]", 3),
        obs("19255-9", 7.9, "kPa", 3),
        obs("32771-8", 6.6, "kPa", 3),
    ]


def _bundle(path: Path, resources: list[dict[str, Any]]) -> str:
    path.write_text(
        json.dumps(
            {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
        )
    )
    return str(path)


def test_score_command_reads_an_external_si_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    external = _external_chart()
    f = extract(PatientRecord.from_resources(external, now=NOW))
    missing = [n for n in LAB_FEATURES if math.isnan(f.values[n])]
    assert missing == [], f"lab features lost on the external chart: {missing}"

    # The same day in the model's own units under the US codes, at the values read, and without labs.
    twin = [r for r in external if r.get("code", {}).get("coding", [{}])[0].get("code") not in _lab_codes()]
    twin += [obs(CHARTS[n][0], f.values[n], SPECS[n].unit, 4) for n in LAB_FEATURES]
    no_labs = [
        r for r in external if r.get("code", {}).get("coding", [{}])[0].get("code") not in _lab_codes()
    ]
    paths = [
        _bundle(tmp_path / "external.json", external),
        _bundle(tmp_path / "twin.json", twin),
        _bundle(tmp_path / "no-labs.json", no_labs),
    ]
    assert main(["score", "deterioration", *paths, "--at", NOW.isoformat()]) == 0
    ext, us, bare = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert ext["risk"] == pytest.approx(us["risk"], abs=1e-4)
    assert ext["risk"] != pytest.approx(bare["risk"], abs=1e-4)  # the labs did reach the model


def _lab_codes() -> set[str]:
    return {c for n in LAB_FEATURES for c in SPECS[n].codes} | set(RELATED)
