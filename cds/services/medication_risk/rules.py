"""The checks: each draft order against the other medications, kidney function, age, labs, allergies.

Every check returns Findings (one per problem per draft order); scoring and cards come later.
A problem between two drafts is reported once. Rules the ONC lists as non-interruptive are dropped
for a pair of drugs that also matches a more serious rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cds.fhir.record import PatientRecord
from cds.services.medication_risk.dosing import DoseChange, Dosing
from cds.services.medication_risk.knowledge import SEVERITIES, Alternative, Interaction, Knowledge, compare
from cds.services.medication_risk.patient import PatientFacts, kidney_number
from cds.services.medication_risk.resolve import Med

if TYPE_CHECKING:
    from cds.services.medication_risk.policy import Policy


@dataclass
class Finding:
    kind: str  # card kind, e.g. "ddi:anticoagulant-nsaid"
    category: str  # ddi, duplicate, renal, beers, lab, allergy
    draft: Med
    others: list[Med]
    severity: str
    title: str
    problem: str
    mechanism: str
    consequence: str
    management: str
    citation: tuple[str, ...]
    factors: tuple[str, ...] = ()
    labs: tuple[str, ...] = ()
    monitor: tuple[str, ...] = ()
    alternative: Alternative | None = None
    change: DoseChange | None = None  # a label dose applied as a one-click update
    review: str | None = None  # a label dose to review (why it is not applied automatically)
    avoid: bool = False  # the label or guideline says not to use the drug here
    non_interruptive: bool = False
    extra_points: int = 0
    facts: list[str] = field(default_factory=list)  # the patient's values behind the finding
    score: int = 0
    indicator: str | None = None
    escalated: Any = None  # the policy.Escalation that raised the indicator


def cap(name: str) -> str:
    return name[:1].upper() + name[1:]


def _names(kb: Knowledge, ingredients: frozenset[str] | set[str]) -> str:
    return ", ".join(sorted(kb.ingredient_label(i) for i in ingredients))


def _owns(policy: Policy | None, rule: Interaction, d: Med, o: Med, later: bool) -> bool:
    """Of two interacting drafts, does `d` get the finding? The drug the guideline says to change does."""
    if policy is not None:
        w = policy.owner(d.ingredients, o.ingredients)
        if w is not None:
            return w == 0
    if rule.alternative:
        side = rule.a if rule.alternative.replace == "a" else rule.b
        if bool(d.ingredients & side) != bool(o.ingredients & side):
            return bool(d.ingredients & side)
    return later


def interactions(
    kb: Knowledge, drafts: list[Med], others: list[Med], policy: Policy | None = None
) -> list[Finding]:
    """Drug-drug interactions of each draft with active medications and with the other drafts.

    An interaction between two drafts is reported once, on the draft the guideline says to change.
    """
    out: list[Finding] = []
    reported: set[tuple[str, frozenset[str]]] = set()
    position = {id(x): n for n, x in enumerate(drafts)}
    for i, d in enumerate(drafts):
        peers = [o for o in others if o.key != d.key] + [x for j, x in enumerate(drafts) if j != i]
        by_rule: dict[str, tuple[Interaction, list[Med], set[str], set[str]]] = {}
        for o in peers:
            matched: list[tuple[Interaction, str, str]] = []
            for x in d.ingredients:
                for y in o.ingredients:
                    for rule in kb.pairs.get((x, y), ()):
                        matched.append((rule, x, y))
            if any(not r.non_interruptive for r, _, _ in matched):
                matched = [m for m in matched if not m[0].non_interruptive]
            for rule, x, y in matched:
                pair_key = (rule.id, frozenset((d.key, o.key)))
                if o.draft and (
                    pair_key in reported or not _owns(policy, rule, d, o, i > position.get(id(o), -1))
                ):
                    continue
                reported.add(pair_key)
                entry = by_rule.setdefault(rule.id, (rule, [], set(), set()))
                if not any(m is o for m in entry[1]):
                    entry[1].append(o)
                entry[2].add(x)
                entry[3].add(y)
        for rule, meds, mine, theirs in by_rule.values():
            # the alternative replaces the draft only when the draft is (only) the drug on that side
            alt = None
            if rule.alternative:
                side, other = (rule.a, rule.b) if rule.alternative.replace == "a" else (rule.b, rule.a)
                if mine & side and not mine & other:
                    alt = rule.alternative
            title = f"{cap(_names(kb, mine))} + {_names(kb, theirs)}: {rule.problem}"
            out.append(
                Finding(
                    kind=f"ddi:{rule.id}",
                    category="ddi",
                    draft=d,
                    others=meds,
                    severity=rule.severity,
                    title=title,
                    problem=rule.problem,
                    mechanism=rule.mechanism,
                    consequence=rule.consequence,
                    management=rule.management,
                    citation=rule.citation,
                    factors=rule.factors,
                    labs=rule.labs,
                    monitor=rule.monitor,
                    alternative=alt,
                    non_interruptive=rule.non_interruptive,
                )
            )
    return out


def duplicates(kb: Knowledge, drafts: list[Med], others: list[Med]) -> list[Finding]:
    """Two different drugs of a class where that is duplicate therapy (same drug re-ordered is not)."""
    out: list[Finding] = []
    reported: set[tuple[str, frozenset[str]]] = set()
    for i, d in enumerate(drafts):
        peers = [o for o in others if o.key != d.key] + [x for j, x in enumerate(drafts) if j != i]
        for x in d.ingredients:
            for cls in kb.ingredients[x].classes if x in kb.ingredients else ():
                rule = kb.duplicates.get(cls)
                if rule is None:
                    continue
                members = kb.class_members[cls]
                meds = [o for o in peers if (o.ingredients & members) - d.ingredients]
                meds = [o for o in meds if (cls, frozenset((d.key, o.key))) not in reported or not o.draft]
                if not meds:
                    continue
                for o in meds:
                    reported.add((cls, frozenset((d.key, o.key))))
                theirs = set().union(*(o.ingredients & members for o in meds)) - d.ingredients
                out.append(
                    Finding(
                        kind=f"duplicate:{cls}",
                        category="duplicate",
                        draft=d,
                        others=meds,
                        severity=rule.severity,
                        title=f"Duplicate therapy ({rule.name}): {kb.ingredient_label(x)} + {_names(kb, theirs)}",
                        problem=f"duplicate therapy ({rule.name})",
                        mechanism=f"Both drugs belong to the same class: {rule.name}.",
                        consequence=cap(rule.consequence) + ".",
                        management=rule.management,
                        citation=rule.citation,
                        factors=("age",),
                    )
                )
    # one finding per class and draft even if several ingredients of the draft are in it
    seen: set[tuple[str, str]] = set()
    unique = []
    for f in out:
        k = (f.kind, f.draft.key)
        if k not in seen:
            seen.add(k)
            unique.append(f)
    return unique


def _kidney_value(rule_measure: str, patient: PatientFacts) -> tuple[float, str, str] | None:
    """(value, label, sentence) of the measure a renal rule uses; eGFR stands in for CrCl, saying so."""
    if rule_measure == "crcl" and patient.crcl is not None:
        c = patient.crcl
        return c.value, f"CrCl {kidney_number(c.value)} mL/min", c.describe() + "."
    if patient.egfr is None:
        return None
    e = patient.egfr
    how = f" ({e.note})" if e.note else ""
    sentence = f"eGFR {kidney_number(e.value)} mL/min/1.73 m2{how}."
    if rule_measure == "crcl":
        why = (
            "no body weight in the last 90 days"
            if patient.weight is None
            else "no serum creatinine or age/sex"
        )
        sentence = (
            f"Creatinine clearance could not be computed ({why}); the label threshold is Cockcroft-Gault CrCl, "
            f"so eGFR {kidney_number(e.value)} mL/min/1.73 m2{how} stands in for it."
        )
    return e.value, f"eGFR {kidney_number(e.value)}", sentence


def renal(kb: Knowledge, drafts: list[Med], patient: PatientFacts) -> list[Finding]:
    """Drugs to avoid or dose-reduce at the patient's kidney function (CrCl or eGFR, as the label uses)."""
    out: list[Finding] = []
    for d in drafts:
        seen: set[str] = set()
        for x in sorted(d.ingredients):
            for rule in kb.renal_by_ingredient.get(x, ()):
                kidney = _kidney_value(rule.measure, patient)
                if kidney is None:
                    continue
                value, where, sentence = kidney
                band = rule.band(value)
                if band is None or rule.id in seen:
                    continue
                seen.add(rule.id)
                action = {"avoid": "avoid", "reduce": "renal dose needed", "monitor": "use with caution"}[
                    band.action
                ]
                limit = f"< {band.below:g}" if band.below is not None else f"> {band.above:g}"
                management = band.advice + (f" {rule.note}" if rule.note else "")
                review = None
                if band.action == "reduce" and band.dose is not None:
                    review = "the order's indication and product are not checked by this rule"
                    management += f" Label dose to consider: {band.dose.text}."
                out.append(
                    Finding(
                        kind=f"renal:{rule.id}",
                        category="renal",
                        draft=d,
                        others=[],
                        severity=band.severity,
                        title=f"{cap(kb.ingredient_label(x))} at {where} ({limit}): {action}",
                        problem=f"{action} at {where}",
                        mechanism=rule.mechanism,
                        consequence=rule.consequence,
                        management=management,
                        citation=rule.citation,
                        factors=("age",),
                        review=review,
                        avoid=band.action == "avoid",
                        monitor=("creatinine",) if band.action == "monitor" else (),
                        facts=[sentence],
                    )
                )
    return out


