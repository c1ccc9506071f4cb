"""QI-Core field access and CQL timing semantics, as the eCQMs use them.

Each helper names the CQL it mirrors (QICoreCommon 2.1.000, FHIRHelpers 4.4.000, Status 1.8.000).
Intervals follow CQL: a closed null bound is unbounded (`MIN`/`MAX`), an open null bound is
unknown (`None`), and a comparison against an unknown bound is null, which a `where` treats as
false. "day of" comparisons use each DateTime's own calendar date: CQL normalises time zones only
when the comparison precision is hours or finer (CQL 1.5 Equal/SameAs; so does cql-execution),
so 2022-12-31T23:30-05:00 is on 2022-12-31, not on the UTC day 2023-01-01.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cds.fhir.dates import age_in_years, parse_datetime
from cds.services.care_gaps.measures.period import add_months, add_years

MIN = datetime.min.replace(tzinfo=UTC)
MAX = datetime.max.replace(tzinfo=UTC)
_MS = timedelta(milliseconds=1)

OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
US_CORE_CONDITION_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
DO_NOT_PERFORM_URL = "http://hl7.org/fhir/us/qicore/StructureDefinition/qicore-doNotPerform"

# Status 1.8.000: which statuses count as "performed" / "ordered".
OBSERVATION_DONE = frozenset({"final", "amended", "corrected"})
ENCOUNTER_PERFORMED = frozenset({"finished", "arrived", "triaged", "in-progress", "onleave"})
ORDER_STATUSES = frozenset({"active", "completed"})


# --- intervals -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Interval:
    """A closed DateTime interval; `None` is an unknown bound, MIN/MAX unbounded ones."""

    low: datetime | None
    high: datetime | None


@dataclass(frozen=True, slots=True)
class Days:
    """A closed interval of calendar days: the right side of a CQL `... day of X` comparison."""

    first: date
    last: date


# The precision of a parsed FHIR date/dateTime, kept in its microseconds (values are truncated to
# milliseconds, so a non-zero remainder of microsecond % 1000 is free to carry it): 0 millisecond,
# else one of these levels. CQL compares values of different precisions up to the lesser one and
# answers null when they are equal that far (`2025-01-01T00:00:00Z` vs the period start
# `...T00:00:00.000Z`: null), which a `where` treats as false.
SECOND, MINUTE, HOUR, DAY, MONTH, YEAR = 1, 2, 3, 4, 5, 6


def _precision_of(text: str) -> int:
    v = text.strip()
    if len(v) <= 10:
        return {4: YEAR, 7: MONTH}.get(len(v), DAY)
    clock = v[11:]
    for zone in ("Z", "+", "-"):
        clock = clock.split(zone, 1)[0]
    if "." in clock:
        return 0
    return {5: MINUTE, 8: SECOND}.get(len(clock), SECOND)


def instant(value: Any) -> datetime | None:
    """A FHIR date/dateTime/instant, or None for anything else (including malformed values);
    milliseconds kept, its precision carried in the microseconds (see SECOND...YEAR)."""
    if not isinstance(value, str):
        return None
    t = parse_datetime(value)
    if t is None:
        return None
    level = _precision_of(value)
    if level or t.microsecond % 1000:
        t = t.replace(microsecond=t.microsecond - t.microsecond % 1000 + level)
    return t


def _level(t: datetime) -> int:
    return t.microsecond % 1000


def _truncated(t: datetime, level: int, tz: Any) -> Any:
    if level >= DAY:  # day precision and coarser: the value's own calendar fields, no zone shift
        d = t.date()
        return (d.year, d.month if level <= MONTH else 1, d.day if level <= DAY else 1)
    t = t.astimezone(tz)
    if level == SECOND:
        return t.replace(microsecond=0)
    if level == MINUTE:
        return t.replace(second=0, microsecond=0)
    return t.replace(minute=0, second=0, microsecond=0)


def le(a: datetime, b: datetime) -> bool | None:
    """CQL `a <= b` (same or before) with precision: null when equal up to the lesser precision
    of two values of different precisions."""
    if a == MIN or b == MAX:  # unbounded ends (closed null bounds) compare without precision
        return True
    if a == MAX or b == MIN:
        return False
    la, lb = _level(a), _level(b)
    if la == lb == 0:
        return a <= b
    level = max(la, lb)
    ta, tb = _truncated(a, level, a.tzinfo), _truncated(b, level, a.tzinfo)
    if ta != tb:
        return ta < tb
    return True if la == lb else None


def items(value: Any) -> list[Any]:
    """A repeating element as a list (absent or malformed: empty)."""
    return value if isinstance(value, list) else []


def status(resource: Mapping[str, Any]) -> str | None:
    """The resource's status when it is a string (a malformed one never matches)."""
    s = resource.get("status")
    return s if isinstance(s, str) else None


