"""The mapper's hard checks: specimen, unit dimension, timing, site, words; and its ConceptMap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.fhir.terminology.mapper import LocalRow, concept_map


def one(mapper, display: str, unit: str = "", specimen: str = ""):
    (d,) = mapper.map_rows([LocalRow("X", display, unit=unit, specimen=specimen)])
    return d


@pytest.mark.parametrize(
    ("display", "unit", "code"),
    [
        ("Creatinine", "mg/dL", "2160-0"),
        ("Creatinine", "umol/L", "14682-9"),
        ("Creatinine", "mmol/L", "14682-9"),
        ("CREAT WB", "mg/dL", "38483-4"),
        ("HbA1c", "%", "4548-4"),
        ("Temp", "[degF]", "8310-5"),
        ("Temp rectal", "Cel", "8332-9"),
        ("SpO2", "%", "59408-5"),
        ("Glucose POC", "mg/dL", "41653-7"),
    ],
)
def test_the_unit_and_specimen_pick_the_code(lexical_mapper, display, unit, code) -> None:
    d = one(lexical_mapper, display, unit)
    assert (d.equivalence, d.target.code) == ("equivalent", code), d.evidence


@pytest.mark.parametrize(
    ("display", "unit", "specimen", "why"),
    [
        ("Creatinine", "mg/dL", "urine", "specimen"),
        ("Creatinine 24 hr urine", "mg/(24.h)", "", "specimen"),
        ("HbA1c", "mmol/mol", "", "unit"),
        ("Potassium", "mg/dL", "", "unit"),  # no molar mass on file: mg/dL does not convert
        ("Albumin", "umol/L", "", "unit"),  # (glucose mmol/L and lactate mg/dL now have codes: issue 16)
        ("pO2 venous", "mm[Hg]", "", "arterial"),
        ("pH", "[pH]", "", "arterial"),
        ("O2 sat venous", "%", "", "arterial"),
        ("Creatinine", "", "", "no unit"),
        ("Bilirubin direct", "mg/dL", "", "method"),
        ("Cholesterol in HDL", "mg/dL", "", "words differ"),
        ("QT interval", "ms", "", "words differ"),
        ("Calcium ionized", "mmol/L", "", ""),
    ],
)
def test_hard_checks_stop_an_automatic_map(lexical_mapper, display, unit, specimen, why) -> None:
    d = one(lexical_mapper, display, unit, specimen)
    assert d.equivalence in ("inexact", "unmatched")
    assert why in " ".join(d.evidence)


@settings(max_examples=60, deadline=None)
@given(
    analyte=st.sampled_from(["creatinine", "potassium", "sodium", "glucose", "lactate", "urea nitrogen"]),
    spec=st.sampled_from(["urine", "CSF", "pleural fluid", "stool", "dialysate", "24h urine"]),
    unit=st.sampled_from(["mg/dL", "mmol/L", "umol/L", "", "mg/(24.h)"]),
    order=st.booleans(),
)
def test_no_body_fluid_but_blood_maps_automatically(lexical_mapper, analyte, spec, unit, order) -> None:
    """Property: whatever the spelling order and unit, a non-blood specimen is never `equivalent`."""
    text = f"{analyte} {spec}" if order else f"{spec} {analyte}"
    assert one(lexical_mapper, text, unit).equivalence != "equivalent"


def test_concept_map_is_r4_shaped(lexical_mapper) -> None:
    rows = [
        LocalRow("A", "K+ SER", system="urn:a", unit="mmol/L"),
        LocalRow("B", "Creatinine urine", system="urn:a", unit="mg/dL"),
        LocalRow("C", "Ferritin", system="urn:b", unit="ng/mL"),
    ]
    doc = concept_map(lexical_mapper.map_rows(rows))
    assert doc["resourceType"] == "ConceptMap"
    groups = {g["source"]: g for g in doc["group"]}
    assert set(groups) == {"urn:a", "urn:b"} and all(g["target"] == "http://loinc.org" for g in doc["group"])
    a, b = groups["urn:a"]["element"]
    (t,) = a["target"]
    assert (t["code"], t["equivalence"]) == ("2823-3", "equivalent")
    assert b["target"][0]["equivalence"] == "inexact" and b["target"][0]["comment"]  # R4 cmd-1
    (c,) = groups["urn:b"]["element"]
    assert c["target"][0]["equivalence"] == "unmatched" and "code" not in c["target"][0]
    conf = {e["url"]: e for e in t["extension"][0]["extension"]}["confidence"]["valueDecimal"]
    assert 0.9 <= conf <= 1.0


def test_the_map_round_trips_into_the_service(lexical_mapper, tmp_path) -> None:
    import json

    from cds.fhir.terminology.maps import read_concept_map

    rows = [
        LocalRow("K", "K+ SER", system="urn:a", unit="mmol/L"),
        LocalRow("U", "Creat urine", system="urn:a"),
    ]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(concept_map(lexical_mapper.map_rows(rows))))
    assert read_concept_map(path) == {("urn:a", "K"): "2823-3"}  # the inexact row is not used