def doses(dosing: Dosing, drafts: list[Med], patient: PatientFacts, record: PatientRecord) -> list[Finding]:
    """Label dosing by indication, kidney function and weight (dosing.json)."""
    out: list[Finding] = []
    for d in drafts:
        for r in dosing.check(d, patient, record):
            kind = f"renal:{r.drug.id}" if r.kidney_kind else f"dose:{r.drug.id}"
            out.append(
                Finding(
                    kind=kind,
                    category="renal" if r.kidney_kind else "dose",
                    draft=d,
                    others=[],
                    severity=r.severity,
                    title=r.title,
                    problem=r.problem,
                    mechanism=r.drug.mechanism,
                    consequence=r.drug.consequence,
                    management=r.management,
                    citation=r.drug.citation,
                    factors=("age",),
                    change=r.change,
                    review=r.review,
                    avoid=r.avoid,
                    facts=list(r.facts),
                )
            )
    return out


def beers(kb: Knowledge, drafts: list[Med], patient: PatientFacts) -> list[Finding]:
    """AGS Beers Criteria 2023: drugs to avoid from age 65 (with their condition exceptions)."""
    if patient.age is None or patient.age < kb.beers_min_age:
        return []
    out: list[Finding] = []
    for d in drafts:
        seen: set[str] = set()
        for x in sorted(d.ingredients):
            for rule in kb.beers_by_ingredient.get(x, ()):
                if rule.id in seen:
                    continue
                if rule.exclude_text and any(t in d.text for t in rule.exclude_text):
                    continue
                if rule.unless_conditions and patient.has_condition(rule.unless_conditions):
                    continue
                if rule.only_with_conditions and not patient.has_condition(rule.only_with_conditions):
                    continue
                if rule.only_new and x in patient.active_ingredients:
                    continue
                seen.add(rule.id)
                out.append(
                    Finding(
                        kind=f"beers:{rule.id}",
                        category="beers",
                        draft=d,
                        others=[],
                        severity=rule.severity,
                        title=f"{cap(kb.ingredient_label(x))} at age {patient.age}: {rule.problem} (Beers 2023)",
                        problem=rule.problem,
                        mechanism=rule.rationale,
                        consequence=cap(rule.problem) + ".",
                        management=f"{rule.recommendation} (quality of evidence: {rule.quality}; "
                        f"strength of recommendation: {rule.strength})",
                        citation=rule.citation,
                        factors=("age",),
                    )
                )
    return out


