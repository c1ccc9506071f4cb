"""The shape of the deterioration service's knowledge files (cds/knowledge), declared once.

Each file is checked against its Struct when first read (`load`), so a typo or a wrong type stops
the service at start with a message naming the file, entry and field; the modules then read the
same data. Rules that relate one value to another (bands in increasing order, the last band
open-ended, thresholds in order) are the small functions below.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta

from cds.runtime.shapes import NOT_BLANK, ShapeError, knowledge_json

Text = Annotated[str, Meta(pattern=NOT_BLANK)]
Points = Annotated[int, Meta(ge=0, le=3)]  # NEWS2 gives 0-3 points per parameter


class _Shape(msgspec.Struct, forbid_unknown_fields=True):
    pass


class Coding(_Shape):
    system: Annotated[str, Meta(pattern=r"^https?://")]
    code: Text
    display: Text


# --- news2.json (RCP 2017) ----------------------------------------------------------------------
class News2Band(_Shape):
    max: float | None  # the band's upper bound (inclusive); None: open-ended, the last band
    points: Points


class News2Parameter(_Shape):
    label: Text
    unit: Text
    bands: Annotated[list[News2Band], Meta(min_length=2)]


class News2Parameters(_Shape):
    respiratory_rate: News2Parameter
    spo2_scale1: News2Parameter
    spo2_scale2_air: News2Parameter
    spo2_scale2_oxygen: News2Parameter
    systolic_bp: News2Parameter
    pulse: News2Parameter
    temperature: News2Parameter


class News2Oxygen(_Shape):
    label: Text
    air: Points
    oxygen: Points


AVPU = Literal["A", "C", "V", "P", "U"]
AVPU_LEVELS = frozenset(get_args(AVPU))


class News2Consciousness(_Shape):
    label: Text
    points: dict[AVPU, Points]
    names: dict[AVPU, Text]


class News2Bands(_Shape):
    source: Text
    medium_min: int
    high_min: int
    single_parameter: Points


class News2Scale2Conditions(_Shape):
    source: Text
    codes: list[tuple[str, str]]  # (system, code)


class News2Chart(_Shape):
    name: Text
    source: Text
    url: Annotated[str, Meta(pattern=r"^https?://")]
    parameters: News2Parameters
    oxygen: News2Oxygen
    consciousness: News2Consciousness
    bands: News2Bands
    scale2_conditions: News2Scale2Conditions
    note: str = ""


def check_news2(chart: News2Chart) -> None:
    """Bands rise and end open; every AVPU level is scored; 0 < medium < high."""
    for name, p in msgspec.structs.asdict(chart.parameters).items():
        bounds = [b.max for b in p.bands]
        if bounds[-1] is not None or None in bounds[:-1]:
            raise ShapeError(
                "only the last band is open-ended (max null)", f"$.parameters.{name}.bands", name
            )
        if bounds[:-1] != sorted(bounds[:-1]) or len(set(bounds[:-1])) != len(bounds) - 1:
            raise ShapeError("band maxima must increase", f"$.parameters.{name}.bands", name)
    c = chart.consciousness
    if set(c.points) != AVPU_LEVELS or set(c.names) != AVPU_LEVELS:
        raise ShapeError("points and names for each of A, C, V, P and U", "$.consciousness")
    if not 0 < chart.bands.medium_min < chart.bands.high_min:
        raise ShapeError("0 < medium_min < high_min", "$.bands")


# --- deterioration_sepsis.json (NICE NG51, SSC 2021) ------------------------------------------
class Qsofa(_Shape):
    source: Text
    respiratory_rate_min: int
    systolic_max: int


class LactateStep(_Shape):
    label: Text
    repeat_label: Text
    code: Coding


class CultureStep(_Shape):
    label: Text
    code: Coding


class AntibioticStep(_Shape):
    label: Text
    text: Text


class SepsisBundle(_Shape):
    lactate: LactateStep
    blood_cultures: CultureStep
    antibiotics: AntibioticStep


class SepsisRules(_Shape):
    name: Text
    source: Text
    trigger: Text
    lactate_suspect_above: float
    lactate_high_above: float
    news2_high_min: int
    news2_moderate_min: int
    single_parameter: Points
    qsofa: Qsofa
    bundle: SepsisBundle


def check_sepsis(rules: SepsisRules) -> None:
    if not 0 < rules.lactate_suspect_above < rules.lactate_high_above:
        raise ShapeError("0 < lactate_suspect_above < lactate_high_above")
    if not 0 < rules.news2_moderate_min < rules.news2_high_min:
        raise ShapeError("0 < news2_moderate_min < news2_high_min")


# --- deterioration_response.json (RCP 2017 Chart 4) ---------------------------------------------
class ResponseEntry(_Shape):
    band: Text
    summary: Text
    priority: Literal["routine", "urgent", "asap", "stat"]  # FHIR ServiceRequest.priority
    label: Text
    text: Text
    code: Coding | None = None


class Responses(_Shape):
    ward: ResponseEntry
    urgent_ward: ResponseEntry = msgspec.field(name="urgent-ward")
    urgent: ResponseEntry
    emergency: ResponseEntry


class ResponseFile(_Shape):
    source: Text
    responses: Responses
    note: str = ""


# --- deterioration_features.json (the model's inputs) -------------------------------------------
LoincCodeText = Annotated[str, Meta(pattern=r"^[0-9]{1,7}-[0-9]$", title="LOINC code")]


class CodeNote(_Shape):
    """What a code beyond the feature's first ones is (its LOINC long common name) and where that was checked."""

    name: Text
    sources: Annotated[list[Text], Meta(min_length=1)]  # keys of the file's code_sources


