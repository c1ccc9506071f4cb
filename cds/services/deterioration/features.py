"""Deterioration features: a patient record at a scoring time -> the worst physiology of the last 24 h.

This is THE feature path of the deterioration model: training runs eICU stays (converted to FHIR
Observations) through `extract`, and the service runs hook prefetch through it, so both see the
same codes, units, windows and "worst value" rules. The code lists, units and rules are data in
`cds/knowledge/deterioration_features.json` (with sources); this module applies them.

Rules, in one place:
- only Observations with status final/amended/corrected/preliminary, a time in [at - 24 h, at] and a
  value convertible to the feature's UCUM unit (no unit: not guessed, dropped) and plausible;
- a value may be the Observation's own or a component's (BP panels 85354-9 and 55284-4, GCS panel);
  cuff and arterial-line pressures feed the same feature, so its worst rule runs across both, and a
  reading's mean is derived from its own systolic and diastolic parts when none is charted;
- exact repeats (same feature, time and value) count once;
- a code of a related substance converts through its own molar mass, then a fixed factor
  (`related_codes`: urea x 28.014/60.056 = urea nitrogen), both data with their source;
- "worst" per feature: max, min, furthest from the APACHE reference value, or the 24 h sum (urine);
- procedures (ventilation, intubation, dialysis) give 1 when present, otherwise missing;
- U-shaped values (worst rule "furthest") also give `<name>_deviation`, the distance from the
  reference value, so the model can be monotone in every physiological input;
- Conditions give comorbidity and acute-problem categories (1 when coded, else missing), and
  MedicationAdministrations the number of distinct vasoactive agents given in the window
  (`cds/knowledge/deterioration_conditions.json`, with sources);
- `systolic_trend`: mean cuff systolic pressure (8480-6) of the last 6 h minus that of the first 6 h of
  the window (an arterial line reads differently from a cuff: mixing them would fake a trend);
- anything not found is NaN, never 0; only the model's row (`vector`) reads a presence feature that
  is not charted (condition, procedure, vasoactive agents) as 0, so monotone constraints cover it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np

from cds.fhir.dates import effective_time, observed_at, parse_datetime
from cds.fhir.record import PatientRecord
from cds.fhir.terminology import (
    ICD9CM,
    ICD10,
    ICD10CM,
    ICD10GM,
    LOINC,
    RXNORM,
    SNOMED,
    canonical_system,
    coding_items,
    codings,
)
from cds.fhir.terminology.icd import GM_NOT_PRESENT, WHO_ICD10, gm_certainty, icd9_key, who_icd10_key
from cds.fhir.units import quantity_in
from cds.knowledge import KNOWLEDGE_DIR
from cds.services.deterioration import knowledge_files
from cds.services.deterioration.news2 import News2Inputs

KNOWLEDGE = KNOWLEDGE_DIR / "deterioration_features.json"
CONDITIONS = KNOWLEDGE_DIR / "deterioration_conditions.json"
TREND_HOURS = 6.0

GCS_TOTAL = "9269-2"
CUFF_SYSTOLIC = "8480-6"  # the systolic trend reads this code only, as in training (eICU non-invasive)
BP_FEATURES = ("systolic_bp", "diastolic_bp", "mean_bp")
ROOM_AIR_FIO2 = 21.0


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    label: str
    unit: str
    category: str
    worst: str
    codes: tuple[str, ...]
    low: float
    high: float
    reference: float | None = None
    molar_mass: float | None = None
    factor: float = 1.0  # a related substance's code: value in the unit (own molar mass) x factor


@dataclass(frozen=True)
class Finding:
    """One charted value chosen for a feature: what, how much, in which unit, when."""

    name: str
    value: float
    unit: str
    time: datetime | None


@lru_cache(maxsize=1)
def knowledge() -> dict[str, Any]:
    """The feature definitions (codes, units, worst rules, sources) as data."""
    return knowledge_files.load(KNOWLEDGE, knowledge_files.FeaturesFile, knowledge_files.check_features)


@lru_cache(maxsize=1)
def conditions_knowledge() -> dict[str, Any]:
    """Comorbidity, acute-problem, infection and vasoactive-drug code lists (with sources) as data."""
    return knowledge_files.load(CONDITIONS, knowledge_files.ConditionsFile, knowledge_files.check_conditions)


@lru_cache(maxsize=1)
def specs() -> tuple[FeatureSpec, ...]:
    out = []
    for f in knowledge()["features"]:
        low, high = f["plausible"]
        out.append(
            FeatureSpec(
                name=f["name"],
                label=f["label"],
                unit=f["unit"],
                category=f["category"],
                worst=f["worst"],
                codes=tuple(f["codes"]),
                low=float(low),
                high=float(high),
                reference=f.get("reference"),
                molar_mass=f.get("molar_mass"),
            )
        )
    return tuple(out)


@lru_cache(maxsize=1)
def gcs_parts() -> tuple[str, str, str]:
    """LOINC codes of the GCS eye, verbal and motor parts (summed when no total is charted): data
    beside the features, read with them at load (never at import)."""
    parts = knowledge()["consciousness"]["gcs_components"]
    return parts["gcs_eye"], parts["gcs_verbal"], parts["gcs_motor"]


@lru_cache(maxsize=1)
def _code_index() -> dict[tuple[str, str], FeatureSpec]:
    index = {(LOINC, code): spec for spec in specs() for code in spec.codes}
    by_name = {spec.name: spec for spec in specs()}
    for f in knowledge()["features"]:  # e.g. urea read as urea nitrogen: its own molar mass, then a factor
        for code, c in f.get("related_codes", {}).items():
            related = replace(by_name[f["name"]], molar_mass=c["molar_mass"], factor=c["factor"])
            index[(LOINC, code)] = related
    eye, verbal, _ = gcs_parts()
    for code, name in ((eye, "_gcs_eye"), (verbal, "_gcs_verbal")):
        index[(LOINC, code)] = FeatureSpec(name, name, "{score}", "vital", "min", (code,), 1, 6)
    return index


PROCEDURE_FEATURES = ("ventilated", "intubated", "dialysis")
DEMOGRAPHIC_FEATURES = ("age", "male")
DEVIATION = "_deviation"
VASOACTIVE = "vasoactive_agents"
TREND = "systolic_trend"


def deviation_features() -> tuple[str, ...]:
    return tuple(s.name + DEVIATION for s in specs() if s.worst == "furthest")


def condition_features() -> tuple[str, ...]:
    return tuple(conditions_knowledge()["categories"])


@lru_cache(maxsize=1)
def presence_features() -> frozenset[str]:
    """Features charted only as present (a coded Condition or Procedure: 1; vasoactive agents: a
    count). The model reads "not charted" as 0 for them, so its monotone constraints cover coded
    vs not coded: xgboost constrains only between values, never a missing value's branch, and once
    let a coded chronic kidney disease lower the risk."""
    return frozenset(PROCEDURE_FEATURES + condition_features() + (VASOACTIVE,))


def feature_names() -> tuple[str, ...]:
    """Every feature the extractor produces, in a fixed order."""
    return (
        tuple(s.name for s in specs())
        + deviation_features()
        + PROCEDURE_FEATURES
        + DEMOGRAPHIC_FEATURES
        + condition_features()
        + (VASOACTIVE, TREND)
    )


def base_feature(name: str) -> str:
    """The charted feature behind a derived one (heart_rate_deviation -> heart_rate)."""
    return name.removesuffix(DEVIATION)


def feature_units() -> dict[str, str]:
    units = {s.name: s.unit for s in specs()}
    units.update({s.name + DEVIATION: s.unit for s in specs() if s.worst == "furthest"})
    units.update({p: "1" for p in PROCEDURE_FEATURES + condition_features()})
    units.update({"age": "a", "male": "1", VASOACTIVE: "1", TREND: "mm[Hg]"})
    return units


def feature_labels() -> dict[str, str]:
    labels = {s.name: s.label for s in specs()}
    labels.update(
        {
            s.name + DEVIATION: f"{s.label} (distance from {s.reference:g})"
            for s in specs()
            if s.worst == "furthest"
        }
    )
    kb = knowledge()
    labels.update({k: v["label"] for k, v in kb["procedures"].items()})
    labels.update({k: v["label"] for k, v in kb["demographics"].items()})
    labels.update({k: v["label"] for k, v in conditions_knowledge()["categories"].items()})
    labels[VASOACTIVE] = "vasopressors or inotropes (number of agents)"
    labels[TREND] = "change in systolic blood pressure over the day"
    return labels


def _icd_prefixes(codes: Sequence[str]) -> tuple[str, ...]:
    return tuple(c.replace(".", "").upper() for c in codes)


@lru_cache(maxsize=1)
def _condition_matchers() -> tuple[
    tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], frozenset[str]], ...
]:
    """Per category: ICD-10-CM prefixes, WHO ICD-10 prefixes (CM-only codes out, WHO-only codes in),
    ICD-9-CM prefixes and SNOMED CT codes."""
    kb = conditions_knowledge()
    entries = [*kb["categories"].items(), ("_infection", kb["infection"])]
    out = []
    for name, v in entries:
        cm = _icd_prefixes(v["icd10"])
        cm_only = set(_icd_prefixes(v.get("icd10_cm_only", ())))
        who = tuple(p for p in cm if p not in cm_only) + _icd_prefixes(v.get("icd10_who", ()))
        out.append((name, cm, who, _icd_prefixes(v.get("icd9", ())), frozenset(v["snomed"])))
    return tuple(out)


def _condition_codes(condition: Mapping[str, Any]) -> list[tuple[str, str]] | None:
    """(kind, normalised code) for each coding of a Condition; None when an ICD-10-GM certainty says
    the diagnosis is excluded (A) or no longer present (Z), on a coding or on the Condition."""
    if gm_certainty(condition) in GM_NOT_PRESENT:
        return None
    out: list[tuple[str, str]] = []
    for c in coding_items(condition.get("code")):
        if not isinstance(c, dict) or not isinstance(code := c.get("code"), str) or not code:
            continue
        system = canonical_system(c.get("system"))
        if system == ICD10CM:
            out.append(("cm", code.replace(".", "").upper()))
        elif system == SNOMED:
            out.append(("snomed", code))
        elif system == ICD9CM:
            if (key := icd9_key(code)) is not None:
                out.append(("icd9", key))
        elif system in WHO_ICD10:
            gm = system == ICD10GM
            parsed = who_icd10_key(code, gm)
            if system == ICD10 and (parsed is None or len(parsed[0]) > 4):
                # no WHO code (WHO's have at most four characters): an ICD-10-CM code sent with the
                # WHO system URI, as US systems often do (T40.1X1A, R65.21), read as ICD-10-CM
                out.append(("cm", code.replace(".", "").upper()))
                continue
            certainty = (gm_certainty(c) or (parsed[1] if parsed else None)) if gm else None
            if certainty in GM_NOT_PRESENT:
                return None
            if parsed is not None:
                out.append(("who", parsed[0]))
    return out


def condition_categories(condition: Mapping[str, Any]) -> set[str]:
    """The categories (and `_infection`) one Condition's codings fall in: ICD-10-CM, WHO ICD-10 and
    its national modifications, ICD-9-CM and SNOMED CT, by the rule in the knowledge file's
    `matching`."""
    codes = _condition_codes(condition)
    found: set[str] = set()
    if not codes:
        return found
    for name, cm, who, icd9, snomed in _condition_matchers():
        for kind, code in codes:
            if (
                (kind == "cm" and code.startswith(cm))
                or (kind == "who" and code.startswith(who))
                or (kind == "icd9" and code.startswith(icd9))
                or (kind == "snomed" and code in snomed)
            ):
                found.add(name)
                break
    return found


@dataclass(frozen=True)
class DeteriorationFeatures:
    """The features of one patient at one time, with the charted values behind them."""

    at: datetime
    values: Mapping[str, float]
    worst: Mapping[str, Finding]
    latest: Mapping[str, Finding]
    consciousness: tuple[str, datetime | None, str] | None
    on_oxygen: bool | None
    coded: Mapping[str, str] = field(default_factory=dict)  # category -> text of the Condition
    infection: str | None = None  # text of a suspected or coded infection
    vasoactive: tuple[str, ...] = ()  # vasoactive agents given in the window
    vasoactive_time: datetime | None = None  # the newest administration among them

    def vector(self, names: Sequence[str]) -> np.ndarray:
        """A float32 row in the model's feature order; NaN where missing, 0 where a presence feature
        (`presence_features`) is not charted."""
        present = presence_features()
        row = [self.values.get(n, math.nan) for n in names]
        return np.array(
            [[0.0 if math.isnan(v) and n in present else v for n, v in zip(names, row, strict=True)]],
            dtype=np.float32,
        )

    def news2_inputs(self) -> News2Inputs:
        """The newest value of each NEWS2 parameter in the window (NEWS2 scores one set of observations)."""
        level = self.consciousness[0] if self.consciousness else None
        return self._news2_from(lambda name: f.value if (f := self.latest.get(name)) else None, level)

    def worst_news2_inputs(self) -> News2Inputs:
        """NEWS2 inputs from the worst 24 h values: the early-warning baseline the model is compared to."""

        def v(name: str) -> float | None:
            x = self.values.get(name, math.nan)
            return None if math.isnan(x) else x

        gcs = v("gcs_total")
        level = self.consciousness[0] if self.consciousness else None
        if gcs is not None:
            level = "A" if gcs >= 15 else "C"
        return self._news2_from(v, level)

    def _news2_from(self, v: Callable[[str], float | None], level: str | None) -> News2Inputs:
        return News2Inputs(
            respiratory_rate=v("respiratory_rate"),
            spo2=v("spo2"),
            on_oxygen=self.on_oxygen,
            systolic_bp=v("systolic_bp"),
            pulse=v("heart_rate"),
            consciousness=level,
            temperature=v("temperature"),
        )

    def stale(self, names: Sequence[str], hours: float | None = None) -> list[str]:
        """Features among `names` whose newest value is older than `hours` (default: stale_hours)."""
        limit = self.at - timedelta(hours=hours if hours is not None else knowledge()["stale_hours"])
        return [n for n in names if n in self.latest and (t := self.latest[n].time) is not None and t < limit]


def _number(container: Mapping[str, Any], spec: FeatureSpec) -> float | None:
    """The value of an Observation or component in the feature's unit, or None."""
    q = container.get("valueQuantity")
    if spec.unit in ("{score}", "[pH]"):
        # Scores and pH have no unit to convert; accept a bare number.
        raw = q.get("value") if isinstance(q, dict) else container.get("valueInteger")
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return None
        value = float(raw)
    else:
        converted = quantity_in(q, spec.unit, spec.molar_mass)
        if converted is None:
            return None
        value = converted * spec.factor
        if spec.name == "fio2" and 0 < value <= 1.0:
            value *= 100.0  # a fraction sent as %, or unit 1
    if not math.isfinite(value) or not (spec.low <= value <= spec.high):
        return None
    return value


