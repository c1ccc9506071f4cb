"""One patient, one measurement period: the CQL retrieve (`[Type: "Value Set"]`) and a memo.

A context is built once per evaluation and shared by every measure, so the code index and the
shared definitions (hospice, palliative care, frailty...) are computed once.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Mapping
from datetime import date
from functools import lru_cache
from typing import Any, TypeVar

from cds.fhir.dates import age_in_years
from cds.fhir.record import PatientRecord
from cds.fhir.terminology import canonical_system
from cds.fhir.value import as_list
from cds.knowledge import KNOWLEDGE_DIR
from cds.services.care_gaps.measures.period import Period, add_years
from cds.services.care_gaps.measures.qicore import Days, Interval, reference_id
from cds.services.care_gaps.measures.valuesets import ValueSets, default_valuesets

T = TypeVar("T")

# The code path a QI-Core retrieve filters on, per resource type.
CODE_PATHS: dict[str, tuple[str, ...]] = {
    "Observation": ("code",),
    "Condition": ("code",),
    "Procedure": ("code",),
    "Encounter": ("type",),
    "ServiceRequest": ("code",),
    "DeviceRequest": ("codeCodeableConcept",),
    "MedicationRequest": ("medicationCodeableConcept",),
    "AllergyIntolerance": ("code",),
    "AdverseEvent": ("event",),
}

# The index of MedicationRequests by the code of the Medication they reference.
MEDICATION_BY_REFERENCE = "MedicationRequest.medicationReference"

# A term of a retrieve: a value set OID, or one (system, code).
Term = str | tuple[str, str]


@lru_cache(maxsize=1)
def direct_codes() -> frozenset[str]:
    """The codes the measures and libraries name directly (CQL `code "..."`), not via a value set."""
    knowledge = KNOWLEDGE_DIR
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in (knowledge / "measures").glob("*.json")]
    libs = json.loads((knowledge / "ecqm-libraries.json").read_text(encoding="utf-8"))
    docs += [v for v in libs.values() if isinstance(v, dict)]
    return frozenset(code for d in docs for _, code in d.get("codes", {}).values())


_RELEVANT: weakref.WeakKeyDictionary[ValueSets, frozenset[str]] = weakref.WeakKeyDictionary()


def _relevant_codes(valuesets: ValueSets) -> frozenset[str]:
    """Every code string a retrieve can ask for, computed once per value set library."""
    codes = _RELEVANT.get(valuesets)
    if codes is None:
        codes = _RELEVANT[valuesets] = valuesets.code_strings | direct_codes()
    return codes


class MeasureContext:
    """What the measures read: the record, the period, the value sets; results memoised by name."""

    def __init__(self, record: PatientRecord, period: Period, valuesets: ValueSets | None = None) -> None:
        self.record = record
        self.period = period
        self.valuesets = valuesets or default_valuesets()
        self.birth_date: date | None = record.birth_date
        self.gender: str | None = record.patient.get("gender") if record.patient else None
        self.days = Days(period.start_date, period.end_date)
        self.interval = Interval(period.start, period.end)
        self._index: dict[str, dict[tuple[str, str], list[tuple[int, dict[str, Any]]]]] = {}
        self._retrieved: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self._memo: dict[str, Any] = {}
        self._encounters: dict[str, dict[str, Any]] | None = None
        self._medications: dict[str, Mapping[str, Any]] | None = None
        self._relevant = _relevant_codes(self.valuesets)

    # --- dates ----------------------------------------------------------------------------
    def age_at_end(self) -> int | None:
        return self._age(self.period.end_date)

    def age_at_start(self) -> int | None:
        return self._age(self.period.start_date)

    def _age(self, on: date) -> int | None:
        return age_in_years(self.birth_date, on) if self.birth_date else None

    def days_back(self, years: int) -> Days:
        """`day of Interval[start of "Measurement Period" - N years, end of "Measurement Period"]`."""
        return Days(add_years(self.period.start_date, -years), self.period.end_date)

    # --- retrieve -------------------------------------------------------------------------
    def _referenced_medication(self, req: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The Medication a request's medicationReference names, as the translated ELM joins them:
        `[Medication] M where M.id = Last(Split(MR.medication.reference, '/'))`. A contained
        (`#id`) or `urn:uuid:` reference matches no Medication id, so it resolves to nothing."""
        ref = req.get("medicationReference")
        r = ref.get("reference") if isinstance(ref, dict) else None
        if not isinstance(r, str):
            return None
        if self._medications is None:
            self._medications = {
                m["id"]: m for m in self.record.of_type("Medication") if isinstance(m.get("id"), str)
            }
        return self._medications.get(r.rsplit("/", 1)[-1])

    def _index_of(self, rtype: str) -> dict[tuple[str, str], list[tuple[int, dict[str, Any]]]]:
        """(system, code) -> [(position in the record, resource)], built once per type.

        The hot loop of an evaluation: plain dict/list type checks, canonical systems memoised.
        """
        idx = self._index.get(rtype)
        if idx is not None:
            return idx
        idx = {}
        canon: dict[Any, str] = {}
        relevant = self._relevant
        by_reference = rtype == MEDICATION_BY_REFERENCE
        paths = ("code",) if by_reference else CODE_PATHS.get(rtype, ("code",))
        for pos, res in enumerate(self.record.of_type("MedicationRequest" if by_reference else rtype)):
            for path in paths:
                if by_reference:
                    med = self._referenced_medication(res)
                    concept = med.get("code") if med else None
                else:
                    concept = res.get(path)
                concepts = (
                    (concept,) if isinstance(concept, dict) else concept if isinstance(concept, list) else ()
                )
                for cc in concepts:
                    coding = cc.get("coding") if isinstance(cc, dict) else None
                    if not isinstance(coding, list):
                        continue
                    for c in coding:
                        code = c.get("code") if isinstance(c, dict) else None
                        if not isinstance(code, str) or code not in relevant:
                            continue
                        system = c.get("system")
                        if not isinstance(system, str):
                            system = None
                        cs = canon.get(system)
                        if cs is None:
                            cs = canon[system] = canonical_system(system if isinstance(system, str) else None)
                        hits = idx.get((cs, code))
                        if hits is None:
                            idx[(cs, code)] = [(pos, res)]
                        elif hits[-1][0] != pos:
                            hits.append((pos, res))
        self._index[rtype] = idx
        return idx

    def retrieve(
        self, rtype: str, *terms: Term, negated: bool = False, medication_reference: bool = True
    ) -> list[dict[str, Any]]:
        """`[Type: "VS1"] union [Type: "VS2"] ...`, in record order.

        MedicationRequest and ServiceRequest follow the QI-Core 4.1.1 profiles: the positive profile
        holds requests whose doNotPerform is not true, `negated=True` (MedicationNotRequested,
        ServiceNotRequested) those whose doNotPerform is true.

        `[MedicationRequest: "VS"]` (the default code path) is translated (CQL-to-ELM 3.10) into the
        union of the coded requests and the requests whose referenced Medication's code is in the
        value set; `[MedicationRequest: medication in "VS"]` (an explicit path,
        `medication_reference=False`) and the negation profiles match coded requests only.
        """
        key = (rtype, terms, negated, medication_reference)
        hit = self._retrieved.get(key)
        if hit is not None:
            return hit
        indexes = [self._index_of(rtype)]
        if rtype == "MedicationRequest" and medication_reference and not negated:
            indexes.append(self._index_of(MEDICATION_BY_REFERENCE))
        found: dict[int, dict[str, Any]] = {}
        for idx in indexes:
            for term in terms:
                if isinstance(term, tuple):
                    if term[1] not in self._relevant:
                        raise ValueError(
                            f"{term}: a direct code must be declared in the measure's knowledge file"
                        )
                    found.update(idx.get((canonical_system(term[0]), term[1]), ()))
                else:
                    vs = self.valuesets[term]
                    for pair, hits in idx.items():
                        if pair in vs:
                            found.update(hits)
        if negated:
            found.update(self._not_done_value_sets(rtype, {t for t in terms if isinstance(t, str)}))
        out = [found[pos] for pos in sorted(found)]
        if rtype in ("MedicationRequest", "ServiceRequest"):
            out = [r for r in out if (r.get("doNotPerform") is True) == negated]
        self._retrieved[key] = out
        return out

    def _not_done_value_sets(self, rtype: str, oids: set[str]) -> dict[int, dict[str, Any]]:
        """Negation records that name the value set itself (QI-Core `notDoneValueSet` extension on
        the code) instead of one of its codes: "not ordered: any statin"."""
        out: dict[int, dict[str, Any]] = {}
        if not oids:
            return out
        for pos, res in enumerate(self.record.of_type(rtype)):
            for path in CODE_PATHS.get(rtype, ("code",)):
                concept = res.get(path)
                for ext in as_list(concept.get("extension")) if isinstance(concept, dict) else ():
                    if not isinstance(ext, dict) or not str(ext.get("url", "")).endswith("notDoneValueSet"):
                        continue
                    url = ext.get("valueCanonical") or ext.get("valueUri")
                    if isinstance(url, str) and url.rstrip("/").rsplit("/", 1)[-1] in oids:
                        out[pos] = res
        return out

    def all_of(self, rtype: str) -> tuple[dict[str, Any], ...]:
        """`[Type]` without a code filter."""
        return self.record.of_type(rtype)

    def encounter(self, ref: Any) -> dict[str, Any] | None:
        """The Encounter a reference points to (CMS165 getEncounter: by id)."""
        if self._encounters is None:
            self._encounters = {
                e["id"]: e for e in self.record.of_type("Encounter") if isinstance(e.get("id"), str)
            }
        rid = reference_id(ref)
        return self._encounters.get(rid) if rid else None

    # --- memo -----------------------------------------------------------------------------
    def memo(self, name: str, compute: Callable[[], T]) -> T:
        """A named definition, computed once per context (CQL definitions are cached the same way)."""
        if name in self._memo:
            return self._memo[name]
        value = compute()
        self._memo[name] = value
        return value