def day(t: datetime) -> date:
    """The calendar date of a time in its own offset, as CQL compares at day precision (MIN/MAX
    stay at the ends of the calendar)."""
    if t is MIN or t == MIN:
        return date.min
    if t is MAX or t == MAX:
        return date.max
    return t.date()


def point(t: datetime | None) -> Interval | None:
    """`Interval[t, t]` (FHIRHelpers ToInterval of a DateTime)."""
    return Interval(t, t) if t is not None else None


def period_interval(period: Any) -> Interval | None:
    """FHIRHelpers ToInterval(Period): no start gives `Interval(null, end]`, no end `[start, null]`."""
    if not isinstance(period, dict):
        return None
    start = instant(period.get("start"))
    end = instant(period.get("end")) or MAX
    return Interval(start, end)  # start None: open null low bound -> unknown


def _age_bound(birth: date | None, q: Any) -> date | None:
    """Birth date + an Age quantity (years or months)."""
    if birth is None or not isinstance(q, dict) or not isinstance(q.get("value"), int | float):
        return None
    unit = str(q.get("code") or q.get("unit") or "a").lower()
    n = int(q["value"])
    if unit in ("a", "year", "years", "yr"):
        return add_years(birth, n)
    if unit in ("mo", "month", "months"):
        return add_months(birth, n)
    if unit in ("d", "day", "days"):
        return birth + timedelta(days=n)
    return None


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def age_interval(birth: date | None, low: Any, high: Any) -> Interval | None:
    """QICoreCommon toInterval of an Age (or Range): from turning `low` until turning `high` + 1 year."""
    lo = _age_bound(birth, low)
    hi = _age_bound(birth, high)
    if lo is None or hi is None:
        return None
    return Interval(_midnight(lo), _midnight(add_years(hi, 1)) - _MS)


def choice_interval(resource: Mapping[str, Any], name: str, birth: date | None = None) -> Interval | None:
    """QICoreCommon `toInterval()` of a choice element (`effective`, `performed`, `onset`, ...)."""
    for suffix in ("DateTime", "Instant", "Date"):
        v = resource.get(name + suffix)
        if v is not None:
            return point(instant(v))
    p = resource.get(name + "Period")
    if p is not None:
        return period_interval(p)
    a = resource.get(name + "Age")
    if a is not None:
        return age_interval(birth, a, a)
    r = resource.get(name + "Range")
    if isinstance(r, dict):
        return age_interval(birth, r.get("low"), r.get("high"))
    return None  # Timing, string or absent


def latest(iv: Interval | None) -> datetime | None:
    """QICoreCommon `latest()`: the end when the interval has one, else its start."""
    if iv is None:
        return None
    if iv.high is not None and iv.high != MAX:
        return iv.high
    return iv.low


def earliest(iv: Interval | None) -> datetime | None:
    """QICoreCommon `earliest()`: the start when the interval has one, else its end."""
    if iv is None:
        return None
    if iv.low is not None and iv.low != MIN:
        return iv.low
    return iv.high


# --- timing operators (null -> False, as in a CQL where clause) ------------------------------
def in_days(t: datetime | None, days: Days) -> bool:
    """`t during day of X` for a point."""
    return t is not None and days.first <= day(t) <= days.last


