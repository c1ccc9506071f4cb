"""The medication knowledge base: loaded once at start, validated, indexed for the hook path.

The files live in cds/knowledge/medications (see its README). Everything that references something
else (a class, an ingredient, a lab, a citation) is checked here, so a typo in a rule stops the
service at start with a message naming the file and the rule, instead of silently never firing.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cds.knowledge import KNOWLEDGE_DIR
from cds.services.medication_risk.names import NameIndex

KB_DIR = KNOWLEDGE_DIR / "medications"
SEVERITIES = ("minor", "moderate", "major", "contraindicated")
_RXCUI = re.compile(r"^[1-9][0-9]{0,8}$")
_LOINC = re.compile(r"^([0-9]{1,7})-([0-9])$")
_TTYS = {"SCD", "SBD", "GPCK", "BPCK"}
_OPS = {">=", ">", "<=", "<"}
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
class _Loader:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def json(self, name: str) -> dict[str, Any]:
        path = self.dir / name
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KnowledgeError(f"{name}: file missing from {self.dir}") from None
        except json.JSONDecodeError as e:
            raise KnowledgeError(f"{name}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise KnowledgeError(f"{name}: the top level must be an object")
        return data

    def csv(self, name: str, columns: Iterable[str]) -> list[dict[str, str]]:
        path = self.dir / name
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                missing = set(columns) - set(reader.fieldnames or ())
                if missing:
                    raise KnowledgeError(f"{name}: missing column(s) {', '.join(sorted(missing))}")
                return list(reader)
        except FileNotFoundError:
            raise KnowledgeError(f"{name}: file missing from {self.dir}") from None


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    v = entry.get(key)
    if not isinstance(v, str) or not v.strip():
        raise KnowledgeError(f"{where}: '{key}' is missing or empty")
    return v


def _severity(entry: Mapping[str, Any], where: str, key: str = "severity") -> str:
    v = entry.get(key)
    if v not in SEVERITIES:
        raise KnowledgeError(f"{where}: {key} {v!r} is not one of {', '.join(SEVERITIES)}")
    return v


def load_knowledge(directory: Path | str | None = None) -> Knowledge:
    """Load and validate the knowledge base; raise KnowledgeError naming what is wrong."""
    d = Path(directory) if directory else KB_DIR
    L = _Loader(d)

    manifest = L.json("manifest.json")
    version = _text(manifest, "version", "manifest.json")
    date = _text(manifest, "date", "manifest.json")
    if not re.match(r"^\d{4}-\d{2}-\d{2}$", date):
        raise KnowledgeError(f"manifest.json: date {date!r} must be YYYY-MM-DD")
    sources: dict[str, Source] = {}
    for sid, s in (manifest.get("sources") or {}).items():
        where = f"manifest.json: source {sid}"
        if not isinstance(s, dict):
            raise KnowledgeError(f"{where}: must be an object")
        url = _text(s, "url", where)
        if not url.startswith(("http://", "https://")):
            raise KnowledgeError(f"{where}: url must be absolute")
        sources[sid] = Source(sid, _text(s, "label", where), _text(s, "citation", where), url)
    if not sources:
        raise KnowledgeError("manifest.json: no sources")

    def citations(entry: Mapping[str, Any], where: str, key: str = "citation") -> tuple[str, ...]:
        c = entry.get(key)
        if not isinstance(c, list) or not c:
            raise KnowledgeError(f"{where}: missing citation")
        for sid in c:
            if sid not in sources:
                raise KnowledgeError(f"{where}: citation {sid!r} is not a source in manifest.json")
        return tuple(c)

    # classes
    classes_doc = L.json("classes.json").get("classes")
    if not isinstance(classes_doc, dict) or not classes_doc:
        raise KnowledgeError("classes.json: 'classes' must be a non-empty object")
    class_names: dict[str, str] = {}
    class_citations: dict[str, tuple[str, ...]] = {}
    for cid, c in classes_doc.items():
        if not isinstance(c, dict):
            raise KnowledgeError(f"classes.json: {cid} must be an object")
        class_names[cid] = _text(c, "name", f"classes.json: {cid}")
        class_citations[cid] = citations(c, f"classes.json: {cid}")

    # ingredients
    ingredients: dict[str, Ingredient] = {}
    names: list[tuple[str, str]] = []
    members: dict[str, set[str]] = {cid: set() for cid in class_names}
    for n, row in enumerate(
        L.csv("ingredients.csv", ("rxcui", "name", "synonyms", "classes", "check")), start=2
    ):
        where = f"ingredients.csv line {n}"
        code = (row.get("rxcui") or "").strip()
        if not _RXCUI.match(code):
            raise KnowledgeError(f"{where}: bad RxCUI {code!r}")
        if code in ingredients:
            raise KnowledgeError(f"{where}: duplicate RxCUI {code}")
        name = (row.get("name") or "").strip()
        if not name:
            raise KnowledgeError(f"{where}: missing name")
        cls = frozenset(c for c in (row.get("classes") or "").split("|") if c)
        for c in cls:
            if c not in class_names:
                raise KnowledgeError(f"{where}: unknown class {c!r} for {name}")
            members[c].add(code)
        check = frozenset((row.get("check") or "").split("|"))
        if not check or not check <= _CHECKS or ("review" in check and len(check) > 1):
            raise KnowledgeError(f"{where}: check {row.get('check')!r} must be vsac and/or ref, or review")
        ingredients[code] = Ingredient(code, name, cls, check)
        names.append((name, code))
        names += [(s, code) for s in (row.get("synonyms") or "").split("|") if s.strip()]
    class_members = {c: frozenset(m) for c, m in members.items()}
    empty = sorted(c for c, m in class_members.items() if not m)
    if empty:
        raise KnowledgeError(
            f"classes.json: class(es) with no ingredient in ingredients.csv: {', '.join(empty)}"
        )

    def expand(tokens: Any, where: str) -> frozenset[str]:
        """Class ids and RxCUIs -> ingredient RxCUIs; a leading '-' removes a class or RxCUI."""
        if not isinstance(tokens, list) or not tokens:
            raise KnowledgeError(f"{where}: drug list is missing or empty")
        plus: set[str] = set()
        minus: set[str] = set()
        for t in tokens:
            if not isinstance(t, str) or not t:
                raise KnowledgeError(f"{where}: bad drug reference {t!r}")
            target, tok = (minus, t[1:]) if t.startswith("-") else (plus, t)
            if tok.isdigit():
                if tok not in ingredients:
                    raise KnowledgeError(f"{where}: RxCUI {tok} is not an ingredient in ingredients.csv")
                target.add(tok)
            elif tok in class_members:
                target |= class_members[tok]
            else:
                raise KnowledgeError(f"{where}: unknown class {tok!r}")
        out = frozenset(plus - minus)
        if not out:
            raise KnowledgeError(f"{where}: the drug list matches no ingredient")
        return out

    # products
    products: dict[str, frozenset[str]] = {}
    for n, row in enumerate(
        L.csv("products.csv", ("rxcui", "tty", "name", "ingredients", "source")), start=2
    ):
        where = f"products.csv line {n}"
        code = (row.get("rxcui") or "").strip()
        if not _RXCUI.match(code):
            raise KnowledgeError(f"{where}: bad RxCUI {code!r}")
        if code in products or code in ingredients:
            raise KnowledgeError(f"{where}: RxCUI {code} listed twice")
        if row.get("tty") not in _TTYS:
            raise KnowledgeError(f"{where}: term type {row.get('tty')!r} is not one of {sorted(_TTYS)}")
        if not (row.get("source") or "").strip():
            raise KnowledgeError(f"{where}: missing source")
        ings = [i for i in (row.get("ingredients") or "").split("|") if i]
        if not ings:
            raise KnowledgeError(f"{where}: product {code} has no ingredient")
        for i in ings:
            if i not in ingredients:
                raise KnowledgeError(f"{where}: product {code} references unknown ingredient {i}")
        products[code] = frozenset(ings)

    # labs (needed by interactions)
    labs_doc = L.json("labs.json")
    labs: dict[str, LabDef] = {}
    for lid, lab in (labs_doc.get("labs") or {}).items():
        where = f"labs.json: lab {lid}"
        codes = lab.get("loinc")
        if not isinstance(codes, list) or not codes:
            raise KnowledgeError(f"{where}: missing LOINC codes")
        for code in codes:
            if not isinstance(code, str) or not loinc_ok(code):
                raise KnowledgeError(f"{where}: bad LOINC code {code!r}")
        citations(lab, where)
        bands = tuple(_lab_band(b, f"{where} band", points=True) for b in lab.get("bands") or [])
        labs[lid] = LabDef(
            lid,
            _text(lab, "name", where),
            tuple(codes),
            lab.get("unit"),
            lab.get("display_unit") or lab.get("unit") or "",
            int(lab.get("decimals", 1)),
            int(lab.get("max_age_days", 30)),
            bands,
            lab.get("molar_mass"),
        )
    for required in ("potassium", "inr", "qtc", "platelets", "creatinine", "egfr"):
        if required not in labs:
            raise KnowledgeError(f"labs.json: lab {required!r} is required")
    lab_orders: dict[str, LabOrder] = {}
    for oid, o in (labs_doc.get("orders") or {}).items():
        where = f"labs.json: order {oid}"
        code = _text(o, "loinc", where)
        if not loinc_ok(code):
            raise KnowledgeError(f"{where}: bad LOINC code {code!r}")
        lab_orders[oid] = LabOrder(oid, code, _text(o, "display", where))

    def dosage(raw: Any, where: str) -> Dosage:
        if not isinstance(raw, dict):
            raise KnowledgeError(f"{where}: dosage must be an object")
        pu = raw.get("period_unit")
        if pu is not None and pu not in ("h", "d", "wk"):
            raise KnowledgeError(f"{where}: period_unit {pu!r} must be h, d or wk")
        return Dosage(
            _text(raw, "text", where),
            raw.get("dose"),
            raw.get("dose_unit"),
            raw.get("dose_code"),
            raw.get("frequency"),
            raw.get("period"),
            pu,
            bool(raw.get("as_needed", False)),
        )

    def lab_refs(entry: Mapping[str, Any], key: str, pool: Mapping[str, Any], where: str) -> tuple[str, ...]:
        refs = entry.get(key) or []
        for r in refs:
            if r not in pool:
                raise KnowledgeError(f"{where}: {key} references unknown {r!r}")
        return tuple(refs)

    # interactions
    interactions: list[Interaction] = []
    seen: set[str] = set()
    for rule in L.json("interactions.json").get("rules") or []:
        rid = rule.get("id")
        where = f"interactions.json: rule {rid}"
        if not isinstance(rid, str) or not rid or rid in seen:
            raise KnowledgeError(f"{where}: missing or duplicate id")
        seen.add(rid)
        onc = rule.get("onc")
        if onc not in (None, "high-priority", "non-interruptive"):
            raise KnowledgeError(f"{where}: onc must be high-priority or non-interruptive")
        factors = tuple(rule.get("factors") or ())
        for f in factors:
            if f not in ("age", "renal", "count"):
                raise KnowledgeError(f"{where}: unknown factor {f!r}")
        alt = None
        if rule.get("alternative"):
            a = rule["alternative"]
            if a.get("replace") not in ("a", "b"):
                raise KnowledgeError(f"{where}: alternative.replace must be 'a' or 'b'")
            code = str(a.get("rxcui", ""))
            if code not in products and code not in ingredients:
                raise KnowledgeError(
                    f"{where}: alternative RxCUI {code!r} is neither a product nor an ingredient"
                )
            alt = Alternative(
                a["replace"],
                code,
                _text(a, "display", where),
                dosage(a.get("dosage"), where),
                _text(a, "label", where),
            )
        interactions.append(
            Interaction(
                rid,
                expand(rule.get("a"), f"{where} (a)"),
                expand(rule.get("b"), f"{where} (b)"),
                _severity(rule, where),
                _text(rule, "problem", where),
                _text(rule, "mechanism", where),
                _text(rule, "consequence", where),
                _text(rule, "management", where),
                citations(rule, where),
                onc,
                lab_refs(rule, "labs", labs, where),
                lab_refs(rule, "monitor", lab_orders, where),
                alt,
                factors,
            )
        )
    # ingredient pair -> its rules in file order (a dict keyed by rule id: `rule in list` would
    # compare whole frozen dataclasses, which dominated load time with class-level rules)
    pairs: dict[tuple[str, str], dict[str, Interaction]] = {}
    for rule in interactions:
        for x in rule.a:
            for y in rule.b:
                if x != y:
                    pairs.setdefault((x, y), {})[rule.id] = rule
                    pairs.setdefault((y, x), {})[rule.id] = rule

    # renal
    renal: list[RenalRule] = []
    renal_doc = L.json("renal.json")
    for rule in renal_doc.get("rules") or []:
        rid = rule.get("id")
        where = f"renal.json: rule {rid}"
        if not isinstance(rid, str) or not rid:
            raise KnowledgeError(f"{where}: missing id")
        renal_bands: list[RenalBand] = []
        for n, b in enumerate(rule.get("bands") or []):
            bw = f"{where} band {n + 1}"
            below, above = b.get("below"), b.get("above")
            if (below is None) == (above is None):
                raise KnowledgeError(f"{bw}: give exactly one of below/above")
            if b.get("action") not in ("avoid", "reduce", "monitor"):
                raise KnowledgeError(f"{bw}: action must be avoid, reduce or monitor")
            renal_bands.append(
                RenalBand(
                    _severity(b, bw),
                    b["action"],
                    _text(b, "advice", bw),
                    float(below) if below is not None else None,
                    float(above) if above is not None else None,
                    dosage(b["dose"], bw) if b.get("dose") else None,
                )
            )
        if not renal_bands:
            raise KnowledgeError(f"{where}: no bands")
        lows = [b.below for b in renal_bands if b.below is not None]
        if lows != sorted(lows):
            raise KnowledgeError(f"{where}: 'below' bands must be in increasing order")
        renal.append(
            RenalRule(
                rid,
                expand(rule.get("drugs"), where),
                tuple(renal_bands),
                _text(rule, "mechanism", where),
                _text(rule, "consequence", where),
                citations(rule, where),
                rule.get("note"),
                _measure(rule, where),
            )
        )

    # Beers
    beers_doc = L.json("beers.json")
    beers: list[BeersRule] = []
    for rule in beers_doc.get("rules") or []:
        rid = rule.get("id")
        where = f"beers.json: rule {rid}"
        if not isinstance(rid, str) or not rid:
            raise KnowledgeError(f"{where}: missing id")
        beers.append(
            BeersRule(
                rid,
                expand(rule.get("drugs"), where),
                _severity(rule, where),
                _text(rule, "problem", where),
                _text(rule, "rationale", where),
                _text(rule, "recommendation", where),
                _text(rule, "quality", where),
                _text(rule, "strength", where),
                citations(rule, where),
                tuple(t.lower() for t in rule.get("exclude_text") or ()),
                _conditions(rule.get("unless_conditions"), where),
                _conditions(rule.get("only_with_conditions"), where),
                bool(rule.get("only_new", False)),
            )
        )

    # lab rules
    lab_rules: list[LabRule] = []
    for rule in labs_doc.get("rules") or []:
        rid = rule.get("id")
        where = f"labs.json: rule {rid}"
        if not isinstance(rid, str) or not rid:
            raise KnowledgeError(f"{where}: missing id")
        if rule.get("lab") not in labs:
            raise KnowledgeError(f"{where}: unknown lab {rule.get('lab')!r}")
        bands = tuple(_lab_band(b, f"{where} band", severity=True) for b in rule.get("bands") or [])
        if not bands:
            raise KnowledgeError(f"{where}: no bands")
        lab_rules.append(
            LabRule(
                rid,
                expand(rule.get("drugs"), where),
                rule["lab"],
                bands,
                _text(rule, "problem", where),
                _text(rule, "mechanism", where),
                _text(rule, "consequence", where),
                _text(rule, "management", where),
                citations(rule, where),
                lab_refs(rule, "monitor", lab_orders, where),
            )
        )

    # allergies
    allergy_doc = L.json("allergy_cross.json")
    groups: list[AllergyGroup] = []
    for g in allergy_doc.get("groups") or []:
        gid = g.get("id")
        where = f"allergy_cross.json: group {gid}"
        if not isinstance(gid, str) or not gid:
            raise KnowledgeError(f"{where}: missing id")
        cross = []
        for c in g.get("cross") or []:
            cw = f"{where} cross {c.get('class')}"
            if c.get("class") not in class_members:
                raise KnowledgeError(f"{cw}: unknown class")
            cross.append(
                (
                    c["class"],
                    class_members[c["class"]],
                    _severity(c, cw),
                    _text(c, "note", cw),
                    citations(c, cw),
                )
            )
        no_cross = frozenset(g.get("no_cross") or ())
        for c in no_cross:
            if c not in class_members:
                raise KnowledgeError(f"{where}: no_cross names unknown class {c!r}")
        if no_cross:
            citations(g, where, "no_cross_citation")
        groups.append(
            AllergyGroup(
                gid,
                expand(g.get("members"), where),
                _severity(g, where),
                citations(g, where),
                frozenset(g.get("snomed") or ()),
                tuple(cross),
                no_cross,
                g.get("note"),
            )
        )
    allergy_sev = _severity(allergy_doc, "allergy_cross.json", "ingredient_severity")

    # duplicates (in classes.json)
    duplicates: dict[str, DuplicateRule] = {}
    for cid, c in classes_doc.items():
        dup = c.get("duplicate")
        if dup:
            where = f"classes.json: {cid} duplicate"
            duplicates[cid] = DuplicateRule(
                cid,
                class_names[cid],
                _severity(dup, where),
                _text(dup, "consequence", where),
                _text(dup, "management", where),
                citations(dup, where),
            )

    # class names for allergy text ("penicillins", "sulfa")
    class_name_pairs = [(s, cid) for cid, c in classes_doc.items() for s in c.get("synonyms") or []]

    scoring = replace(
        _scoring(L.json("scoring.json")),
        allergy_high_risk_points=int(allergy_doc.get("high_risk_points", 30)),
    )
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
        pairs={k: tuple(v.values()) for k, v in pairs.items()},
        renal=renal,
        renal_by_ingredient=_index(renal),
        beers=beers,
        beers_by_ingredient=_index(beers),
        beers_min_age=int(beers_doc.get("min_age", 65)),
        labs=labs,
        lab_orders=lab_orders,
        lab_rules=lab_rules,
        lab_rules_by_ingredient=_index(lab_rules),
        allergy_groups=groups,
        allergy_ingredient_severity=allergy_sev,
        allergy_citation=citations(allergy_doc, "allergy_cross.json"),
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


def _measure(rule: Mapping[str, Any], where: str) -> str:
    m = rule.get("measure", "egfr")
    if m not in ("egfr", "crcl"):
        raise KnowledgeError(f"{where}: measure must be egfr or crcl")
    return str(m)


def _conditions(raw: Any, where: str) -> ConditionSet | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not (raw.get("icd10_prefixes") or raw.get("snomed")):
        raise KnowledgeError(f"{where}: conditions need icd10_prefixes or snomed codes")
    return ConditionSet(tuple(raw.get("icd10_prefixes") or ()), frozenset(raw.get("snomed") or ()))


def _lab_band(b: Any, where: str, points: bool = False, severity: bool = False) -> LabBand:
    if not isinstance(b, dict) or b.get("op") not in _OPS or not isinstance(b.get("value"), int | float):
        raise KnowledgeError(f"{where}: needs op (one of {sorted(_OPS)}) and a numeric value")
    return LabBand(
        b["op"],
        float(b["value"]),
        int(b.get("points", 0)) if points else 0,
        b.get("label", ""),
        _severity(b, where) if severity else None,
    )


def _scoring(doc: Mapping[str, Any]) -> Scoring:
    where = "scoring.json"
    pts = doc.get("severity_points") or {}
    for s in SEVERITIES:
        if not isinstance(pts.get(s), int):
            raise KnowledgeError(f"{where}: severity_points.{s} must be an integer")
    t = doc.get("thresholds") or {}
    try:
        info, warning, critical = int(t["info"]), int(t["warning"]), int(t["critical"])
    except (KeyError, TypeError, ValueError):
        raise KnowledgeError(f"{where}: thresholds need info, warning and critical") from None
    if not 0 < info < warning < critical <= 100:
        raise KnowledgeError(f"{where}: thresholds must satisfy 0 < info < warning < critical <= 100")
    f = doc.get("factors") or {}
    age = tuple(sorted(((int(x["min"]), int(x["points"])) for x in f.get("age") or []), reverse=True))
    renal = tuple(sorted((float(x["below"]), int(x["points"])) for x in f.get("renal") or []))
    count = f.get("count") or {}
    order = doc.get("order_score") or {}
    if doc.get("non_interruptive_max") != "info":
        raise KnowledgeError(f"{where}: non_interruptive_max must be 'info' (ONC non-interruptive list)")
    cap = int(doc.get("max_cards_per_order", 3))
    if cap < 1:
        raise KnowledgeError(f"{where}: max_cards_per_order must be at least 1")
    return Scoring(
        dict(pts),
        info,
        warning,
        critical,
        age,
        renal,
        int(count.get("per_extra_drug", 5)),
        int(count.get("max", 15)),
        int(order.get("per_extra_finding", 5)),
        int(order.get("max", 100)),
        cap,
        30,
    )
