"""The hook path's fast readers give what their plain versions give, on messy input.

Each reference below is the reader as it was before it was made faster (issue 18, speed): the
fast version must agree with it on any input, not only on well-formed charts.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cds.fhir.terminology import LOINC, canonical_system, codings
from cds.fhir.terminology.maps import STANDARD_SYSTEMS, unmapped_systems
from cds.fhir.value import dicts
from cds.services.medication_risk.patient import _loinc_hits
from tests.speed.strategies import concept, observation


def unmapped_reference(observations: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for obs in observations:
        parts = [obs.get("code")] + [c.get("code") for c in dicts(obs.get("component"))]
        systems: set[str] = set()
        has_loinc = False
        for part in parts:
            if not isinstance(part, dict):
                continue
            for c in dicts(part.get("coding")):
                if isinstance(c.get("code"), str):
                    s = canonical_system(c.get("system") if isinstance(c.get("system"), str) else None)
                    if s in STANDARD_SYSTEMS:
                        has_loinc = True
                    else:
                        systems.add(s or "none")
        if not has_loinc:
            out += sorted(systems)
    return out


@settings(max_examples=400, deadline=None)
@given(st.lists(observation, max_size=6))
def test_unmapped_systems_agrees_with_the_plain_reading(observations: list[dict[str, Any]]) -> None:
    assert unmapped_systems(observations) == unmapped_reference(observations)


BY_CODE = {"2160-0": "creatinine", "38483-4": "creatinine", "6298-4": "potassium", "123": "other"}


@settings(max_examples=400, deadline=None)
@given(concept)
def test_loinc_hits_agrees_with_codings(value: Any) -> None:
    hit: set[str] = set()
    _loinc_hits(value, BY_CODE, hit)
    assert hit == {BY_CODE[c] for s, c in codings(value) if s == LOINC and c in BY_CODE}