def during_days(iv: Interval | None, days: Days) -> bool:
    """`I during day of X`: the whole interval falls on the days of X."""
    return (
        iv is not None
        and iv.low is not None
        and iv.high is not None
        and days.first <= day(iv.low)
        and day(iv.high) <= days.last
    )


def ends_during_days(iv: Interval | None, days: Days) -> bool:
    return iv is not None and in_days(iv.high, days)


def starts_during_days(iv: Interval | None, days: Days) -> bool:
    return iv is not None and in_days(iv.low, days)


def overlaps_days(iv: Interval | None, days: Days) -> bool:
    """`I overlaps day of X`."""
    return (
        iv is not None
        and iv.low is not None
        and iv.high is not None
        and day(iv.low) <= days.last
        and day(iv.high) >= days.first
    )


def starts_on_or_before_day(iv: Interval | None, d: date) -> bool:
    """`I starts on or before day of end of X`."""
    return iv is not None and iv.low is not None and day(iv.low) <= d


def ends_on_or_before_day(iv: Interval | None, d: date) -> bool:
    return iv is not None and iv.high is not None and day(iv.high) <= d


def starts_on_or_before(iv: Interval | None, t: datetime) -> bool:
    """`I starts on or before end of X` (millisecond precision)."""
    return iv is not None and iv.low is not None and le(iv.low, t) is True


def ends_on_or_before(iv: Interval | None, t: datetime) -> bool:
    return iv is not None and iv.high is not None and le(iv.high, t) is True


def overlaps(iv: Interval | None, other: Interval) -> bool:
    """`I overlaps X` (millisecond precision)."""
    return (
        iv is not None
        and iv.low is not None
        and iv.high is not None
        and other.low is not None
        and other.high is not None
        and le(iv.low, other.high) is True
        and le(other.low, iv.high) is True
    )


def during(iv: Interval | None, other: Interval) -> bool:
    """`I during X` (millisecond precision)."""
    return (
        iv is not None
        and iv.low is not None
        and iv.high is not None
        and other.low is not None
        and other.high is not None
        and le(other.low, iv.low) is True
        and le(iv.high, other.high) is True
    )


# --- codes and statuses ---------------------------------------------------------------------
def has_code(concepts: Any, system: str, code: str) -> bool:
    """CQL `C ~ Code`: any coding of a CodeableConcept (or list of them) has this system and code."""
    listed: Iterable[Any] = concepts if isinstance(concepts, list) else (concepts,)
    for concept in listed:
        if isinstance(concept, dict):
            for c in items(concept.get("coding")):
                if isinstance(c, dict) and c.get("code") == code and c.get("system") == system:
                    return True
    return False


def observation_category(obs: Mapping[str, Any], code: str) -> bool:
    return has_code(obs.get("category"), OBSERVATION_CATEGORY, code)


def lab_performed(obs: Mapping[str, Any]) -> bool:
    """Status isLaboratoryTestPerformed."""
    return status(obs) in OBSERVATION_DONE and observation_category(obs, "laboratory")


def assessment_performed(obs: Mapping[str, Any]) -> bool:
    """Status isAssessmentPerformed (survey category)."""
    return status(obs) in OBSERVATION_DONE and observation_category(obs, "survey")


def exam_performed(obs: Mapping[str, Any]) -> bool:
    """Status isPhysicalExamPerformed (exam category)."""
    return status(obs) in OBSERVATION_DONE and observation_category(obs, "exam")


def study_performed(obs: Mapping[str, Any]) -> bool:
    """Status isDiagnosticStudyPerformed / isObservationBP."""
    return status(obs) in OBSERVATION_DONE


def symptom(obs: Mapping[str, Any]) -> bool:
    """Status isSymptom."""
    return status(obs) in ("preliminary", "final", "amended", "corrected")


def encounter_performed(enc: Mapping[str, Any]) -> bool:
    return status(enc) in ENCOUNTER_PERFORMED


def procedure_performed(proc: Mapping[str, Any]) -> bool:
    return proc.get("status") == "completed"


def is_order(req: Mapping[str, Any]) -> bool:
    """Status isInterventionOrder / isDeviceOrder / isMedicationOrder: active or completed orders."""
    return status(req) in ORDER_STATUSES and req.get("intent") == "order"


