"""CMS122 Diabetes: Glycemic Status Assessment Greater Than 9%
(DiabetesGlycemicStatusAssessmentGreaterThan9PercentFHIR 0.1.002). Inverse measure.

Adults 18-75 at the end of the period with diabetes and a qualifying visit. Numerator (the gap):
the lowest HbA1c/GMI on the most recent day in the period is > 9% or has no result, or there is
none. Excluded: hospice, nursing home, advanced illness and frailty, palliative care.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cds.fhir.terminology import concept_text
from cds.fhir.units import convert
from cds.services.care_gaps.measures import common
from cds.services.care_gaps.measures import qicore as q
from cds.services.care_gaps.measures.context import MeasureContext
from cds.services.care_gaps.measures.result import Criteria, Evidence, last_evidence
from cds.services.care_gaps.measures.spec import load_spec

SPEC = load_spec("CMS122")


def evaluate(ctx: MeasureContext) -> tuple[list[Criteria], Evidence]:
    ip = common.diabetes_initial_population(ctx, SPEC)
    if not ip:
        return [Criteria(False, False, False, False)], Evidence(label="")
    exclusion = common.hospice_frailty_nursing_home_or_palliative(ctx)
    lowest = _lowest_on_most_recent_day(ctx)
    no_result = lowest is not None and not q.has_value(lowest[1])
    elevated = lowest is not None and _above_threshold(lowest[1])
    numerator = no_result or elevated or lowest is None
    return [Criteria(True, True, exclusion, numerator)], _evidence(ctx, lowest, elevated)


def _assessments(ctx: MeasureContext) -> list[tuple[datetime, dict[str, Any]]]:
    """ "Glycemic Status Assessment": lab HbA1c or GMI whose latest time falls in the period."""
    out = []
    for obs in ctx.retrieve(
        "Observation", SPEC.vs("HbA1c Laboratory Test"), SPEC.code("Glucose management indicator")
    ):
        t = q.latest(q.choice_interval(obs, "effective", ctx.birth_date))
        if q.lab_performed(obs) and t is not None and q.in_days(t, ctx.days):
            out.append((t, obs))
    return out


def _lowest_on_most_recent_day(ctx: MeasureContext) -> tuple[datetime, dict[str, Any]] | None:
    """ "Lowest Glycemic Status Assessment Reading on Most Recent Day" (null values sort first)."""
    found = _assessments(ctx)
    if not found:
        return None
    last_day = max(q.day(t) for t, _ in found)
    same_day = [(t, o) for t, o in found if q.day(t) == last_day]

    def key(item: tuple[datetime, dict[str, Any]]) -> tuple[int, float]:
        v = q.value_quantity(item[1])
        if v is None:
            return (0, 0.0)
        pct = _percent(v)
        return (1, pct if pct is not None else v[0])

    return min(same_day, key=key)


def _percent(v: tuple[float, str]) -> float | None:
    """A quantity in percent, converted by UCUM as CQL compares quantities (FHIRHelpers ToQuantity:
    the unit is the code, else the unit, else '1'): 139 mg/g is 13.9 %; mg/dL does not convert."""
    value, unit = v
    if unit == "%":
        return value
    return convert(value, unit or "1", "%")


def _above_threshold(obs: dict[str, Any]) -> bool:
    """`value > 9 '%'` (a value whose unit does not convert to percent does not compare: null)."""
    v = q.value_quantity(obs)
    pct = _percent(v) if v is not None else None
    return pct is not None and pct > SPEC["threshold_percent"]


def _value_text(obs: dict[str, Any]) -> str:
    v = q.value_quantity(obs)
    if v is None:
        return "no result" if not q.has_value(obs) else "non-numeric result"
    return f"{v[0]:g}%" if v[1] == "%" else f"{v[0]:g} {v[1]}".strip()


def _evidence(
    ctx: MeasureContext, lowest: tuple[datetime, dict[str, Any]] | None, elevated: bool
) -> Evidence:
    """The reading the measure used (lowest on the most recent day), else the last one on record."""
    if lowest is not None:
        t, obs = lowest
        label = concept_text(obs.get("code")) or "HbA1c"
        return Evidence(label=label, when=t, value=_value_text(obs), out_of_control=elevated)
    found = []
    codes = (SPEC.vs("HbA1c Laboratory Test"), SPEC.code("Glucose management indicator"))
    for obs in ctx.retrieve("Observation", *codes):
        when = q.latest(q.choice_interval(obs, "effective", ctx.birth_date))
        if q.lab_performed(obs) and when is not None:
            found.append((when, concept_text(obs.get("code")) or "HbA1c", _value_text(obs)))
    return last_evidence("no HbA1c on record", found)
