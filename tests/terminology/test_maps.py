"""Reviewed maps in the service: translation, source-system scope, templates, unmapped counting."""

from __future__ import annotations

from cds.fhir.record import PatientRecord
from cds.fhir.terminology import CodeSet
from cds.fhir.terminology.maps import TerminologyMaps, unmapped_systems

LOINC = "http://loinc.org"
MAPS = TerminologyMaps({("urn:a", "K"): "2823-3", ("urn:a", "CREAT"): "2160-0"})


def obs(system: str, code: str, **kw) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"{system}-{code}",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        **kw,
    }


def test_mapped_local_code_reads_as_loinc_everywhere() -> None:
    o = obs("urn:a", "K", valueQuantity={"value": 5.9, "unit": "mmol/L"})
    record = PatientRecord.from_resources([o], terminology=MAPS)
    assert record.observations(CodeSet.of(LOINC, "2823-3"))
    assert o["code"]["coding"] == [{"system": "urn:a", "code": "K"}], "the caller's resource is untouched"
    assert not PatientRecord.from_resources([o]).observations(CodeSet.of(LOINC, "2823-3"))


def test_a_map_applies_to_its_source_system_only() -> None:
    other = obs("urn:b", "K")
    record = PatientRecord.from_resources([other], terminology=MAPS)
    assert not record.observations(CodeSet.of(LOINC, "2823-3"))


def test_components_are_translated() -> None:
    o = obs("urn:a", "PANEL", component=[{"code": {"coding": [{"system": "urn:a", "code": "CREAT"}]}}])
    assert PatientRecord.from_resources([o], terminology=MAPS).observations(CodeSet.of(LOINC, "2160-0"))


def test_loinc_filtered_templates_gain_the_mapped_local_codes() -> None:
    t = "Observation?patient={{context.patientId}}&code=http://loinc.org|2823-3,http://loinc.org|777-3&_count=10"
    out = MAPS.widen_template(t)
    assert out.startswith("Observation?patient={{context.patientId}}&code=")
    assert "http://loinc.org|2823-3,http://loinc.org|777-3,urn:a|K" in out
    assert (
        MAPS.widen_template("Condition?patient={{context.patientId}}")
        == "Condition?patient={{context.patientId}}"
    )
    assert TerminologyMaps().widen_template(t) == t


def test_unmapped_systems_count_observations_without_loinc() -> None:
    record = PatientRecord.from_resources(
        [
            obs("urn:a", "K"),
            obs("urn:a", "NEW"),
            obs("urn:b", "X"),
            obs(LOINC, "8867-4"),
            {"resourceType": "Observation", "id": "n", "status": "final", "code": {"text": "free text"}},
        ],
        terminology=MAPS,
    )
    assert sorted(unmapped_systems(record.valid("Observation"))) == ["urn:a", "urn:b"]