class RelatedCode(_Shape):
    """A code of a related substance (urea for urea nitrogen): its value is put in the feature unit
    through its own molar mass, then multiplied by a fixed factor, with the arithmetic's source. Not
    one of the feature's own codes, so never a mapping target for a local code of the feature."""

    molar_mass: Annotated[float, Meta(gt=0)]
    factor: Annotated[float, Meta(gt=0)]
    note: Text
    source: Text


class FeatureEntry(_Shape):
    name: Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]*$", title="feature name")]
    label: Text
    unit: Text  # UCUM
    category: Literal["vital", "lab"]
    worst: Literal["max", "min", "furthest", "sum"]
    codes: Annotated[list[LoincCodeText], Meta(min_length=1)]
    plausible: tuple[float, float]  # (low, high): values outside are charting errors
    reference: float | None = None  # the APACHE III normal mid-point, for "furthest"
    molar_mass: float | None = None
    derived_from_panel: str | None = None
    fraction_heuristic: str | None = None
    from_components: str | None = None
    molar_note: str | None = None
    code_notes: dict[LoincCodeText, CodeNote] = {}
    related_codes: dict[LoincCodeText, RelatedCode] = {}


class ModelGroup(_Shape):
    label: Text
    features: dict[str, Literal[-1, 0, 1]]  # feature -> monotone constraint


class ModelInputs(_Shape):
    note: Text
    groups: dict[str, ModelGroup]


class ConsciousnessValue(_Shape):
    snomed: list[str] = []
    words: list[str] = []


class GcsComponents(_Shape):
    """LOINC codes of the GCS parts, summed into a total when no total is charted."""

    gcs_eye: Text
    gcs_verbal: Text
    gcs_motor: Text
    note: str = ""


class FeatureConsciousness(_Shape):
    codes: Annotated[list[str], Meta(min_length=1)]
    values: dict[AVPU, ConsciousnessValue]
    gcs_components: GcsComponents
    note: str = ""
    gcs_rule: str = ""


class ProcedureEntry(_Shape):
    label: Text
    snomed: Annotated[list[str], Meta(min_length=1)]


class DemographicEntry(_Shape):
    label: Text
    unit: Text


class FeaturesFile(_Shape):
    name: Text
    version: Text
    source: Text
    window_hours: Annotated[int, Meta(gt=0)]
    stale_hours: Annotated[int, Meta(gt=0)]
    valid_statuses: Annotated[list[str], Meta(min_length=1)]
    worst_rules: dict[str, Text]
    features: Annotated[list[FeatureEntry], Meta(min_length=1)]
    model: ModelInputs
    consciousness: FeatureConsciousness
    procedures: dict[str, ProcedureEntry]
    demographics: dict[str, DemographicEntry]
    stale_source: str = ""
    code_sources: dict[str, Text] = {}
    code_sources_note: str = ""