def lab_rules(kb: Knowledge, drafts: list[Med], patient: PatientFacts) -> list[Finding]:
    """Drugs ordered while a lab in the chart is already out of range (potassium, INR, QTc, platelets)."""
    out: list[Finding] = []
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    for d in drafts:
        seen: set[str] = set()
        worst: dict[str, Finding] = {}  # one finding per lab and draft: the most severe rule
        for x in sorted(d.ingredients):
            for rule in kb.lab_rules_by_ingredient.get(x, ()):
                value = patient.labs.get(rule.lab)
                if value is None or rule.id in seen:
                    continue
                band = next((b for b in rule.bands if compare(value.value, b.op, b.value)), None)
                if band is None or band.severity is None:
                    continue
                seen.add(rule.id)
                lab = kb.labs[rule.lab]
                shown = f"{value.value:.{lab.decimals}f}" + (
                    f" {lab.display_unit}" if lab.display_unit else ""
                )
                finding = Finding(
                    kind=f"lab:{rule.id}",
                    category="lab",
                    draft=d,
                    others=[],
                    severity=band.severity,
                    title=f"{cap(kb.ingredient_label(x))} with {lab.name} {shown}: {rule.problem}",
                    problem=rule.problem,
                    mechanism=rule.mechanism,
                    consequence=rule.consequence,
                    management=rule.management,
                    citation=rule.citation,
                    factors=("age",),
                    labs=(rule.lab,),
                    monitor=rule.monitor,
                )
                current = worst.get(rule.lab)
                if current is None or rank[finding.severity] > rank[current.severity]:
                    worst[rule.lab] = finding
        out += worst.values()
    return out


