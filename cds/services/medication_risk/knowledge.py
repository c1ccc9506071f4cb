"""The medication knowledge base: loaded once at start, validated, indexed for the hook path.

The files live in cds/knowledge/medications (see its README). Everything that references something
else (a class, an ingredient, a lab, a citation) is checked here, so a typo in a rule stops the
service at start with a message naming the file and the rule, instead of silently never firing.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from cds.knowledge import KNOWLEDGE_DIR
from cds.runtime.shapes import ShapeError, convert, decode_json
from cds.services.medication_risk import knowledge_files as kf
from cds.services.medication_risk.names import NameIndex

KB_DIR = KNOWLEDGE_DIR / "medications"
SEVERITIES = ("minor", "moderate", "major", "contraindicated")
_LOINC = re.compile(r"^([0-9]{1,7})-([0-9])$")
# How an ingredient's RxCUI was confirmed: in the VSAC value sets (shared data), in a public reference
# table (README), or not yet (listed for a pharmacist's review).
_CHECKS = {"vsac", "ref", "review"}


class KnowledgeError(ValueError):
    """The knowledge base is invalid; the message names the file and the entry."""


def loinc_ok(code: str) -> bool:
    """A LOINC code with a correct mod-10 check digit (e.g. 2823-3)."""
    m = _LOINC.match(code)
    if not m:
        return False
    total = 0
    for i, ch in enumerate(reversed(m.group(1))):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return (10 - total % 10) % 10 == int(m.group(2))


def compare(value: float, op: str, threshold: float) -> bool:
    if op == ">=":
        return value >= threshold
    if op == ">":
        return value > threshold
    if op == "<=":
        return value <= threshold
    return value < threshold


@dataclass(frozen=True)
class Ingredient:
    rxcui: str
    name: str
    classes: frozenset[str]
    check: frozenset[str] = frozenset({"review"})


@dataclass(frozen=True)
class Source:
    id: str
    label: str
    citation: str
    url: str


@dataclass(frozen=True)
class Dosage:
    """A dosage a suggestion writes into MedicationRequest.dosageInstruction."""

    text: str
    dose: float | None = None
    dose_unit: str | None = None
    dose_code: str | None = None
    frequency: int | None = None
    period: float | None = None
    period_unit: str | None = None
    as_needed: bool = False


@dataclass(frozen=True)
class Alternative:
    replace: str  # "a" or "b": which side of the rule the alternative replaces
    rxcui: str
    display: str
    dosage: Dosage
    label: str


@dataclass(frozen=True)
class Interaction:
    id: str
    a: frozenset[str]
    b: frozenset[str]
    severity: str
    problem: str
    mechanism: str
    consequence: str
    management: str
    citation: tuple[str, ...]
    onc: str | None = None
    labs: tuple[str, ...] = ()
    monitor: tuple[str, ...] = ()
    alternative: Alternative | None = None
    factors: tuple[str, ...] = ()

    @property
    def non_interruptive(self) -> bool:
        return self.onc == "non-interruptive"


@dataclass(frozen=True)
class RenalBand:
    severity: str
    action: str
    advice: str
    below: float | None = None
    above: float | None = None
    dose: Dosage | None = None

    def applies(self, egfr: float) -> bool:
        if self.below is not None:
            return egfr < self.below
        return self.above is not None and egfr > self.above


@dataclass(frozen=True)
class RenalRule:
    id: str
    drugs: frozenset[str]
    bands: tuple[RenalBand, ...]
    mechanism: str
    consequence: str
    citation: tuple[str, ...]
    note: str | None = None
    measure: str = "egfr"  # the label's measure: "egfr" or "crcl" (Cockcroft-Gault)

    def band(self, egfr: float) -> RenalBand | None:
        """The band for this eGFR: the lowest `below` threshold it is under, else an `above` band."""
        for b in self.bands:
            if b.applies(egfr):
                return b
        return None


@dataclass(frozen=True)
class ConditionSet:
    icd10_prefixes: tuple[str, ...] = ()
    snomed: frozenset[str] = frozenset()


@dataclass(frozen=True)
class BeersRule:
    id: str
    drugs: frozenset[str]
    severity: str
    problem: str
    rationale: str
    recommendation: str
    quality: str
    strength: str
    citation: tuple[str, ...]
    exclude_text: tuple[str, ...] = ()
    unless_conditions: ConditionSet | None = None
    only_with_conditions: ConditionSet | None = None
    only_new: bool = False


@dataclass(frozen=True)
class LabBand:
    op: str
    value: float
    points: int = 0
    label: str = ""
    severity: str | None = None


@dataclass(frozen=True)
class LabDef:
    id: str
    name: str
    loinc: tuple[str, ...]
    unit: str | None
    display_unit: str
    decimals: int
    max_age_days: int
    bands: tuple[LabBand, ...]
    molar_mass: float | None = None

    def band(self, value: float) -> LabBand | None:
        return next((b for b in self.bands if compare(value, b.op, b.value)), None)


@dataclass(frozen=True)
class LabOrder:
    id: str
    loinc: str
    display: str


@dataclass(frozen=True)
class LabRule:
    id: str
    drugs: frozenset[str]
    lab: str
    bands: tuple[LabBand, ...]
    problem: str
    mechanism: str
    consequence: str
    management: str
    citation: tuple[str, ...]
    monitor: tuple[str, ...] = ()


@dataclass(frozen=True)
class AllergyGroup:
    id: str
    members: frozenset[str]
    severity: str
    citation: tuple[str, ...]
    snomed: frozenset[str] = frozenset()
    cross: tuple[
        tuple[str, frozenset[str], str, str, tuple[str, ...]], ...
    ] = ()  # class, members, sev, note, cit
    no_cross: frozenset[str] = frozenset()
    note: str | None = None


@dataclass(frozen=True)
class DuplicateRule:
    class_id: str
    name: str
    severity: str
    consequence: str
    management: str
    citation: tuple[str, ...]


@dataclass(frozen=True)
class Scoring:
    severity_points: Mapping[str, int]
    info: int
    warning: int
    critical: int
    age_bands: tuple[tuple[int, int], ...]
    renal_bands: tuple[tuple[float, int], ...]
    per_extra_drug: int
    max_count_points: int
    per_extra_finding: int
    max_order_score: int
    max_cards_per_order: int
    allergy_high_risk_points: int


@dataclass
class Knowledge:
    """The validated, indexed knowledge base."""

    version: str
    date: str
    directory: Path
    sources: dict[str, Source]
    ingredients: dict[str, Ingredient]
    products: dict[str, frozenset[str]]
    class_names: dict[str, str]
    class_members: dict[str, frozenset[str]]
    class_citations: dict[str, tuple[str, ...]]
    interactions: list[Interaction]
    pairs: dict[tuple[str, str], tuple[Interaction, ...]]
    renal: list[RenalRule]
    renal_by_ingredient: dict[str, tuple[RenalRule, ...]]
    beers: list[BeersRule]
    beers_by_ingredient: dict[str, tuple[BeersRule, ...]]
    beers_min_age: int
    labs: dict[str, LabDef]
    lab_orders: dict[str, LabOrder]
    lab_rules: list[LabRule]
    lab_rules_by_ingredient: dict[str, tuple[LabRule, ...]]
    allergy_groups: list[AllergyGroup]
    allergy_ingredient_severity: str
    allergy_citation: tuple[str, ...]
    duplicates: dict[str, DuplicateRule]
    scoring: Scoring
    ingredient_names: NameIndex
    class_name_index: NameIndex
    counts: dict[str, int] = field(default_factory=dict)

    def ingredient_label(self, rxcui: str) -> str:
        ing = self.ingredients.get(rxcui)
        return ing.name if ing else rxcui


# --- loading ------------------------------------------------------------------------------------
S = TypeVar("S", bound=msgspec.Struct)


def read_knowledge_file(directory: Path, name: str, shape: type[S]) -> S:
    """One JSON file decoded into its declared shape (knowledge_files), or KnowledgeError."""
    try:
        data = (directory / name).read_bytes()
    except FileNotFoundError:
        raise KnowledgeError(f"{name}: file missing from {directory}") from None
    try:
        return decode_json(data, shape)
    except ShapeError as e:
        raise KnowledgeError(f"{name}: {e}") from None


def _rows(directory: Path, name: str, shape: type[S]) -> list[tuple[str, S]]:
    """The rows of a CSV file (with "file line n" for messages), each decoded into `shape`."""
    columns = {f.encode_name for f in msgspec.structs.fields(shape)}
    try:
        with open(directory / name, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = columns - set(reader.fieldnames or ())
            if missing:
                raise KnowledgeError(f"{name}: missing column(s) {', '.join(sorted(missing))}")
            raw = list(reader)
    except FileNotFoundError:
        raise KnowledgeError(f"{name}: file missing from {directory}") from None
    cells = [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in raw]
    try:
        rows: list[S] = convert(cells, list[shape])  # type: ignore[valid-type]  # one pass
    except ShapeError as e:
        at = re.match(r"^\$\[(\d+)\]\.?(.*)$", e.path)  # $[i].field: row i is line i + 2
        line, field = (int(at.group(1)) + 2, at.group(2)) if at else (0, e.path)
        raise KnowledgeError(
            f"{name} line {line}: {e.problem}" + (f" (at $.{field})" if field else "")
        ) from None
    return [(f"{name} line {n}", row) for n, row in enumerate(rows, start=2)]


def _split(cell: str) -> list[str]:
    return [t for t in cell.split("|") if t.strip()]


@dataclass
class _References:
    """What rules may refer to, and the checks that they do (the cross-file rules)."""

    sources: dict[str, Source]
    ingredients: dict[str, Ingredient] = field(default_factory=dict)
    class_members: dict[str, frozenset[str]] = field(default_factory=dict)

    def cite(self, refs: Iterable[str], where: str) -> tuple[str, ...]:
        """A non-empty citation naming only sources of manifest.json."""
        out = tuple(refs)
        if not out:
            raise KnowledgeError(f"{where}: missing citation")
        for sid in out:
            if sid not in self.sources:
                raise KnowledgeError(f"{where}: citation {sid!r} is not a source in manifest.json")
        return out

    def drugs(self, tokens: Iterable[str], where: str) -> frozenset[str]:
        """Class ids and RxCUIs -> ingredient RxCUIs; a leading '-' removes a class or RxCUI."""
        plus: set[str] = set()
        minus: set[str] = set()
        for t in tokens:
            target, tok = (minus, t[1:]) if t.startswith("-") else (plus, t)
            if tok.isdigit():
                if tok not in self.ingredients:
                    raise KnowledgeError(f"{where}: RxCUI {tok} is not an ingredient in ingredients.csv")
                target.add(tok)
            elif tok in self.class_members:
                target |= self.class_members[tok]
            else:
                raise KnowledgeError(f"{where}: unknown class {tok!r}")
        out = frozenset(plus - minus)
        if not out:
            raise KnowledgeError(f"{where}: the drug list matches no ingredient")
        return out

    def classes(self, ids: Iterable[str], where: str, what: str) -> frozenset[str]:
        out = frozenset(ids)
        for c in out:
            if c not in self.class_members:
                raise KnowledgeError(f"{where}: {what} names unknown class {c!r}")
        return out


def _known(refs: Iterable[str], pool: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    out = tuple(refs)
    for r in out:
        if r not in pool:
            raise KnowledgeError(f"{where}: {key} references unknown {r!r}")
    return out


def _dosage(d: kf.DosageEntry) -> Dosage:
    return Dosage(d.text, d.dose, d.dose_unit, d.dose_code, d.frequency, d.period, d.period_unit, d.as_needed)


def _lab_band(b: kf.LabBandEntry, where: str, severity: bool = False) -> LabBand:
    if severity and b.severity is None:
        raise KnowledgeError(f"{where}: severity is missing")
    return LabBand(b.op, float(b.value), b.points, b.label, b.severity if severity else None)


def _conditions(c: kf.ConditionsEntry | None, where: str) -> ConditionSet | None:
    if c is None:
        return None
    if not (c.icd10_prefixes or c.snomed):
        raise KnowledgeError(f"{where}: conditions need icd10_prefixes or snomed codes")
    return ConditionSet(tuple(c.icd10_prefixes), frozenset(c.snomed))


def _manifest(d: Path) -> tuple[str, str, dict[str, Source]]:
    m = read_knowledge_file(d, "manifest.json", kf.ManifestFile)
    if not m.sources:
        raise KnowledgeError("manifest.json: no sources")
    sources = {sid: Source(sid, s.label, s.citation, s.url) for sid, s in m.sources.items()}
    return m.version, m.date, sources


def _ingredients(d: Path, refs: _References, class_ids: Iterable[str]) -> list[tuple[str, str]]:
    """Fill refs.ingredients and refs.class_members; return the (name or synonym, RxCUI) pairs."""
    names: list[tuple[str, str]] = []
    members: dict[str, set[str]] = {cid: set() for cid in class_ids}
    for where, row in _rows(d, "ingredients.csv", kf.IngredientRow):
        if row.rxcui in refs.ingredients:
            raise KnowledgeError(f"{where}: duplicate RxCUI {row.rxcui}")
        cls = frozenset(_split(row.classes))
        for c in cls:
            if c not in members:
                raise KnowledgeError(f"{where}: unknown class {c!r} for {row.name}")
            members[c].add(row.rxcui)
        check = frozenset(row.check.split("|"))
        if not check <= _CHECKS or ("review" in check and len(check) > 1):
            raise KnowledgeError(f"{where}: check {row.check!r} must be vsac and/or ref, or review")
        refs.ingredients[row.rxcui] = Ingredient(row.rxcui, row.name, cls, check)
        names += [(row.name, row.rxcui), *((s, row.rxcui) for s in _split(row.synonyms))]
    refs.class_members = {c: frozenset(m) for c, m in members.items()}
    empty = sorted(c for c, m in refs.class_members.items() if not m)
    if empty:
        raise KnowledgeError(
            f"classes.json: class(es) with no ingredient in ingredients.csv: {', '.join(empty)}"
        )
    return names


def _products(d: Path, refs: _References) -> dict[str, frozenset[str]]:
    products: dict[str, frozenset[str]] = {}
    for where, row in _rows(d, "products.csv", kf.ProductRow):
        if row.rxcui in products or row.rxcui in refs.ingredients:
            raise KnowledgeError(f"{where}: RxCUI {row.rxcui} listed twice")
        ings = _split(row.ingredients)
        if not ings:
            raise KnowledgeError(f"{where}: product {row.rxcui} has no ingredient")
        for i in ings:
            if i not in refs.ingredients:
                raise KnowledgeError(f"{where}: product {row.rxcui} references unknown ingredient {i}")
        products[row.rxcui] = frozenset(ings)
    return products


def _labs(doc: kf.LabsFile, refs: _References) -> tuple[dict[str, LabDef], dict[str, LabOrder]]:
    labs: dict[str, LabDef] = {}
    for lid, lab in doc.labs.items():
        where = f"labs.json: lab {lid}"
        for code in lab.loinc:
            if not loinc_ok(code):
                raise KnowledgeError(f"{where}: bad LOINC code {code!r}")
        refs.cite(lab.citation, where)
        labs[lid] = LabDef(
            lid,
            lab.name,
            tuple(lab.loinc),
            lab.unit,
            lab.display_unit or lab.unit or "",
            lab.decimals,
            lab.max_age_days,
            tuple(_lab_band(b, f"{where} band") for b in lab.bands),
            lab.molar_mass,
        )
    for required in ("potassium", "inr", "qtc", "platelets", "creatinine", "egfr"):
        if required not in labs:
            raise KnowledgeError(f"labs.json: lab {required!r} is required")
    orders: dict[str, LabOrder] = {}
    for oid, o in doc.orders.items():
        if not loinc_ok(o.loinc):
            raise KnowledgeError(f"labs.json: order {oid}: bad LOINC code {o.loinc!r}")
        orders[oid] = LabOrder(oid, o.loinc, o.display)
    return labs, orders


def _interactions(
    doc: kf.InteractionsFile,
    refs: _References,
    products: Mapping[str, frozenset[str]],
    labs: Mapping[str, LabDef],
    orders: Mapping[str, LabOrder],
) -> list[Interaction]:
    out: list[Interaction] = []
    seen: set[str] = set()
    for r in doc.rules:
        where = f"interactions.json: rule {r.id}"
        if r.id in seen:
            raise KnowledgeError(f"{where}: missing or duplicate id")
        seen.add(r.id)
        alt = None
        if r.alternative is not None:
            a = r.alternative
            if a.rxcui not in products and a.rxcui not in refs.ingredients:
                raise KnowledgeError(
                    f"{where}: alternative RxCUI {a.rxcui!r} is neither a product nor an ingredient"
                )
            alt = Alternative(a.replace, a.rxcui, a.display, _dosage(a.dosage), a.label)
        out.append(
            Interaction(
                r.id,
                refs.drugs(r.a, f"{where} (a)"),
                refs.drugs(r.b, f"{where} (b)"),
                r.severity,
                r.problem,
                r.mechanism,
                r.consequence,
                r.management,
                refs.cite(r.citation, where),
                r.onc,
                _known(r.labs, labs, "labs", where),
                _known(r.monitor, orders, "monitor", where),
                alt,
                tuple(r.factors),
            )
        )
    return out


def _pairs(interactions: Iterable[Interaction]) -> dict[tuple[str, str], tuple[Interaction, ...]]:
    """Ingredient pair -> its rules in file order (a dict keyed by rule id: `rule in list` would
    compare whole frozen dataclasses, which dominated load time with class-level rules)."""
    pairs: dict[tuple[str, str], dict[str, Interaction]] = {}
    for rule in interactions:
        for x in rule.a:
            for y in rule.b:
                if x != y:
                    pairs.setdefault((x, y), {})[rule.id] = rule
                    pairs.setdefault((y, x), {})[rule.id] = rule
    return {k: tuple(v.values()) for k, v in pairs.items()}


def _renal(doc: kf.RenalFile, refs: _References) -> list[RenalRule]:
    out = []
    for r in doc.rules:
        where = f"renal.json: rule {r.id}"
        bands = []
        for n, b in enumerate(r.bands):
            if (b.below is None) == (b.above is None):
                raise KnowledgeError(f"{where} band {n + 1}: give exactly one of below/above")
            below = float(b.below) if b.below is not None else None
            above = float(b.above) if b.above is not None else None
            dose = _dosage(b.dose) if b.dose is not None else None
            bands.append(RenalBand(b.severity, b.action, b.advice, below, above, dose))
        lows = [b.below for b in bands if b.below is not None]
        if lows != sorted(lows):
            raise KnowledgeError(f"{where}: 'below' bands must be in increasing order")
        out.append(
            RenalRule(
                r.id,
                refs.drugs(r.drugs, where),
                tuple(bands),
                r.mechanism,
                r.consequence,
                refs.cite(r.citation, where),
                r.note,
                r.measure,
            )
        )
    return out


def _beers(doc: kf.BeersFile, refs: _References) -> list[BeersRule]:
    out = []
    for r in doc.rules:
        where = f"beers.json: rule {r.id}"
        out.append(
            BeersRule(
                r.id,
                refs.drugs(r.drugs, where),
                r.severity,
                r.problem,
                r.rationale,
                r.recommendation,
                r.quality,
                r.strength,
                refs.cite(r.citation, where),
                tuple(t.lower() for t in r.exclude_text),
                _conditions(r.unless_conditions, where),
                _conditions(r.only_with_conditions, where),
                r.only_new,
            )
        )
    return out


def _lab_rules(
    doc: kf.LabsFile, refs: _References, labs: Mapping[str, LabDef], orders: Mapping[str, LabOrder]
) -> list[LabRule]:
    out = []
    for r in doc.rules:
        where = f"labs.json: rule {r.id}"
        if r.lab not in labs:
            raise KnowledgeError(f"{where}: unknown lab {r.lab!r}")
        out.append(
            LabRule(
                r.id,
                refs.drugs(r.drugs, where),
                r.lab,
                tuple(_lab_band(b, f"{where} band", severity=True) for b in r.bands),
                r.problem,
                r.mechanism,
                r.consequence,
                r.management,
                refs.cite(r.citation, where),
                _known(r.monitor, orders, "monitor", where),
            )
        )
    return out


def _allergy_groups(doc: kf.AllergyFile, refs: _References) -> list[AllergyGroup]:
    out = []
    for g in doc.groups:
        where = f"allergy_cross.json: group {g.id}"
        cross = []
        for c in g.cross:
            cw = f"{where} cross {c.class_}"
            if c.class_ not in refs.class_members:
                raise KnowledgeError(f"{cw}: unknown class")
            members = refs.class_members[c.class_]
            cross.append((c.class_, members, c.severity, c.note, refs.cite(c.citation, cw)))
        no_cross = refs.classes(g.no_cross, where, "no_cross")
        if no_cross:
            refs.cite(g.no_cross_citation, where)
        out.append(
            AllergyGroup(
                g.id,
                refs.drugs(g.members, where),
                g.severity,
                refs.cite(g.citation, where),
                frozenset(g.snomed),
                tuple(cross),
                no_cross,
                g.note,
            )
        )
    return out


def _scoring(doc: kf.ScoringFile, allergy_high_risk_points: int) -> Scoring:
    t = doc.thresholds
    if not 0 < t.info < t.warning < t.critical <= 100:
        raise KnowledgeError("scoring.json: thresholds must satisfy 0 < info < warning < critical <= 100")
    f = doc.factors
    return Scoring(
        msgspec.structs.asdict(doc.severity_points),
        t.info,
        t.warning,
        t.critical,
        tuple(sorted(((x.min, x.points) for x in f.age), reverse=True)),
        tuple(sorted((float(x.below), x.points) for x in f.renal)),
        f.count.per_extra_drug,
        f.count.max,
        doc.order_score.per_extra_finding,
        doc.order_score.max,
        doc.max_cards_per_order,
        allergy_high_risk_points,
    )


def load_knowledge(directory: Path | str | None = None) -> Knowledge:
    """Load and validate the knowledge base; raise KnowledgeError naming what is wrong.

    Each file is decoded into its declared shape (knowledge_files); what remains here are the
    references between files: citations, classes, ingredients, products, labs and lab orders.
    """
    d = Path(directory) if directory else KB_DIR
    version, date, sources = _manifest(d)
    refs = _References(sources)
    classes = read_knowledge_file(d, "classes.json", kf.ClassesFile).classes
    class_names = {cid: c.name for cid, c in classes.items()}
    class_citations = {cid: refs.cite(c.citation, f"classes.json: {cid}") for cid, c in classes.items()}
    names = _ingredients(d, refs, classes)
    products = _products(d, refs)
    labs_doc = read_knowledge_file(d, "labs.json", kf.LabsFile)
    labs, lab_orders = _labs(labs_doc, refs)
    interactions = _interactions(
        read_knowledge_file(d, "interactions.json", kf.InteractionsFile), refs, products, labs, lab_orders
    )
    pairs = _pairs(interactions)
    renal = _renal(read_knowledge_file(d, "renal.json", kf.RenalFile), refs)
    beers_doc = read_knowledge_file(d, "beers.json", kf.BeersFile)
    beers = _beers(beers_doc, refs)
    lab_rules = _lab_rules(labs_doc, refs, labs, lab_orders)
    allergy_doc = read_knowledge_file(d, "allergy_cross.json", kf.AllergyFile)
    groups = _allergy_groups(allergy_doc, refs)
    duplicates = {
        cid: DuplicateRule(
            cid,
            c.name,
            c.duplicate.severity,
            c.duplicate.consequence,
            c.duplicate.management,
            refs.cite(c.duplicate.citation, f"classes.json: {cid} duplicate"),
        )
        for cid, c in classes.items()
        if c.duplicate is not None
    }
    # class names for allergy text ("penicillins", "sulfa")
    class_name_pairs = [(s, cid) for cid, c in classes.items() for s in c.synonyms]
    scoring = _scoring(read_knowledge_file(d, "scoring.json", kf.ScoringFile), allergy_doc.high_risk_points)
    ingredients, class_members = refs.ingredients, refs.class_members
    kb = Knowledge(
        version=version,
        date=date,
        directory=d,
        sources=sources,
        ingredients=ingredients,
        products=products,
        class_names=class_names,
        class_members=class_members,
        class_citations=class_citations,
        interactions=interactions,
        pairs=pairs,
        renal=renal,
        renal_by_ingredient=_index(renal),
        beers=beers,
        beers_by_ingredient=_index(beers),
        beers_min_age=beers_doc.min_age,
        labs=labs,
        lab_orders=lab_orders,
        lab_rules=lab_rules,
        lab_rules_by_ingredient=_index(lab_rules),
        allergy_groups=groups,
        allergy_ingredient_severity=allergy_doc.ingredient_severity,
        allergy_citation=refs.cite(allergy_doc.citation, "allergy_cross.json"),
        duplicates=duplicates,
        scoring=scoring,
        ingredient_names=NameIndex(names),
        class_name_index=NameIndex(class_name_pairs),
    )
    kb.counts = {
        "ingredients": len(ingredients),
        "products": len(products),
        "ingredients_to_review": sum("review" in i.check for i in ingredients.values()),
        "classes": len(class_names),
        "class_memberships": sum(len(m) for m in class_members.values()),
        "interactions": len(interactions),
        "interactions_onc_high_priority": sum(r.onc == "high-priority" for r in interactions),
        "interactions_onc_non_interruptive": sum(r.onc == "non-interruptive" for r in interactions),
        **{f"interactions_{s}": sum(r.severity == s for r in interactions) for s in SEVERITIES},
        "interaction_pairs": len(pairs) // 2,
        "renal_rules": len(renal),
        "beers_rules": len(beers),
        "lab_rules": len(lab_rules),
        "allergy_groups": len(groups),
        "duplicate_classes": len(duplicates),
    }
    return kb


def _index(rules: Iterable[Any]) -> dict[str, tuple[Any, ...]]:
    out: dict[str, list[Any]] = {}
    for r in rules:
        for code in r.drugs:
            out.setdefault(code, []).append(r)
    return {k: tuple(v) for k, v in out.items()}
