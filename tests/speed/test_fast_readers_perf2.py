"""The second round of hook-path speed-ups (issue 18, perf2) give what the code they replaced gave,
on messy input.

Each reference below is the function as it was before it was made faster: the fast version must
agree with it on any input, not only on well-formed charts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cds.fhir.record import PatientRecord
from cds.fhir.terminology import _ALIASES, LOINC, SNOMED, canonical_system
from cds.fhir.terminology.maps import _STANDARD_SPELLINGS, STANDARD_SYSTEMS, TerminologyMaps
from cds.services.care_gaps.point_of_care import _recoded
from tests.speed.strategies import CODES, JUNK, SYSTEMS, concept, observation

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
MAPS = TerminologyMaps({("urn:local", "123"): "2160-0", ("urn:local", "8867-4"): "6298-4"})


def from_resources_reference(
    resources: Iterable[Mapping[str, Any]], patient_id: str | None, terminology: TerminologyMaps | None
) -> PatientRecord:
    """`PatientRecord.from_resources` before perf2 (one set of (type, id) pairs, setdefault)."""
    seen: set[tuple[str, str]] = set()
    groups: dict[str, list[Any]] = {}
    for res in resources:
        rtype = res.get("resourceType")
        if not isinstance(rtype, str):
            continue
        rid = res.get("id")
        if isinstance(rid, str):
            key = (rtype, rid)
            if key in seen:
                continue
            seen.add(key)
        if terminology and rtype == "Observation":
            res = terminology.translate(res)  # type: ignore[arg-type]
        groups.setdefault(rtype, []).append(res)
    patients = groups.get("Patient", [])
    patient = None
    if patient_id is not None:
        patient = next((p for p in patients if p.get("id") == patient_id), None)
    if patient is None and patients:
        patient = patients[0]
    return PatientRecord(patient=patient, by_type={k: tuple(v) for k, v in groups.items()}, now=NOW)


RTYPES = st.sampled_from(["Patient", "Observation", "Condition", "Encounter", None, 3, ["Patient"]])
IDS = st.sampled_from(["p1", "p2", "o1", "o2", "", None, 7, ["p1"]])
resource = st.one_of(
    observation.flatmap(lambda o: st.fixed_dictionaries({}, optional={"id": IDS}).map(lambda e: {**o, **e})),
    st.fixed_dictionaries({}, optional={"resourceType": RTYPES, "id": IDS, "code": concept}),
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(resource, max_size=12),
    st.sampled_from([None, "p1", "p2", "zz"]),
    st.sampled_from([None, MAPS, TerminologyMaps()]),
)
def test_from_resources_agrees_with_the_previous_indexing(
    resources: list[dict[str, Any]], patient_id: str | None, terminology: TerminologyMaps | None
) -> None:
    fast = PatientRecord.from_resources(resources, now=NOW, patient_id=patient_id, terminology=terminology)
    ref = from_resources_reference(resources, patient_id, terminology)
    assert fast.patient == ref.patient
    assert (fast.patient is None) == (ref.patient is None)
    assert list(fast.by_type) == list(ref.by_type)  # same types, in first-seen order
    assert fast.by_type == ref.by_type
    if terminology is None:  # without maps the record holds the very dicts it was given
        for rtype, group in fast.by_type.items():
            assert all(a is b for a, b in zip(group, ref.by_type[rtype], strict=True))


@given(st.one_of(SYSTEMS, st.sampled_from(sorted(_ALIASES)), st.text(max_size=30)))
def test_standard_spellings_are_the_spellings_canonical_system_reads_as_standard(system: Any) -> None:
    fast = type(system) is str and system in _STANDARD_SPELLINGS
    assert fast == (canonical_system(system) in STANDARD_SYSTEMS)


def recoded_reference(
    record: PatientRecord, rtype: str, codes: Mapping[str, str], system: str, extra: dict[str, str]
) -> tuple[PatientRecord, set[str]]:
    """`point_of_care._recoded` before perf2 (no pre-filter of the code values)."""
    out: list[dict[str, Any]] | None = None
    names: set[str] = set()
    extra_code, extra_system = extra["code"], extra["system"]
    resources = record.of_type(rtype)
    for i, res in enumerate(resources):
        code = res.get("code")
        if not isinstance(code, dict):
            continue
        codings = code.get("coding")
        if not isinstance(codings, list):
            continue
        name = None
        for c in codings:
            if not isinstance(c, dict):
                continue
            value = c.get("code")
            if value == extra_code and c.get("system") == extra_system:
                name = None
                break
            if isinstance(value, str) and value in codes and c.get("system") == system:
                name = codes[value]
        if name is None:
            continue
        if out is None:
            out = list(resources)
        out[i] = {**res, "code": {**code, "coding": [*codings, extra]}}
        names.add(name)
    if out is None:
        return record, names
    return PatientRecord(record.patient, {**record.by_type, rtype: tuple(out)}, now=record.now), names


EXTRA_CODES = st.sampled_from(["6298-4", "2160-0", "38483-4"])
extra_coding = st.fixed_dictionaries(
    {"code": EXTRA_CODES, "system": st.sampled_from([LOINC, SNOMED, "http://loinc.org/"])}
)
matching_coding = st.fixed_dictionaries(
    {"code": st.sampled_from(["2160-0", "38483-4", "123"]), "system": st.sampled_from([LOINC, SNOMED])}
)
coded_observation = st.fixed_dictionaries(
    {"resourceType": st.just("Observation")},
    optional={
        "code": st.one_of(
            JUNK,
            st.fixed_dictionaries(
                {},
                optional={
                    "coding": st.one_of(
                        JUNK,
                        st.lists(
                            st.one_of(
                                JUNK,
                                extra_coding,
                                matching_coding,
                                st.fixed_dictionaries({}, optional={"system": SYSTEMS, "code": CODES}),
                            ),
                            max_size=4,
                        ),
                    ),
                    "text": st.just("t"),
                },
            ),
        )
    },
)


@settings(max_examples=500, deadline=None)
@given(st.lists(coded_observation, max_size=8), EXTRA_CODES, st.sampled_from([LOINC, SNOMED]))
def test_recoded_agrees_with_the_unfiltered_pass(
    observations: list[dict[str, Any]], extra_code: str, system: str
) -> None:
    record = PatientRecord(None, {"Observation": tuple(observations)}, now=NOW)
    codes = {"2160-0": "creatinine", "38483-4": "creatinine (other)", "123": "local"}
    extra = {"system": LOINC, "code": extra_code}
    fast, fast_names = _recoded(record, "Observation", codes, system, extra)
    ref, ref_names = recoded_reference(record, "Observation", codes, system, extra)
    assert fast_names == ref_names
    assert fast.by_type == ref.by_type
    assert (fast is record) == (ref is record)  # nothing matched: the same record comes back


# --- read_body: the depth limit is decided by the scan alone (no bracket count first) -------------
def _chain(kinds: list[bool]) -> Any:
    """The shortest text of a depth: `[[{"a":[]}]]` for [False, False, True, False]."""
    doc: Any = None if not kinds else ({} if kinds[-1] else [])
    for as_object in reversed(kinds[:-1]):
        doc = {"a": doc} if as_object else [doc]
    return doc


tight_documents = st.one_of(
    st.lists(st.booleans(), max_size=9).map(_chain),  # as short as their depth allows
    st.recursive(
        st.none() | st.integers(0, 9) | st.text(alphabet="a[]{}", max_size=3),
        lambda c: (
            st.lists(c, max_size=2) | st.dictionaries(st.text(alphabet="a]", max_size=2), c, max_size=2)
        ),
        max_leaves=12,
    ),
)


def _nesting(value: Any) -> int:
    if isinstance(value, dict | list):
        children = value.values() if isinstance(value, dict) else value
        return 1 + max((_nesting(v) for v in children), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(tight_documents, st.sampled_from([-1, 0, 1]))
def test_read_body_refuses_exactly_the_documents_nested_deeper_than_the_limit(doc: Any, delta: int) -> None:
    import asyncio

    import orjson
    from starlette.requests import Request

    from cds.runtime.errors import BadRequest
    from cds.web.body import read_body

    raw = orjson.dumps(doc)
    limit = max(1, _nesting(doc) + delta)  # at the boundary: one less than, equal to, one more

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", b"application/json")]}
    try:
        asyncio.run(read_body(Request(scope, receive), 1 << 20, limit))
        refused = False
    except BadRequest as e:
        assert "nesting" in str(e)
        refused = True
    assert refused == (_nesting(doc) > limit)