def check_features(f: FeaturesFile) -> None:
    """Names are unique, plausible ranges are ranges, "furthest" has its reference value, every
    worst rule used is explained, a code feeds one feature once, every code note cites a listed
    source, and each model input is a feature, a procedure or a demographic."""
    names = [x.name for x in f.features]
    if len(set(names)) != len(names):
        raise ShapeError("feature names must be unique", "$.features")
    for i, x in enumerate(f.features):
        where = f"$.features[{i}]"
        if not x.plausible[0] < x.plausible[1]:
            raise ShapeError("plausible must be (low, high) with low < high", where, x.name)
        if x.worst == "furthest" and x.reference is None:
            raise ShapeError("worst 'furthest' needs the reference value", where, x.name)
        if x.worst not in f.worst_rules:
            raise ShapeError(f"worst {x.worst!r} is not explained in worst_rules", where, x.name)
        if len(set(x.codes)) != len(x.codes):
            raise ShapeError("a code is listed twice", where, x.name)
        for code, note in x.code_notes.items():
            if code not in x.codes and code not in x.related_codes:
                raise ShapeError(f"code_notes names {code}, which is not in codes", where, x.name)
            unknown = [s for s in note.sources if s not in f.code_sources]
            if unknown:
                raise ShapeError(f"code {code} cites {unknown}, not in code_sources", where, x.name)
    codes = [c for x in f.features for c in [*x.codes, *x.related_codes]]
    if len(set(codes)) != len(codes):
        raise ShapeError("a code feeds one feature only", "$.features")


# --- deterioration_conditions.json ----------------------------------------------------------------
# ICD-9-CM diagnosis prefixes: three digits or V and two digits, then an optional dot and up to two
# digits; external-cause E-codes are never a category (see `matching` in the file).
Icd9Prefix = Annotated[str, Meta(pattern=r"^([0-9]{3}|V[0-9]{2})(\.[0-9]{1,2})?$", title="ICD-9-CM prefix")]


class ConditionCategory(_Shape):
    label: Text
    group: Literal["comorbidity", "acute"]
    icd10: list[str] = []
    icd9: list[Icd9Prefix] = []
    icd9_note: str = ""
    icd10_cm_only: list[str] = []  # in `icd10`, but not read in WHO ICD-10 and its modifications
    icd10_who: list[str] = []  # read only in WHO ICD-10 and its national modifications
    snomed: list[str] = []
    eicu_pasthistory: list[str] = []


class InfectionCodes(_Shape):
    label: Text
    recent_days: Annotated[int, Meta(gt=0)]
    icd10: list[str] = []
    icd9: list[Icd9Prefix] = []
    icd9_note: str = ""
    icd10_cm_only: list[str] = []
    icd10_who: list[str] = []
    snomed: list[str] = []
    note: str = ""


class VasoactiveDrugs(_Shape):
    label: Text
    source: Text
    rxnorm: dict[Annotated[str, Meta(pattern=r"^[1-9][0-9]{0,8}$", title="RxCUI")], Text]
    feature: str = ""


class ConditionsFile(_Shape):
    name: Text
    version: Text
    source: Text
    categories: dict[str, ConditionCategory]
    infection: InfectionCodes
    vasoactive: VasoactiveDrugs
    matching: str = ""


def check_conditions(c: ConditionsFile) -> None:
    """Each category has ICD-10 or SNOMED codes; `icd10_cm_only` is a part of `icd10`."""
    entries: list[tuple[str, ConditionCategory | InfectionCodes]] = [
        *c.categories.items(),
        ("infection", c.infection),
    ]
    for cid, cat in entries:
        where = f"$.categories[{cid!r}]" if cid in c.categories else "$.infection"
        if not (cat.icd10 or cat.snomed):
            raise ShapeError("a category needs ICD-10 or SNOMED codes", where, cid)
        if stray := sorted(set(cat.icd10_cm_only) - set(cat.icd10)):
            raise ShapeError(f"icd10_cm_only codes not in icd10: {stray}", where, cid)


load = knowledge_json  # the shared loader, under the name the service modules call
