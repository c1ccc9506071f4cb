"""Label dosing by indication and kidney function (dosing.json): enoxaparin, DOACs, metformin,
gabapentinoids.

Before any dose suggestion the order's indication is settled: a coded reason (reasonCode, or the
Condition in reasonReference) and the ordered regimen (dose and frequency) must agree; when they do
not, or nothing tells the indications apart, the card explains each and offers a review instead of
a one-click update. Kidney function is what the label uses: Cockcroft-Gault creatinine clearance
with actual body weight, or eGFR (metformin). When CrCl cannot be computed, eGFR stands in, the card
says so, and the suggestion is a review.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cds.fhir.record import PatientRecord
from cds.fhir.terminology import ICD10, ICD10CM, SNOMED, codings
from cds.fhir.value import as_dict
from cds.services.medication_risk import knowledge_files as kf
from cds.services.medication_risk.knowledge import (
    SEVERITIES,
    Dosage,
    Knowledge,
    KnowledgeError,
    compare,
    read_knowledge_file,
)
from cds.services.medication_risk.patient import PatientFacts, kidney_number
from cds.services.medication_risk.resolve import Med, as_list

_CODE_PER_DAY = {
    "QD": 1.0, "QOD": 0.5, "BID": 2.0, "TID": 3.0, "QID": 4.0, "AM": 1.0, "PM": 1.0, "HS": 1.0,
    "Q4H": 6.0, "Q6H": 4.0, "Q8H": 3.0, "Q12H": 2.0, "Q24H": 1.0,
}  # fmt: skip
_TEXT_PER_DAY = (
    (re.compile(r"\b(four times|qid|q\.i\.d\.|q6h|every 6 hours?)\b"), 4.0),
    (re.compile(r"\b(three times|tid|t\.i\.d\.|q8h|every 8 hours?)\b"), 3.0),
    (re.compile(r"\b(twice|bid|b\.i\.d\.|q12h|every 12 hours?)\b"), 2.0),
    (re.compile(r"\b(once|daily|qd|q24h|every 24 hours?|nightly|at bedtime|every day)\b"), 1.0),
)
_TEXT_DOSE = re.compile(r"(\d+(?:\.\d+)?)\s*(mg|milligrams?)\b")
_UNIT_MG = {"mg", "milligram", "milligrams"}


@dataclass(frozen=True)
class Regimen:
    """The ordered dose (mg per administration) and administrations per day, where readable."""

    dose_mg: float | None
    per_day: float | None

    @property
    def daily_mg(self) -> float | None:
        return self.dose_mg * self.per_day if self.dose_mg is not None and self.per_day else None

    def describe(self) -> str:
        dose = f"{self.dose_mg:g} mg" if self.dose_mg is not None else "dose not stated"
        if self.per_day is None:
            return dose
        return f"{dose} {_frequency_text(self.per_day)}"


def _frequency_text(per_day: float) -> str:
    return {1.0: "once daily", 2.0: "twice daily", 3.0: "three times daily", 4.0: "four times daily"}.get(
        per_day, f"{per_day:g} times daily"
    )


def regimen(resource: Mapping[str, Any]) -> Regimen:
    """Dose in mg and frequency per day from dosageInstruction[0] (structured first, then its text)."""
    first = next((d for d in as_list(resource.get("dosageInstruction")) if isinstance(d, dict)), None)
    if first is None:
        return Regimen(None, None)
    dose = per_day = None
    for dr in as_list(first.get("doseAndRate")):
        q = dr.get("doseQuantity") if isinstance(dr, dict) else None
        if (
            isinstance(q, dict)
            and isinstance(q.get("value"), int | float)
            and not isinstance(q["value"], bool)
        ):
            unit = str(q.get("code") or q.get("unit") or "").lower()
            if unit in _UNIT_MG:
                dose = float(q["value"])
                break
    timing = as_dict(first.get("timing"))
    rep = as_dict(timing.get("repeat"))
    freq, period, period_unit = rep.get("frequency", 1), rep.get("period"), rep.get("periodUnit")
    if isinstance(period, int | float) and period > 0 and isinstance(freq, int | float) and freq > 0:
        hours = {"h": 1.0, "d": 24.0, "wk": 168.0}.get(str(period_unit))
        if hours is not None:
            per_day = round(float(freq) * 24.0 / (float(period) * hours), 4)
    if per_day is None:
        for _, code in codings(timing.get("code")):
            if code.upper() in _CODE_PER_DAY:
                per_day = _CODE_PER_DAY[code.upper()]
                break
    text = first.get("text")
    if isinstance(text, str):
        low = text.lower()
        if dose is None and (m := _TEXT_DOSE.search(low)):
            dose = float(m.group(1))
        if per_day is None:
            per_day = next((n for rx, n in _TEXT_PER_DAY if rx.search(low)), None)
    return Regimen(dose, per_day)


@dataclass(frozen=True)
class Indication:
    id: str
    name: str
    icd10_prefixes: tuple[str, ...]
    snomed: frozenset[str]


@dataclass(frozen=True)
class Product:
    id: str
    rxcui: str
    display: str
    mg: float


@dataclass(frozen=True)
class Band:
    severity: str
    advice: str
    below: float | None = None
    at_most: float | None = None
    above: float | None = None
    criteria: tuple[tuple[str, str, float, str], ...] = ()  # (fact, op, value, text)
    at_least: int = 0
    target_mg: float | None = None
    target_mg_per_kg: float | None = None
    target_per_day: float | None = None
    target_text: str = ""
    products: tuple[Product, ...] = ()
    max_daily_mg: float | None = None
    avoid: bool = False
    review: bool = False
    new_only: bool = False

    @property
    def needs_kidney(self) -> bool:
        return self.below is not None or self.at_most is not None or self.above is not None


@dataclass(frozen=True)
class DrugDosing:
    id: str
    ingredient: str
    measure: str  # "crcl" or "egfr"
    citation: tuple[str, ...]
    mechanism: str
    consequence: str
    regimens: tuple[
        tuple[str | None, float | None, float | None, tuple[str, ...]], ...
    ]  # op, mg, per_day, ids
    indications: Mapping[str, tuple[Band, ...]]
    route: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class DoseChange:
    """A label dose for the order: an update when `product` is set and the indication is settled."""

    dosage: Dosage
    product: Product | None
    route: Mapping[str, Any] | None


@dataclass
class DoseResult:
    drug: DrugDosing
    severity: str
    title: str
    problem: str
    management: str
    facts: list[str]
    change: DoseChange | None  # one-click update
    review: str | None  # why the dose is not changed automatically
    avoid: bool
    kidney_kind: str  # "crcl", "egfr", or "" (criteria only)


class Dosing:
    """The dosing knowledge (dosing.json), validated against the knowledge base at load."""

    def __init__(self, kb: Knowledge, path: Path | None = None) -> None:
        path = path or kb.directory / "dosing.json"
        doc = read_knowledge_file(path.parent, path.name, kf.DosingFile)
        self.tolerance = float(doc.tolerance)
        self.names = {k: v.name for k, v in kb.ingredients.items()}
        self.indications: dict[str, Indication] = {}
        for iid, ind in doc.indications.items():
            self._cite(kb, ind.citation, f"dosing.json: indication {iid}")
            self.indications[iid] = Indication(
                iid, ind.name, tuple(ind.icd10_prefixes), frozenset(ind.snomed)
            )
        self.products = {
            pid: Product(pid, p.rxcui, p.display, float(p.mg)) for pid, p in doc.products.items()
        }
        self.by_ingredient: dict[str, DrugDosing] = {}
        for drug in doc.drugs:
            where = f"dosing.json: drug {drug.id}"
            if drug.ingredient not in kb.ingredients:
                raise KnowledgeError(f"{where}: ingredient {drug.ingredient!r} is not in ingredients.csv")
            regimens = []
            for r in drug.regimens:
                op, mg = r.dose_mg or (None, None)
                ids = tuple(r.indication) if isinstance(r.indication, list) else (r.indication,)
                for i in ids:
                    if i not in self.indications:
                        raise KnowledgeError(f"{where}: unknown indication {i!r}")
                regimens.append((op, mg, r.per_day, ids))
            bands: dict[str, tuple[Band, ...]] = {}
            for iid, raw_bands in drug.indications.items():
                if iid != "any" and iid not in self.indications:
                    raise KnowledgeError(f"{where}: unknown indication {iid!r}")
                bands[iid] = tuple(self._band(b, self.products, f"{where} {iid}") for b in raw_bands)
            self.by_ingredient[drug.ingredient] = DrugDosing(
                drug.id,
                drug.ingredient,
                drug.measure,
                self._cite(kb, drug.citation, where),
                drug.mechanism,
                drug.consequence,
                tuple(regimens),
                bands,
                drug.route,
            )

    def product_ingredients(self) -> dict[str, frozenset[str]]:
        """RxCUI -> ingredient of the listed products (a product id starts with its drug's id), so that
        orders coded with these SCDs resolve even when the products table lacks them."""
        by_drug = {d.id: d.ingredient for d in self.by_ingredient.values()}
        out = {}
        for pid, product in self.products.items():
            ing = by_drug.get(pid.split("-", 1)[0])
            if ing is not None:
                out[product.rxcui] = frozenset({ing})
        return out

    @staticmethod
    def _cite(kb: Knowledge, c: list[str], where: str) -> tuple[str, ...]:
        if not c or any(s not in kb.sources for s in c):
            raise KnowledgeError(f"{where}: citation missing or not in manifest.json")
        return tuple(c)

    @staticmethod
    def _band(b: kf.DoseBandEntry, products: Mapping[str, Product], where: str) -> Band:
        crit = b.criteria or kf.CriteriaEntry()
        target = b.target or kf.TargetEntry()
        unknown = [p for p in b.products if p not in products]
        if unknown:
            raise KnowledgeError(f"{where}: unknown product {unknown[0]!r}")
        return Band(
            b.severity,
            b.advice,
            b.below,
            b.at_most,
            b.above,
            tuple((c.fact, c.op, float(c.value), c.text) for c in crit.of),
            crit.at_least,
            target.mg,
            target.mg_per_kg,
            target.per_day,
            target.text,
            tuple(products[p] for p in b.products),
            b.max_daily_mg,
            b.avoid,
            b.review,
            b.new_only,
        )

    # --- the check ---------------------------------------------------------------------------------
    def coded_indications(self, draft: Med, record: PatientRecord) -> set[str]:
        """Indications named by the order's reasonCode or the Conditions its reasonReference points to."""
        concepts = list(as_list(draft.resource.get("reasonCode")))
        for ref in as_list(draft.resource.get("reasonReference")):
            target = record.resolve(ref.get("reference")) if isinstance(ref, dict) else None
            if target is not None:
                concepts.append(target.get("code"))
        found: set[str] = set()
        for concept in concepts:
            for system, code in codings(concept):
                for ind in self.indications.values():
                    if (system == SNOMED and code in ind.snomed) or (
                        system in (ICD10CM, ICD10)
                        and ind.icd10_prefixes
                        and code.upper().startswith(ind.icd10_prefixes)
                    ):
                        found.add(ind.id)
        return found

    def check(self, draft: Med, patient: PatientFacts, record: PatientRecord) -> list[DoseResult]:
        """Label dose findings for the draft (one per dosed ingredient it contains)."""
        out = []
        for ing in sorted(draft.ingredients):
            drug = self.by_ingredient.get(ing)
            if drug is not None:
                r = self._check_drug(drug, draft, patient, record)
                if r is not None:
                    out.append(r)
        return out

    def _indications(self, drug: DrugDosing, reg: Regimen, coded: set[str]) -> tuple[list[str], str]:
        """Candidate indications and a sentence saying how they were told apart."""
        if "any" in drug.indications:
            return ["any"], ""
        from_regimen: tuple[str, ...] = ()
        for op, mg, per_day, ids in drug.regimens:
            if op is not None and mg is not None and (reg.dose_mg is None or not _cmp(reg.dose_mg, op, mg)):
                continue
            if per_day is not None and reg.per_day != per_day:
                continue
            from_regimen = ids
            break
        name = self.indications
        if coded and from_regimen and not coded & set(from_regimen):
            return sorted(coded | set(from_regimen)), (
                f"The coded indication ({', '.join(name[c].name for c in sorted(coded))}) does not match the "
                f"ordered regimen ({reg.describe()}, a {' or '.join(name[c].name for c in from_regimen)} dose)."
            )
        if coded:
            chosen = sorted(coded & set(from_regimen)) if from_regimen else sorted(coded)
            return chosen, f"Indication coded on the order: {', '.join(name[c].name for c in chosen)}."
        if len(from_regimen) == 1:
            return list(from_regimen), (
                f"Indication told from the regimen ({reg.describe()}): {name[from_regimen[0]].name}."
            )
        cands = list(from_regimen) or sorted(drug.indications)
        return cands, "The order codes no indication and its regimen fits more than one."

    def _kidney(self, drug: DrugDosing, p: PatientFacts) -> tuple[float | None, str, str, str]:
        """(value, short label, sentence for the card, kind) of the measure the label uses."""
        if drug.measure == "crcl" and p.crcl is not None:
            return p.crcl.value, f"CrCl {kidney_number(p.crcl.value)} mL/min", p.crcl.describe() + ".", "crcl"
        if p.egfr is None:
            return None, "", "", ""
        e = p.egfr
        how = f" ({e.note})" if e.note else ""
        label = f"eGFR {kidney_number(e.value)}"
        if drug.measure == "egfr":
            return e.value, label, f"{label} mL/min/1.73 m2{how}; the label uses eGFR.", "egfr"
        missing = []
        if p.weight is None:
            missing.append("no body weight in the chart in the last 90 days")
        if p.creatinine is None:
            missing.append("no serum creatinine")
        if p.age is None or p.female is None:
            missing.append("age or sex unknown")
        return (
            e.value,
            label,
            f"Creatinine clearance could not be computed ({'; '.join(missing) or 'incomplete data'}): the label "
            f"uses Cockcroft-Gault CrCl, so {label} mL/min/1.73 m2{how} stands in for it. eGFR can "
            "overestimate clearance in small or older patients; record a weight to check the dose properly.",
            "egfr",
        )

    def _fires(
        self, band: Band, kidney: float | None, drug: DrugDosing, p: PatientFacts
    ) -> tuple[bool, list[str], list[str]]:
        """Does the band apply? With the criteria met and the criteria that could not be checked."""
        if band.new_only and drug.ingredient in p.active_ingredients:
            return False, [], []
        if band.needs_kidney:
            if kidney is None:
                return False, [], []
            if band.below is not None and not kidney < band.below:
                return False, [], []
            if band.at_most is not None and not kidney <= band.at_most:
                return False, [], []
            if band.above is not None and not kidney > band.above:
                return False, [], []
        met: list[str] = []
        unknown: list[str] = []
        if band.criteria:
            values = {
                "age": float(p.age) if p.age is not None else None,
                "weight": p.weight.value if p.weight else None,
                "creatinine": p.creatinine.value if p.creatinine else None,
            }
            for fact, op, value, text in band.criteria:
                v = values[fact]
                if v is None:
                    unknown.append(text)
                elif _cmp(v, op, value):
                    met.append(text)
            if len(met) < band.at_least:
                return False, met, unknown
        return True, met, unknown

    def _check_drug(
        self, drug: DrugDosing, draft: Med, p: PatientFacts, record: PatientRecord
    ) -> DoseResult | None:
        reg = regimen(draft.resource)
        cands, how = self._indications(drug, reg, self.coded_indications(draft, record))
        kidney, klabel, ksentence, kkind = self._kidney(drug, p)
        name = _cap(self.names.get(drug.ingredient, drug.id))
        hits: list[tuple[str, Band, list[str]]] = []
        unchecked: list[str] = []
        for iid in cands:
            for band in drug.indications.get(iid, ()):
                fires, met, unknown = self._fires(band, kidney, drug, p)
                if not fires:
                    could = unknown and len(met) + len(unknown) >= band.at_least
                    if could and not self._complies(band, reg, p):
                        unchecked += unknown
                    continue
                if self._complies(band, reg, p):
                    break  # the order already follows this band: nothing to say for this indication
                hits.append((iid, band, met))
                break
        if not hits:
            if not unchecked:
                return None
            missing = ", ".join(sorted(set(unchecked)))
            return DoseResult(
                drug,
                "moderate",
                f"{name} {reg.describe()}: label dose criteria not fully checked ({missing} unknown)",
                f"{name}: label dose criteria not fully checked",
                f"The label's dose-reduction criteria could not all be checked because the chart lacks: {missing}. "
                "Record them (a body weight, a serum creatinine) and check the dose against the label.",
                [f"Ordered: {reg.describe()}. {how}".strip()],
                None,
                "criteria could not be checked",
                False,
                "",
            )
        ambiguous = len(cands) > 1
        worst = max(hits, key=lambda h: SEVERITIES.index(h[1].severity))
        iid, band, met = worst
        facts = [x for x in (ksentence if band.needs_kidney or kkind else "",) if x]
        if met:
            facts.append("Label criteria met: " + ", ".join(met) + ".")
        if p.weight is not None and p.crcl is None:
            facts.append(f"Weight {p.weight.value:.1f} kg.")
        facts.append(f"Ordered: {reg.describe()}. {how}".strip())
        change, review = None, None
        target = self._target(band, p, drug)
        if band.avoid:
            management = band.advice
        elif band.review or band.max_daily_mg is not None:
            management = band.advice
            if band.max_daily_mg is not None:
                daily = reg.daily_mg
                management += (
                    f" The order is {daily:g} mg a day."
                    if daily is not None
                    else " The order's daily dose could not be read."
                )
            review = "the label gives a range: choose the dose within it"
        else:
            management = band.advice
            if target is None:
                review = "no body weight on record to compute a dose in mg/kg"
            elif target.product is None:
                review = "no listed product matches the dose"
            elif ambiguous:
                review = "the indication is not settled"
            elif drug.measure == "crcl" and kkind != "crcl" and band.needs_kidney:
                review = "creatinine clearance could not be computed (eGFR used in its place)"
            elif draft.resource_id is None:
                review = "the draft order has no id to update"
            else:
                change = target
        if ambiguous:
            parts = []
            for i, b, _ in hits:
                label = self.indications[i].name if i in self.indications else "this indication"
                parts.append(f"If for {label}: {b.advice[:1].lower()}{b.advice[1:]}")
            others = [i for i in cands if i not in {h[0] for h in hits} and i in self.indications]
            parts += [
                f"If for {self.indications[i].name}: "
                + (
                    "no change by the label criteria."
                    if i in drug.indications
                    else "not a labelled indication."
                )
                for i in others
            ]
            management = " ".join(parts)
        if unchecked:
            facts.append("Not checked (missing from the chart): " + ", ".join(sorted(set(unchecked))) + ".")
        if review:
            management += f" Not changed automatically: {review}."
        if band.avoid:
            short = "avoid"
        elif ambiguous:
            short = "dose depends on the indication"
        elif target is not None:
            short = f"label dose {target.dosage.text}"
        elif band.target_mg_per_kg is not None:
            short = f"label dose {band.target_mg_per_kg:g} mg/kg {band.target_text} (no weight on record)"
        elif band.max_daily_mg is not None and reg.daily_mg is not None:
            short = f"above the label maximum of {band.max_daily_mg:g} mg a day"
        elif band.max_daily_mg is not None:
            short = f"check the dose: label maximum {band.max_daily_mg:g} mg a day"
        else:
            short = "check the dose"
        if band.needs_kidney and klabel:
            where = f" at {klabel}"
        elif met:
            where = f" with {self._criteria_values(band, p)}"
        else:
            where = ""
        title = f"{name} {reg.describe()}{where}: {short}"
        return DoseResult(
            drug,
            band.severity,
            title,
            f"{name}: {short}",
            management,
            facts,
            change,
            review,
            band.avoid,
            kkind if band.needs_kidney else "",
        )

    @staticmethod
    def _criteria_values(band: Band, p: PatientFacts) -> str:
        """The patient's values behind the criteria, e.g. 'age 82, 55.0 kg, creatinine 1.60 mg/dL'."""
        parts = []
        for fact, *_ in band.criteria:
            if fact == "age" and p.age is not None:
                parts.append(f"age {p.age}")
            elif fact == "weight" and p.weight is not None:
                parts.append(f"{p.weight.value:.1f} kg")
            elif fact == "creatinine" and p.creatinine is not None:
                parts.append(f"creatinine {p.creatinine.value:.2f} mg/dL")
        return ", ".join(dict.fromkeys(parts))

    def _target(self, band: Band, p: PatientFacts, drug: DrugDosing) -> DoseChange | None:
        """The band's label dose as a Dosage, with the smallest listed product that holds one dose."""
        if band.target_per_day is None:
            return None
        if band.target_mg_per_kg is not None:
            if p.weight is None:
                return None
            mg = float(round(band.target_mg_per_kg * p.weight.value))
            text = f"{mg:g} mg {band.target_text} ({band.target_mg_per_kg:g} mg/kg x {p.weight.value:.1f} kg)"
        elif band.target_mg is not None:
            mg = float(band.target_mg)
            text = band.target_text
        else:
            return None
        product = next((x for x in sorted(band.products, key=lambda x: x.mg) if x.mg >= mg - 1e-9), None)
        if product is not None and band.target_mg is not None and product.mg != mg:
            product = None  # fixed-dose tablets: only an exact strength
        per_day = band.target_per_day
        hours = 24.0 / per_day
        dosage = Dosage(
            text,
            mg,
            "mg",
            "mg",
            1,
            hours if hours != 24.0 else 1,
            "h" if hours != 24.0 else "d",
        )
        return DoseChange(dosage, product, drug.route)

    def _complies(self, band: Band, reg: Regimen, p: PatientFacts) -> bool:
        """The order is already within the band's label dose (daily dose and frequency)."""
        daily = reg.daily_mg
        if daily is None:
            return False
        if band.max_daily_mg is not None:
            return daily <= band.max_daily_mg * (1 + 1e-9)
        if band.avoid or band.review or band.target_per_day is None:
            return False
        if band.target_mg_per_kg is not None:
            if p.weight is None:
                return False
            target = band.target_mg_per_kg * p.weight.value * band.target_per_day
        elif band.target_mg is not None:
            target = band.target_mg * band.target_per_day
        else:
            return False
        return daily <= target * (1 + self.tolerance) and (reg.per_day or 0) <= band.target_per_day


def _cmp(value: float, op: str, threshold: float) -> bool:
    if op == "==":
        return abs(value - threshold) < 1e-9
    return compare(value, op, threshold)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]