def _consciousness_level(concept: Any) -> str | None:
    kb = knowledge()["consciousness"]["values"]
    pairs = set(codings(concept))
    for level, v in kb.items():
        if any((SNOMED, c) in pairs for c in v["snomed"]):
            return level
    text: Any = ""
    if isinstance(concept, dict):
        coding = concept.get("coding")
        text = concept.get("text") or next(
            (c.get("display") for c in coding if isinstance(c, dict))
            if isinstance(coding, list)
            else iter(()),
            "",
        )
    t = text.strip().lower() if isinstance(text, str) else ""
    if len(t) == 1 and t.upper() in kb:
        return t.upper()
    for level, v in kb.items():
        if any(t.startswith(w) for w in v["words"]):
            return level
    return None


def _pick(spec: FeatureSpec, readings: list[tuple[float, datetime]]) -> tuple[float, datetime | None]:
    if spec.worst == "sum":
        return sum(v for v, _ in readings), max(t for _, t in readings)
    if spec.worst == "max":
        key = lambda r: (r[0], r[1])  # noqa: E731 - ties go to the newest
    elif spec.worst == "min":
        key = lambda r: (-r[0], r[1])  # noqa: E731
    else:
        ref = float(spec.reference)  # type: ignore[arg-type]
        key = lambda r: (abs(r[0] - ref), r[1])  # noqa: E731
    value, time = max(readings, key=key)
    return value, time


