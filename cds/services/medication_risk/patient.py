"""The patient facts the medication rules use: age, sex, eGFR, creatinine clearance, weight, recent
labs, conditions, allergies.

Read once per hook call from the PatientRecord, so each rule asks a dict instead of the chart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cds.fhir.dates import observed_at
from cds.fhir.record import PatientRecord
from cds.fhir.terminology import (
    ICD10,
    ICD10CM,
    LOINC,
    SNOMED,
    CodeSet,
    canonical_system,
    coding_items,
    codings,
    concept_text,
)
from cds.fhir.units import quantity_in
from cds.fhir.value import as_list, as_str
from cds.services.medication_risk.egfr import (
    adjusted_body_weight,
    ckd_epi_2021,
    cockcroft_gault,
    ideal_body_weight,
)
from cds.services.medication_risk.knowledge import ConditionSet, Knowledge, LabDef
from cds.services.medication_risk.resolve import Resolver

_UNITLESS = {None, "", "1", "{INR}", "INR", "{ratio}", "ratio", "{ratio}/1"}


@dataclass(frozen=True)
class LabValue:
    lab: str
    value: float
    when: datetime | None
    note: str = ""  # how it was obtained, e.g. "CKD-EPI 2021 from creatinine 2.1 mg/dL"


@dataclass(frozen=True)
class Allergy:
    label: str
    ingredients: frozenset[str]  # ingredients the allergy names, directly or through a class
    snomed: frozenset[str]
    high_risk: bool
    reactions: tuple[str, ...] = ()  # the recorded manifestations, e.g. ("hives",)


@dataclass(frozen=True)
class Clearance:
    """Cockcroft-Gault creatinine clearance with actual body weight, as drug labels use it."""

    value: float  # mL/min
    weight: LabValue
    creatinine: LabValue
    age: int
    female: bool
    ideal_weight: float | None = None  # Devine IBW when height is known
    adjusted_value: float | None = None  # CrCl with adjusted body weight, in obesity only

    @property
    def obese(self) -> bool:
        """Weight above 120% of ideal body weight (needs height)."""
        return self.adjusted_value is not None

    def describe(self) -> str:
        """One sentence for the card: the value, how it was computed, and the obesity caveat."""
        text = (
            f"CrCl {kidney_number(self.value)} mL/min (Cockcroft-Gault with actual body weight {self.weight.value:.1f} kg"
            f"{_when(self.weight.when)}, creatinine {self.creatinine.value:.2f} mg/dL"
            f"{_when(self.creatinine.when)}, age {self.age})"
        )
        if self.adjusted_value is not None and self.ideal_weight is not None:
            text += (
                f"; weight is above 120% of ideal body weight ({self.ideal_weight:.0f} kg): with adjusted body "
                f"weight CrCl would be {kidney_number(self.adjusted_value)} mL/min, which some references prefer in obesity"
            )
        return text


def kidney_number(value: float) -> str:
    """A kidney-function value as the card shows it: a whole number, unless rounding would carry it
    onto a multiple of 5, where label thresholds sit (29.9 is not shown as 30 against a limit of < 30)."""
    whole = round(value)
    lo, hi = sorted((value, float(whole)))
    step = math.ceil(lo / 5) * 5
    if step <= hi and abs(value - step) > 1e-9:
        tenths = round(value * 10, 6)  # one decimal, rounded away from the threshold
        return f"{(math.floor(tenths) if value < step else math.ceil(tenths)) / 10:.1f}"
    return f"{whole:.0f}"


def _when(when: datetime | None) -> str:
    return f" on {when:%Y-%m-%d}" if when is not None else ""


@dataclass
class PatientFacts:
    age: int | None
    female: bool | None
    egfr: LabValue | None
    labs: dict[str, LabValue]
    condition_codes: set[tuple[str, str]]
    allergies: list[Allergy]
    active_ingredients: frozenset[str] = field(default_factory=frozenset)
    creatinine: LabValue | None = None
    weight: LabValue | None = None
    crcl: Clearance | None = None

    def has_condition(self, conditions: ConditionSet) -> bool:
        for system, code in self.condition_codes:
            if system == SNOMED and code in conditions.snomed:
                return True
            if system in (ICD10CM, ICD10) and code.upper().startswith(conditions.icd10_prefixes):
                return True
        return False


def _lab_value(obs: Mapping[str, Any], lab: LabDef, codes: CodeSet) -> float | None:
    """The observation's value in the lab's unit (its own value, or the matching component's)."""
    quantity = None
    if codes.matches(obs.get("code")):
        quantity = obs.get("valueQuantity")
    else:
        for comp in as_list(obs.get("component")):
            if isinstance(comp, dict) and codes.matches(comp.get("code")):
                quantity = comp.get("valueQuantity")
                break
    if not isinstance(quantity, dict):
        return None
    if quantity.get("comparator") in ("<", ">", "<=", ">="):
        return None  # "<0.5" is not a value we can compare against a threshold
    if lab.unit is None:
        unit = as_str(quantity.get("code")) or as_str(quantity.get("unit"))
        value = quantity.get("value")
        if unit in _UNITLESS and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None
    return quantity_in(quantity, lab.unit, molar_mass=lab.molar_mass)


def latest_values(
    record: PatientRecord,
    labs: Mapping[str, LabDef],
    codes: Mapping[str, CodeSet],
    by_code: Mapping[str, str] | None = None,
) -> dict[str, LabValue]:
    """The newest readable value of each lab within its freshness window, in one pass over the chart.

    `by_code` (LOINC code -> lab id) is derived from `labs` when not given; PatientReader builds it
    once per process."""
    if by_code is None:
        by_code = lab_codes(labs)
    now = record.now
    oldest: dict[str, datetime] = {}  # lab id -> start of its freshness window
    candidates: dict[str, list[tuple[datetime, Mapping[str, Any]]]] = {}
    for obs in record.valid("Observation"):
        if obs.get("status") not in (None, "final", "amended", "corrected", "preliminary"):
            continue
        hit: set[str] = set()
        _loinc_hits(obs.get("code"), by_code, hit)
        components = obs.get("component")
        if components:
            for comp in as_list(components):
                if isinstance(comp, dict):
                    _loinc_hits(comp.get("code"), by_code, hit)
        if not hit:
            continue
        when = observed_at(obs)
        if when is None or when > now:
            continue
        for lid in hit:
            start = oldest.get(lid)
            if start is None:
                start = oldest[lid] = now - timedelta(days=labs[lid].max_age_days)
            if when >= start:
                candidates.setdefault(lid, []).append((when, obs))
    out: dict[str, LabValue] = {}
    for lid, found in candidates.items():
        found.sort(key=lambda p: p[0], reverse=True)
        for when, reading in found:
            value = _lab_value(reading, labs[lid], codes[lid])
            if value is not None:
                out[lid] = LabValue(lid, value, when)
                break
    return out


def lab_codes(labs: Mapping[str, LabDef]) -> dict[str, str]:
    """LOINC code -> lab id (a code listed by two labs belongs to the later one)."""
    return {code: lid for lid, lab in labs.items() for code in lab.loinc}


def _loinc_hits(concept: Any, by_code: Mapping[str, str], hit: set[str]) -> None:
    """Add the labs whose LOINC codes a CodeableConcept (or Coding) carries: what
    `{by_code[c] for s, c in codings(concept) if s == LOINC and c in by_code}` gives, without a
    generator per Observation (this runs over the whole chart on every order-sign call); the
    cheap code lookup goes before the system's."""
    for c in coding_items(concept):
        if isinstance(c, dict):
            code = c.get("code")
            if isinstance(code, str) and code in by_code and canonical_system(c.get("system")) == LOINC:
                hit.add(by_code[code])


class PatientReader:
    """Builds PatientFacts; holds the per-lab CodeSets so they are built once at start."""

    def __init__(self, kb: Knowledge, resolver: Resolver) -> None:
        self.kb = kb
        self.resolver = resolver
        self.codes = {lid: CodeSet.of(LOINC, *lab.loinc, name=lid) for lid, lab in kb.labs.items()}
        self.by_code = lab_codes(kb.labs)

    def read(self, record: PatientRecord) -> PatientFacts:
        age = record.age()
        sex = record.sex
        female = None if sex is None else sex == "female"
        labs = latest_values(record, self.kb.labs, self.codes, self.by_code)
        conditions = {pair for c in record.conditions(active_only=True) for pair in codings(c.get("code"))}
        creat = labs.pop("creatinine", None)
        weight = labs.pop("weight", None)
        height = labs.pop("height", None)
        return PatientFacts(
            age=age,
            female=female,
            egfr=self._egfr(labs.pop("egfr", None), creat, age, female),
            labs=labs,
            condition_codes=conditions,
            allergies=[a for a in (self._allergy(x) for x in record.allergies()) if a is not None],
            creatinine=creat,
            weight=weight,
            crcl=self._crcl(creat, weight, height, age, female),
        )

    @staticmethod
    def _crcl(
        creat: LabValue | None,
        weight: LabValue | None,
        height: LabValue | None,
        age: int | None,
        female: bool | None,
    ) -> Clearance | None:
        """Cockcroft-Gault with actual body weight; None when creatinine, weight, age or sex is missing."""
        if creat is None or weight is None or age is None or age < 18 or female is None:
            return None
        if creat.value <= 0 or weight.value <= 0:
            return None
        value = cockcroft_gault(creat.value, age, weight.value, female)
        ibw = adjusted = None
        if height is not None and height.value > 0:
            ibw = ideal_body_weight(height.value, female)
            if weight.value > 1.2 * ibw:
                adjusted = cockcroft_gault(creat.value, age, adjusted_body_weight(weight.value, ibw), female)
        return Clearance(value, weight, creat, age, female, ibw, adjusted)

    @staticmethod
    def _egfr(
        reported: LabValue | None, creat: LabValue | None, age: int | None, female: bool | None
    ) -> LabValue | None:
        """Reported eGFR or CKD-EPI 2021 from creatinine, whichever is newer (reported wins a tie)."""
        computed = None
        if creat is not None and creat.value > 0 and age is not None and age >= 18 and female is not None:
            value = ckd_epi_2021(creat.value, age, female)
            computed = LabValue(
                "egfr", value, creat.when, f"CKD-EPI 2021 from creatinine {creat.value:.2f} mg/dL"
            )
        if reported and computed:
            if computed.when and reported.when and computed.when > reported.when:
                return computed
            return reported
        return reported or computed

    def _allergy(self, res: Mapping[str, Any]) -> Allergy | None:
        category = res.get("category")
        if isinstance(category, str):
            category = [category]
        categories = {c for c in category if isinstance(c, str)} if isinstance(category, list) else set()
        if categories and not categories & {"medication", "biologic"}:
            return None  # food and environment allergies cannot match a drug
        concept = res.get("code") if isinstance(res.get("code"), dict) else None
        ings = set(self.resolver.concept_ingredients(concept))
        text = " ".join(
            t
            for t in [concept_text(concept)]
            + [c.get("display", "") for c in as_list((concept or {}).get("coding")) if isinstance(c, dict)]
            if isinstance(t, str)
        )
        for class_id in self.kb.class_name_index.find(text):
            ings |= self.kb.class_members.get(class_id, frozenset())
        snomed = frozenset(code for system, code in codings(concept) if system == SNOMED)
        if not ings and not snomed:
            return None
        high = res.get("criticality") == "high"
        reactions: list[str] = []
        for reaction in as_list(res.get("reaction")):
            if not isinstance(reaction, dict):
                continue
            if reaction.get("severity") == "severe":
                high = True
            for m in as_list(reaction.get("manifestation")):
                words = _concept_words(m)
                if "anaphyla" in words:
                    high = True
                name = concept_text(m) if isinstance(m, dict) else ""
                if name.strip() and name.strip().lower() not in reactions:
                    reactions.append(name.strip().lower())
        label = concept_text(concept) or text.strip()
        if not label:  # a bare SNOMED code: name the allergy after the group it belongs to
            group = next((g for g in self.kb.allergy_groups if g.snomed & snomed), None)
            label = self.kb.class_names.get(group.id, group.id) if group else "recorded drug allergy"
        return Allergy(label, frozenset(ings), snomed, high, tuple(reactions))


def _concept_words(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    parts = [concept.get("text") or ""] + [
        c.get("display") or "" for c in as_list(concept.get("coding")) if isinstance(c, dict)
    ]
    return " ".join(p for p in parts if isinstance(p, str)).lower()
