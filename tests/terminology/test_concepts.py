"""The concept list is built from the tables the features and rules read, not a second copy."""

from __future__ import annotations

import json
import subprocess
import sys

from cds.fhir.terminology.concepts import KNOWLEDGE, concepts


def _all_codes() -> set[str]:
    return {x.code for c in concepts() for x in c.codes}


def test_every_code_the_deterioration_features_read_is_listed_with_its_attributes() -> None:
    doc = json.loads((KNOWLEDGE / "deterioration_features.json").read_text())
    by_code = {x.code: x for c in concepts() for x in c.codes}
    for f in doc["features"]:
        for code in f["codes"]:
            assert code in by_code and by_code[code].is_known(), (f["name"], code)


def test_every_medication_lab_code_is_listed_with_its_attributes() -> None:
    doc = json.loads((KNOWLEDGE / "medications" / "labs.json").read_text())
    by_code = {x.code: x for c in concepts() for x in c.codes}
    for lid, lab in doc["labs"].items():
        for code in lab["loinc"]:
            assert code in by_code and by_code[code].is_known(), (lid, code)


def test_tables_sharing_a_code_are_one_concept() -> None:
    (creat,) = [c for c in concepts() if "2160-0" in {x.code for x in c.codes}]
    assert {"deterioration:creatinine", "medication-risk:creatinine"} <= set(creat.used_by)
    assert {"2160-0", "38483-4", "14682-9"} <= {x.code for x in creat.codes}
    codes = [x.code for c in concepts() for x in c.codes]
    assert len(codes) == len(set(codes)), "a code counts for one concept only"


def test_units_of_the_attribute_table_parse_in_ucum() -> None:
    from cds.fhir.units import convert

    for c in concepts():
        for x in c.codes:
            if x.is_known() and x.unit and not x.unit.startswith("{") and x.unit != "[pH]":
                assert convert(1.0, x.unit, x.unit) == 1.0, x


def test_cli_lists_concepts_as_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cds", "terminology", "concepts", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(out.stdout)
    ids = {c["id"] for c in doc}
    assert {"creatinine", "potassium", "lactate", "heart_rate", "inr", "qtc", "egfr"} <= ids
    assert sum(len(c["codes"]) for c in doc) == len(_all_codes())