@lru_cache(maxsize=1)
def _procedure_codes() -> dict[str, frozenset[tuple[str, str]]]:
    """Procedure feature -> its SNOMED CT (system, code) pairs, built once per process."""
    return {
        name: frozenset((SNOMED, c) for c in spec["snomed"])
        for name, spec in knowledge()["procedures"].items()
    }


def _procedure_in_window(proc: Mapping[str, Any], start: datetime, at: datetime) -> bool:
    period = proc.get("performedPeriod")
    if isinstance(period, dict):
        begin, end = (
            parse_datetime(v) if isinstance(v := period.get(k), str) else None for k in ("start", "end")
        )
        if begin is not None and begin > at:
            return False
        return end is None or end >= start
    t = effective_time(dict(proc))
    if t is None:
        return proc.get("status") == "in-progress"
    return start <= t <= at or (proc.get("status") == "in-progress" and t <= at)


def extract(record: PatientRecord, at: datetime | None = None) -> DeteriorationFeatures:
    """The deterioration features of a patient at `at` (default: the record's `now`)."""
    kb = knowledge()
    at = at or record.now
    start = at - timedelta(hours=kb["window_hours"])
    valid_statuses = frozenset(kb["valid_statuses"])
    index = _code_index()
    cons_codes = frozenset((LOINC, c) for c in kb["consciousness"]["codes"])
    eye, verbal, motor = gcs_parts()

    readings: dict[str, dict[tuple[datetime, float], None]] = {}
    cuff_systolic: dict[tuple[datetime, float], None] = {}
    gcs_by_time: dict[datetime, dict[str, float]] = {}
    consciousness: tuple[str, datetime | None, str] | None = None

    def add(name: str, value: float, t: datetime) -> None:
        readings.setdefault(name, {})[(t, value)] = None  # dict as an ordered set: repeats count once

    for obs in record.valid("Observation"):
        status = obs.get("status")
        if not isinstance(status, str) or status not in valid_statuses:
            continue
        t = observed_at(obs)
        if t is None or t < start or t > at:
            continue
        parts: list[Mapping[str, Any]] = [obs]
        components = obs.get("component")
        if isinstance(components, list):
            parts += [c for c in components if isinstance(c, dict)]
        bp: dict[str, float] = {}
        for part in parts:
            if part.get("dataAbsentReason") is not None:
                continue
            for pair in codings(part.get("code")):
                if pair in cons_codes:
                    level = _consciousness_level(part.get("valueCodeableConcept"))
                    if level and (consciousness is None or (consciousness[1] or start) < t):
                        consciousness = (level, t, "ACVPU")
                    break
                spec = index.get(pair)
                if spec is None:
                    continue
                value = _number(part, spec)
                if value is None:
                    break
                code = pair[1]
                if code in (eye, verbal, motor, GCS_TOTAL):
                    gcs_by_time.setdefault(t, {})[code] = value
                if spec.name in BP_FEATURES:  # cuff or arterial line: one reading's parts
                    bp[spec.name] = value
                if code == CUFF_SYSTOLIC:
                    cuff_systolic[(t, value)] = None
                if not spec.name.startswith("_"):
                    add(spec.name, value, t)
                break
        if "systolic_bp" in bp and "diastolic_bp" in bp and "mean_bp" not in bp:
            add("mean_bp", round((bp["systolic_bp"] + 2 * bp["diastolic_bp"]) / 3, 1), t)

    for t, gcs in gcs_by_time.items():
        if GCS_TOTAL not in gcs and all(c in gcs for c in (eye, verbal, motor)):
            add("gcs_total", gcs[eye] + gcs[verbal] + gcs[motor], t)

    values: dict[str, float] = {}
    worst: dict[str, Finding] = {}
    latest: dict[str, Finding] = {}
    for spec in specs():
        found = list(readings.get(spec.name, {}))
        if not found:
            values[spec.name] = math.nan
            continue
        pairs = [(v, t) for t, v in found]
        value, t = _pick(spec, pairs)
        values[spec.name] = value
        worst[spec.name] = Finding(spec.name, value, spec.unit, t)
        newest_t, newest_v = max(found, key=lambda r: r[0])
        latest[spec.name] = Finding(spec.name, newest_v, spec.unit, newest_t)

    if consciousness is None and "gcs_total" in latest:
        g = latest["gcs_total"]
        consciousness = ("A" if g.value >= 15 else "C", g.time, f"GCS {g.value:g}")

    procedures = [(frozenset(codings(proc.get("code"))), proc) for proc in record.procedures()]
    for name, codes in _procedure_codes().items():
        present = any(
            not codes.isdisjoint(pairs) and _procedure_in_window(proc, start, at)
            for pairs, proc in procedures
        )
        values[name] = 1.0 if present else math.nan

    coded, infection = _conditions(record, at)
    for name in condition_features():
        values[name] = 1.0 if name in coded else math.nan
    agents, agents_time = _vasoactive(record, start, at)
    values[VASOACTIVE] = float(len(agents)) if agents else math.nan
    values[TREND] = _systolic_trend(cuff_systolic, start, at)
    for s in specs():
        if s.worst == "furthest":
            v = values[s.name]
            values[s.name + DEVIATION] = abs(v - float(s.reference)) if not math.isnan(v) else math.nan  # type: ignore[arg-type]

    birth = (record.patient or {}).get("birthDate")
    age = record.age(at.date()) if isinstance(birth, str) else None  # the record's parser caches: str only
    values["age"] = float(age) if age is not None else math.nan
    values["male"] = {"male": 1.0, "female": 0.0}.get(record.sex or "", math.nan)

    on_oxygen: bool | None = None
    oxygen = [f for f in (latest.get("fio2"), latest.get("oxygen_flow")) if f is not None]
    if values["ventilated"] == 1.0:
        on_oxygen = True
    elif oxygen:
        newest = max(oxygen, key=lambda f: f.time or start)  # the newest of FiO2 and flow decides
        on_oxygen = newest.value > (ROOM_AIR_FIO2 if newest.name == "fio2" else 0.0)

    return DeteriorationFeatures(
        at=at,
        values=values,
        worst=worst,
        latest=latest,
        consciousness=consciousness,
        on_oxygen=on_oxygen,
        coded=coded,
        infection=infection,
        vasoactive=agents,
        vasoactive_time=agents_time,
    )


