"""Messy FHIR fragments for checking the hook path's fast readers against their plain reference
versions: codings with aliases, missing or malformed systems and codes, nulls and wrong types."""

from __future__ import annotations

from hypothesis import strategies as st

from cds.fhir.terminology import LOINC, SNOMED

SYSTEMS = st.sampled_from(
    [LOINC, "http://loinc.org/", "urn:oid:2.16.840.1.113883.6.1", SNOMED, "urn:local", "", None, 7, ["x"]]
)
CODES = st.sampled_from(["2160-0", "6298-4", "8867-4", "38483-4", "123", "", None, 5, ["2160-0"]])
JUNK = st.sampled_from([None, 3, "x", [], {}])

coding = st.one_of(
    JUNK,
    st.fixed_dictionaries({}, optional={"system": SYSTEMS, "code": CODES}),
)
concept = st.one_of(
    JUNK,
    st.fixed_dictionaries({}, optional={"coding": st.one_of(JUNK, st.lists(coding, max_size=3))}),
    st.fixed_dictionaries({}, optional={"system": SYSTEMS, "code": CODES}),  # a bare Coding
)
observation = st.fixed_dictionaries(
    {"resourceType": st.just("Observation")},
    optional={
        "code": concept,
        "component": st.one_of(
            JUNK, st.lists(st.one_of(JUNK, st.fixed_dictionaries({}, optional={"code": concept})), max_size=3)
        ),
        "status": st.sampled_from(["final", "amended", "preliminary", "registered", None, 3]),
        "effectiveDateTime": st.sampled_from(["2026-11-01T10:00:00Z", "2026-10-01", "junk", None]),
    },
)