def _allergy_finding(
    d: Med,
    kind: str,
    severity: str,
    title: str,
    problem: str,
    mechanism: str,
    consequence: str,
    management: str,
    citation: tuple[str, ...],
    extra: int,
) -> Finding:
    return Finding(
        kind=kind,
        category="allergy",
        draft=d,
        others=[],
        severity=severity,
        title=title,
        problem=problem,
        mechanism=mechanism,
        consequence=consequence,
        management=management,
        citation=citation,
        extra_points=extra,
    )


def allergies(kb: Knowledge, drafts: list[Med], patient: PatientFacts) -> list[Finding]:
    """A draft whose ingredient, its class, or a documented cross-reactive class matches an active allergy."""
    found: dict[tuple[str, str], Finding] = {}
    points = kb.scoring.allergy_high_risk_points
    for d in drafts:
        for allergy in patient.allergies:
            extra = points if allergy.high_risk else 0
            what = allergy.label.lower()
            covered: set[str] = set()
            candidates: list[Finding] = []
            for g in kb.allergy_groups:
                if not ((allergy.ingredients & g.members) or (allergy.snomed & g.snomed)):
                    continue
                hit = d.ingredients & g.members
                if hit:
                    covered |= hit
                    names = _names(kb, hit)
                    candidates.append(
                        _allergy_finding(
                            d,
                            f"allergy:{g.id}",
                            g.severity,
                            f"{cap(names)}: allergy to {what} on record",
                            f"allergy to {what}",
                            f"{cap(names)} is in the same class as the recorded allergen ({allergy.label})."
                            + (f" {g.note}" if g.note else ""),
                            "Allergic reaction, possibly anaphylaxis.",
                            "Choose a drug from another class, or confirm the allergy history (consider allergy "
                            "testing or de-labelling) before giving it.",
                            g.citation,
                            extra,
                        )
                    )
                    continue
                for cls, members, severity, note, citation in g.cross:
                    hit = d.ingredients & members
                    if hit:
                        candidates.append(
                            _allergy_finding(
                                d,
                                f"allergy:{g.id}-{cls}",
                                severity,
                                f"{cap(_names(kb, hit))}: possible cross-reactivity with {what} allergy",
                                f"cross-reactivity with {what}",
                                note,
                                "Allergic reaction (low probability).",
                                "Check the nature of the reaction; after anaphylaxis choose another class or test "
                                "first.",
                                citation,
                                extra,
                            )
                        )
            direct = (d.ingredients & allergy.ingredients) - covered
            if direct:
                names = _names(kb, direct)
                candidates.append(
                    _allergy_finding(
                        d,
                        "allergy:"
                        + "-".join(sorted(kb.ingredient_label(i).replace(" ", "-") for i in direct)),
                        kb.allergy_ingredient_severity,
                        f"{cap(names)}: allergy to {what} on record",
                        f"allergy to {what}",
                        f"The patient has an active allergy or intolerance record for {allergy.label}.",
                        "Allergic reaction, possibly anaphylaxis.",
                        "Do not give unless the allergy has been ruled out; choose an alternative.",
                        kb.allergy_citation,
                        extra,
                    )
                )
            for f in candidates:
                if allergy.reactions:
                    reaction = ", ".join(allergy.reactions)
                    f.title = f"{f.title} ({reaction})"
                    f.facts = [f"Recorded reaction to {allergy.label}: {reaction}."]
                key = (d.key, f.kind)
                if key not in found or found[key].extra_points < f.extra_points:
                    found[key] = f
    return list(found.values())