def _text(concept: Any) -> str:
    if not isinstance(concept, dict):
        return "coded condition"
    if isinstance(concept.get("text"), str):
        return concept["text"]
    for c in concept.get("coding") or []:
        if isinstance(c, dict) and isinstance(c.get("display"), str):
            return c["display"]
    return "coded condition"


def _recent(cond: Mapping[str, Any], at: datetime) -> bool:
    """Undated, or onset/recorded within `recent_days` of `at` (a current infection, not an old one)."""
    days = conditions_knowledge()["infection"]["recent_days"]
    for key in ("onsetDateTime", "recordedDate"):
        t = parse_datetime(v) if isinstance(v := cond.get(key), str) else None
        if t is not None:
            return at - timedelta(days=days) <= t <= at + timedelta(days=1)
    return True


def _conditions(record: PatientRecord, at: datetime) -> tuple[dict[str, str], str | None]:
    """Categories coded among the patient's active Conditions, and a suspected or coded infection."""
    coded: dict[str, str] = {}
    infection: str | None = None
    for cond in record.conditions():
        cats = condition_categories(cond)
        for c in cats - {"_infection"}:
            coded.setdefault(c, _text(cond.get("code")))
        if "_infection" in cats and infection is None and _recent(cond, at):
            infection = _text(cond.get("code"))
    return coded, infection


