"""CumulativeMedicationDuration 4.1.000 `medicationRequestPeriod()`: the days a prescription covers.

Supply days = expectedSupplyDuration, else quantity / (dose x doses per day), times (1 + refills),
anchored at the bounds start, else authoredOn, else the validity period start; without a supply,
the bounds period itself. Null (None) when neither can be worked out, exactly as the CQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cds.fhir.dates import parse_datetime
from cds.fhir.value import as_dict
from cds.services.care_gaps.measures.qicore import Interval

# CMD ToDaily(frequency, period): doses per day for frequency per `period` units.
_PER_DAY = {
    "h": 24.0, "hour": 24.0, "hours": 24.0,
    "min": 24.0 * 60, "minute": 24.0 * 60, "minutes": 24.0 * 60,
    "s": 24.0 * 3600, "second": 24.0 * 3600, "seconds": 24.0 * 3600,
    "d": 1.0, "day": 1.0, "days": 1.0,
    "wk": 1 / 7, "week": 1 / 7, "weeks": 1 / 7,
    "mo": 1 / 30, "month": 1 / 30, "months": 1 / 30,
    "a": 1 / 365, "year": 1 / 365, "years": 1 / 365,
}  # fmt: skip
# `convert expectedSupplyDuration to days`.
_DAYS_IN = {
    "d": 1.0, "day": 1.0, "days": 1.0, "wk": 7.0, "week": 7.0, "weeks": 7.0,
    "h": 1 / 24, "hour": 1 / 24, "hours": 1 / 24, "mo": 30.0, "month": 30.0, "months": 30.0,
    "a": 365.0, "year": 365.0, "years": 365.0,
}  # fmt: skip


def _single(items: Any) -> Mapping[str, Any] | None:
    """CQL `singleton from`: the only element, None when empty (and, unlike CQL, when several)."""
    if isinstance(items, list) and len(items) == 1 and isinstance(items[0], dict):
        return items[0]
    return None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _date(v: Any) -> date | None:
    dt = parse_datetime(v) if isinstance(v, str) else None
    return dt.date() if dt else None


def medication_request_period(req: Mapping[str, Any]) -> Interval | None:
    """The covered days as an Interval (midnight of the first day to midnight of the last)."""
    dosage = _single(req.get("dosageInstruction"))
    dose_and_rate = _single(dosage.get("doseAndRate")) if dosage else None
    timing = dosage.get("timing") if dosage else None
    repeat = timing.get("repeat") if isinstance(timing, dict) else None
    repeat = repeat if isinstance(repeat, dict) else {}

    frequency = _num(repeat.get("frequencyMax")) or _num(repeat.get("frequency"))
    per = _num(repeat.get("period"))
    unit = repeat.get("periodUnit")
    doses_per_day: float | None = None
    if frequency is not None and per and isinstance(unit, str) and unit in _PER_DAY:
        doses_per_day = frequency * _PER_DAY[unit] / per
    if doses_per_day is None:
        # Coalesce(ToDaily(...), Count(timeOfDay), 1.0): Count of an absent list is 0, never null.
        tod = repeat.get("timeOfDay")
        doses_per_day = float(len(tod) if isinstance(tod, list) else 0)

    dose = None
    if dose_and_rate:
        rng = dose_and_rate.get("doseRange")
        if isinstance(rng, dict) and isinstance(rng.get("high"), dict):
            dose = _num(rng["high"].get("value"))
        q = dose_and_rate.get("doseQuantity")
        if dose is None and isinstance(q, dict):
            dose = _num(q.get("value"))

    bounds = repeat.get("boundsPeriod") if isinstance(repeat.get("boundsPeriod"), dict) else None
    dispense = as_dict(req.get("dispenseRequest"))
    days_supply = None
    esd = dispense.get("expectedSupplyDuration")
    if isinstance(esd, dict) and (supplied := _num(esd.get("value"))) is not None:
        factor = _DAYS_IN.get(str(esd.get("code") or esd.get("unit") or "d"))
        days_supply = supplied * factor if factor else None
    quantity = _num(dispense["quantity"].get("value")) if isinstance(dispense.get("quantity"), dict) else None
    refills = _num(dispense.get("numberOfRepeatsAllowed")) or 0.0

    validity = as_dict(dispense.get("validityPeriod"))
    start = (
        (_date(bounds.get("start")) if bounds else None)
        or _date(req.get("authoredOn"))
        or _date(validity.get("start"))
    )
    total = days_supply
    if total is None and quantity is not None and dose and doses_per_day:
        total = quantity / (dose * doses_per_day)
    if start is not None and total is not None:
        total *= 1 + refills
        end = start + timedelta(days=int(total - 1))
        return Interval(_at(start), _at(end))
    bounds_end = _date(bounds.get("end")) if bounds else None
    if start is not None and bounds_end is not None:
        return Interval(_at(start), _at(bounds_end))
    return None


def _at(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)
