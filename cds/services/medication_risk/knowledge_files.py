"""The shape of each medication knowledge-base file (cds/knowledge/medications), declared once.

Decoding a file with its Struct checks every type, required field, allowed value and code pattern,
and refuses unknown fields (a misspelt key would otherwise be a rule that silently never fires).
What one file says about another (a class, an ingredient, a lab, a citation) is checked by
`knowledge.py` after decoding.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from cds.runtime.shapes import NOT_BLANK

Text = Annotated[str, Meta(pattern=NOT_BLANK)]
RxCUI = Annotated[str, Meta(pattern=r"^[1-9][0-9]{0,8}$", title="RxCUI")]
Severity = Literal["minor", "moderate", "major", "contraindicated"]
Op = Literal[">=", ">", "<=", "<"]
Number = int | float


class _Shape(msgspec.Struct, forbid_unknown_fields=True):
    pass


# --- manifest.json ------------------------------------------------------------------------------
class SourceEntry(_Shape):
    label: Text
    citation: Text
    url: Annotated[str, Meta(pattern=r"^https?://", title="absolute URL")]


class ManifestFile(_Shape):
    version: Text
    date: Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$", title="date (YYYY-MM-DD)")]
    sources: dict[str, SourceEntry]
    name: str = ""
    intended_use: str = ""


# --- classes.json -------------------------------------------------------------------------------
class DuplicateEntry(_Shape):
    severity: Severity
    consequence: Text
    management: Text
    citation: list[str] = []


class ClassEntry(_Shape):
    name: Text
    citation: list[str] = []  # required and known: checked against manifest.json by the loader
    synonyms: list[str] = []
    note: str | None = None
    duplicate: DuplicateEntry | None = None


class ClassesFile(_Shape):
    classes: Annotated[dict[str, ClassEntry], Meta(min_length=1)]


# --- ingredients.csv, products.csv (one row each; CSV cells are text) -------------------------
class IngredientRow(_Shape):
    rxcui: RxCUI
    name: Text
    synonyms: str = ""  # "|"-separated
    classes: str = ""  # "|"-separated class ids
    check: str = ""  # "vsac" and/or "ref" ("|"-separated), or "review"


class ProductRow(_Shape):
    rxcui: RxCUI
    tty: Literal["SCD", "SBD", "GPCK", "BPCK"]
    name: str
    ingredients: str  # "|"-separated ingredient RxCUIs
    source: Annotated[str, Meta(pattern=NOT_BLANK, title="source")]


# --- shared pieces ------------------------------------------------------------------------------
class DosageEntry(_Shape):
    """A dosage a suggestion writes into MedicationRequest.dosageInstruction."""

    text: Text
    dose: Number | None = None
    dose_unit: str | None = None
    dose_code: str | None = None
    frequency: int | None = None
    period: Number | None = None
    period_unit: Literal["h", "d", "wk"] | None = None
    as_needed: bool = False


class LabBandEntry(_Shape):
    op: Op
    value: Number
    points: int = 0
    label: str = ""
    severity: Severity | None = None


class ConditionsEntry(_Shape):
    icd10_prefixes: list[str] = []
    snomed: list[str] = []


DrugList = Annotated[list[Annotated[str, Meta(min_length=1)]], Meta(min_length=1)]


# --- interactions.json --------------------------------------------------------------------------
class AlternativeEntry(_Shape):
    replace: Literal["a", "b"]
    rxcui: RxCUI
    display: Text
    dosage: DosageEntry
    label: Text


class InteractionEntry(_Shape):
    id: Text
    a: DrugList
    b: DrugList
    severity: Severity
    problem: Text
    mechanism: Text
    consequence: Text
    management: Text
    citation: list[str] = []
    onc: Literal["high-priority", "non-interruptive"] | None = None
    factors: list[Literal["age", "renal", "count"]] = []
    labs: list[str] = []
    monitor: list[str] = []
    alternative: AlternativeEntry | None = None


class InteractionsFile(_Shape):
    rules: list[InteractionEntry] = []


# --- renal.json ---------------------------------------------------------------------------------
class RenalBandEntry(_Shape):
    severity: Severity
    action: Literal["avoid", "reduce", "monitor"]
    advice: Text
    below: Number | None = None
    above: Number | None = None
    dose: DosageEntry | None = None


class RenalEntry(_Shape):
    id: Text
    drugs: DrugList
    bands: Annotated[list[RenalBandEntry], Meta(min_length=1)]
    mechanism: Text
    consequence: Text
    citation: list[str] = []
    note: str | None = None
    measure: Literal["egfr", "crcl"] = "egfr"


class RenalFile(_Shape):
    rules: list[RenalEntry] = []
    egfr_unit: str = ""
    explanation: str = ""


# --- beers.json ---------------------------------------------------------------------------------
class BeersEntry(_Shape):
    id: Text
    drugs: DrugList
    severity: Severity
    problem: Text
    rationale: Text
    recommendation: Text
    quality: Text
    strength: Text
    citation: list[str] = []
    exclude_text: list[str] = []
    unless_conditions: ConditionsEntry | None = None
    only_with_conditions: ConditionsEntry | None = None
    only_new: bool = False


class BeersFile(_Shape):
    rules: list[BeersEntry] = []
    min_age: int = 65


# --- labs.json ----------------------------------------------------------------------------------
class LabEntry(_Shape):
    name: Text
    loinc: Annotated[list[str], Meta(min_length=1)]  # check digits checked by the loader
    citation: list[str] = []
    unit: str | None = None
    display_unit: str | None = None
    decimals: int = 1
    max_age_days: int = 30
    bands: list[LabBandEntry] = []
    molar_mass: Number | None = None


class LabOrderEntry(_Shape):
    loinc: Text
    display: Text


class LabRuleEntry(_Shape):
    id: Text
    drugs: DrugList
    lab: str
    bands: Annotated[list[LabBandEntry], Meta(min_length=1)]
    problem: Text
    mechanism: Text
    consequence: Text
    management: Text
    citation: list[str] = []
    monitor: list[str] = []


class LabsFile(_Shape):
    labs: dict[str, LabEntry] = {}
    orders: dict[str, LabOrderEntry] = {}
    rules: list[LabRuleEntry] = []


# --- allergy_cross.json -------------------------------------------------------------------------
class CrossEntry(_Shape, rename={"class_": "class"}):
    class_: str
    severity: Severity
    note: Text
    citation: list[str] = []


class AllergyGroupEntry(_Shape):
    id: Text
    members: DrugList
    severity: Severity
    citation: list[str] = []
    snomed: list[str] = []
    cross: list[CrossEntry] = []
    no_cross: list[str] = []
    no_cross_citation: list[str] = []
    note: str | None = None


class AllergyFile(_Shape):
    groups: list[AllergyGroupEntry]
    ingredient_severity: Severity
    citation: list[str] = []
    high_risk_points: int = 30


# --- scoring.json (escalations, change_first and documentation: used by policy.py) -------------
class SeverityPoints(_Shape):
    minor: int
    moderate: int
    major: int
    contraindicated: int


class Thresholds(_Shape):
    info: int
    warning: int
    critical: int


class AgePoints(_Shape):
    min: int
    points: int


class RenalPoints(_Shape):
    below: Number
    points: int


class CountPoints(_Shape):
    per_extra_drug: int = 5
    max: int = 15


class Factors(_Shape):
    age: list[AgePoints] = []
    renal: list[RenalPoints] = []
    count: CountPoints = msgspec.field(default_factory=CountPoints)


class OrderScore(_Shape):
    per_extra_finding: int = 5
    max: int = 100


class EscalationEntry(_Shape):
    id: Text
    indicator: Literal["info", "warning", "critical"]
    reason: Text
    citation: list[str] = []
    drugs: list[str] = []  # class ids or ingredient RxCUIs
    lab: str | None = None
    op: Op | None = None
    value: Number | None = None
    kinds: list[str] = []
    severity: Severity | None = None


class Escalations(_Shape):
    rules: list[EscalationEntry] = []
    explanation: str = ""


class CautionEntry(_Shape, rename={"class_": "class"}):
    class_: str
    text: Text
    citation: list[str] = []
    icd10_prefixes: list[str] = []
    snomed: list[str] = []


class ChangeFirst(_Shape):
    order: list[str] = []
    citation: list[str] = []
    cautions: list[CautionEntry] = []
    explanation: str = ""


class DocumentationLevel(_Shape):
    label: Text
    prefixes: Annotated[list[Annotated[str, Meta(min_length=1)]], Meta(min_length=1)]


class Documentation(_Shape):
    levels: list[DocumentationLevel] = []
    default: str = "Published evidence"
    explanation: str = ""


class ScoringFile(_Shape):
    severity_points: SeverityPoints
    thresholds: Thresholds
    non_interruptive_max: Literal["info"]  # ONC non-interruptive list: never above info
    factors: Factors = msgspec.field(default_factory=Factors)
    order_score: OrderScore = msgspec.field(default_factory=OrderScore)
    max_cards_per_order: Annotated[int, Meta(ge=1)] = 3
    explanation: str = ""
    escalations: Escalations = msgspec.field(default_factory=Escalations)
    change_first: ChangeFirst = msgspec.field(default_factory=ChangeFirst)
    documentation: Documentation = msgspec.field(default_factory=Documentation)


# --- dosing.json --------------------------------------------------------------------------------
DoseOp = Literal["<", "<=", ">", ">=", "=="]


class IndicationEntry(_Shape):
    name: Text
    citation: list[str] = []
    icd10_prefixes: list[str] = []
    snomed: list[str] = []
    note: str | None = None


class DosingProduct(_Shape):
    """A product a one-click dose change may order: it needs an RxCUI, a display and a source."""

    rxcui: RxCUI
    display: Text
    mg: Number
    source: Text


class RegimenEntry(_Shape):
    """An ordered regimen and the indications it fits: dose_mg is [operator, mg]."""

    indication: str | list[str]
    dose_mg: tuple[DoseOp, Number] | None = None
    per_day: Number | None = None


class CriterionEntry(_Shape):
    fact: Literal["age", "weight", "creatinine"]
    op: DoseOp
    value: Number
    text: Text


class CriteriaEntry(_Shape):
    of: list[CriterionEntry] = []
    at_least: int = 0


class TargetEntry(_Shape):
    mg: Number | None = None
    mg_per_kg: Number | None = None
    per_day: Number | None = None
    text: str = ""


class DoseBandEntry(_Shape):
    severity: Severity
    advice: Text
    below: Number | None = None
    at_most: Number | None = None
    above: Number | None = None
    criteria: CriteriaEntry | None = None
    target: TargetEntry | None = None
    products: list[str] = []  # ids in the file's `products`
    max_daily_mg: Number | None = None
    avoid: bool = False
    review: bool = False
    new_only: bool = False


class DrugDosingEntry(_Shape):
    id: Text
    ingredient: RxCUI
    measure: Literal["crcl", "egfr"]
    mechanism: Text
    consequence: Text
    citation: list[str] = []
    regimens: list[RegimenEntry] = []
    indications: dict[str, list[DoseBandEntry]] = {}  # indication id (or "any") -> bands
    route: dict[str, Any] | None = None  # a FHIR CodeableConcept written into the dosage


class DosingFile(_Shape):
    tolerance: Number = 0.1
    indications: dict[str, IndicationEntry] = {}
    products: dict[str, DosingProduct] = {}
    drugs: list[DrugDosingEntry] = []
    explanation: str = ""