def _vasoactive(
    record: PatientRecord, start: datetime, at: datetime
) -> tuple[tuple[str, ...], datetime | None]:
    """Distinct vasoactive agents (RxNorm ingredients) administered in [start, at], and the newest time."""
    names: dict[str, str] = conditions_knowledge()["vasoactive"]["rxnorm"]
    found: set[str] = set()
    newest: datetime | None = None
    for ma in record.valid("MedicationAdministration"):
        if ma.get("status") not in ("in-progress", "completed"):
            continue
        agent = next(
            (
                names[c]
                for sys, c in codings(ma.get("medicationCodeableConcept"))
                if sys == RXNORM and c in names
            ),
            None,
        )
        if agent is None:
            continue
        period = ma.get("effectivePeriod")
        if isinstance(period, dict):
            begin, end = (
                parse_datetime(v) if isinstance(v := period.get(k), str) else None for k in ("start", "end")
            )
            inside = (begin is None or begin <= at) and (end is None or end >= start)
            t = min(end, at) if end is not None else (at if begin is not None else None)
        else:
            t = parse_datetime(v) if isinstance(v := ma.get("effectiveDateTime"), str) else None
            inside = t is not None and start <= t <= at
        if inside:
            found.add(agent)
            if t is not None and (newest is None or t > newest):
                newest = t
    return tuple(sorted(found)), newest


def _systolic_trend(readings: Mapping[tuple[datetime, float], None], start: datetime, at: datetime) -> float:
    """Mean systolic of the last TREND_HOURS minus that of the first TREND_HOURS of the window."""
    early = [v for t, v in readings if t <= start + timedelta(hours=TREND_HOURS)]
    late = [v for t, v in readings if t >= at - timedelta(hours=TREND_HOURS)]
    if not early or not late:
        return math.nan
    return round(sum(late) / len(late) - sum(early) / len(early), 1)