def medication_active(req: Mapping[str, Any]) -> bool:
    """Status isMedicationActive."""
    return req.get("status") == "active" and req.get("intent") == "order"


def do_not_perform(req: Mapping[str, Any]) -> bool | None:
    """QICoreCommon doNotPerform(): the qicore-doNotPerform modifier extension, else None."""
    for ext in items(req.get("modifierExtension")):
        if isinstance(ext, dict) and ext.get("url") == DO_NOT_PERFORM_URL:
            return ext.get("valueBoolean")
    return None


def has_value(obs: Mapping[str, Any]) -> bool:
    """`O.value is not null`."""
    return any(k.startswith("value") and v is not None for k, v in obs.items())


def value_quantity(obs: Mapping[str, Any]) -> tuple[float, str] | None:
    """`value as Quantity`: (value, UCUM unit) or None."""
    q = obs.get("valueQuantity")
    if isinstance(q, dict) and isinstance(q.get("value"), int | float):
        return float(q["value"]), str(q.get("code") or q.get("unit") or "")
    return None


def clinical_status_is(resource: Mapping[str, Any], code: str, system: str = CONDITION_CLINICAL) -> bool:
    return has_code(resource.get("clinicalStatus"), system, code)


def condition_active(cond: Mapping[str, Any]) -> bool:
    """QICoreCommon isActive(): clinical status active, recurrence or relapse."""
    return any(clinical_status_is(cond, c) for c in ("active", "recurrence", "relapse"))


def problem_list_or_health_concern(cond: Mapping[str, Any]) -> bool:
    """isProblemListItem() or isHealthConcern()."""
    cats = cond.get("category")
    return has_code(cats, CONDITION_CATEGORY, "problem-list-item") or has_code(
        cats, US_CORE_CONDITION_CATEGORY, "health-concern"
    )


def abatement_interval(cond: Mapping[str, Any], birth: date | None) -> Interval | None:
    """QICoreCommon abatementInterval()."""
    v = cond.get("abatementDateTime")
    if v is not None:
        return point(instant(v))
    p = cond.get("abatementPeriod")
    if isinstance(p, dict):
        # Interval[low, high): an open null high is unknown; an open high its predecessor.
        lo = instant(p.get("start"))
        hi = instant(p.get("end"))
        return Interval(lo or MIN, hi - _MS if hi else None)
    a = cond.get("abatementAge")
    if a is not None:
        return age_interval(birth, a, a)
    r = cond.get("abatementRange")
    if isinstance(r, dict):
        return age_interval(birth, r.get("low"), r.get("high"))
    return None


def prevalence_interval(cond: Mapping[str, Any], birth: date | None) -> Interval | None:
    """QICoreCommon prevalenceInterval(): onset to abatement for an active (recurrence, relapse)
    Condition, closed and unbounded without an abatement.

    For any other clinical status (or none) the CQL is a query over a single value,
    `(end of condition.abatementInterval()) abatementDate return ...`; a query over a null source
    is null (CQL 1.5 §2.3, and both reference engines), so without an abatement end the
    prevalence interval is null and every timing comparison on it is false.
    """
    onset = choice_interval(cond, "onset", birth)
    low = onset.low if onset is not None and onset.low is not None else MIN
    abatement = abatement_interval(cond, birth)
    end = abatement.high if abatement is not None else None
    if condition_active(cond):
        return Interval(low, end if end is not None else MAX)
    return Interval(low, end) if end is not None else None


def age_at(birth: date | None, on: date) -> int | None:
    """CQL AgeInYearsAt."""
    return age_in_years(birth, on) if birth is not None else None


def reference_id(ref: Any) -> str | None:
    """QICoreCommon getId(): the last path segment of a reference."""
    if isinstance(ref, dict):
        ref = ref.get("reference")
    if isinstance(ref, str) and ref:
        if ref.startswith("urn:uuid:"):  # Bundle-internal reference (Synthea): the uuid is the id
            return ref[len("urn:uuid:") :]
        return ref.rstrip("/").rsplit("/", 1)[-1]
    return None
