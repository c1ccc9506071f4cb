"""FHIR date/dateTime/instant parsing: partial dates, time zones, periods."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

# Clinical dates outside these years are data errors; reading them as "no date" keeps date
# arithmetic (a year 1 minus a day, a year 9999 plus one) from overflowing.
MIN_YEAR, MAX_YEAR = 1800, 2200


def parse_datetime(value: Any) -> datetime | None:
    """A timezone-aware datetime for a FHIR date, dateTime or instant; None when unreadable.

    Partial dates (`2024`, `2024-05`) mean their first instant; a dateTime without a zone is taken
    as UTC (FHIR says the zone SHALL be present when a time is; senders still omit it).
    """
    if not isinstance(value, str) or not value:
        return None
    return _parse_datetime(value)


@lru_cache(maxsize=8192)
def _parse_datetime(value: str) -> datetime | None:
    v = value.strip()
    try:
        if len(v) == 4:
            dt = datetime(int(v), 1, 1, tzinfo=UTC)
        elif len(v) == 7:
            dt = datetime(int(v[:4]), int(v[5:7]), 1, tzinfo=UTC)
        elif len(v) == 10:
            dt = datetime(int(v[:4]), int(v[5:7]), int(v[8:10]), tzinfo=UTC)
        else:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except (ValueError, TypeError):
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    if not MIN_YEAR <= dt.year <= MAX_YEAR:
        return None
    return dt


def parse_date(value: str | None) -> date | None:
    """The calendar date of a FHIR date or dateTime (in its own zone)."""
    if not isinstance(value, str):  # malformed input (a list, a number): no date, not a TypeError
        return None
    dt = parse_datetime(value)
    return dt.date() if dt else None


def effective_time(resource: dict[str, Any]) -> datetime | None:
    """When a clinical resource happened: effective[x], performed[x], onset[x], issued, authoredOn...

    For a Period the end is used when present (the most recent moment), else its start.
    """
    for key in (
        "effectiveDateTime",
        "effectiveInstant",
        "performedDateTime",
        "occurrenceDateTime",
        "onsetDateTime",
        "recordedDate",
        "authoredOn",
        "issued",
        "dateAsserted",
        "date",
    ):
        v = resource.get(key)
        if isinstance(v, str):
            dt = parse_datetime(v)
            if dt:
                return dt
    for key in ("effectivePeriod", "performedPeriod", "occurrencePeriod", "period", "onsetPeriod"):
        p = resource.get(key)
        if isinstance(p, dict):
            dt = parse_datetime(p.get("end")) or parse_datetime(p.get("start"))
            if dt:
                return dt
    return None


def observed_at(observation: dict[str, Any]) -> datetime | None:
    """`effective_time` of an Observation, its usual `effectiveDateTime` read first: the services
    ask it of every Observation of the chart on every hook."""
    v = observation.get("effectiveDateTime")
    if isinstance(v, str) and v:
        dt = _parse_datetime(v)
        if dt is not None:
            return dt
    return effective_time(observation)


def age_in_years(birth: date, on: date) -> int:
    """Completed years of age on a date (CQL AgeInYearsAt semantics)."""
    years = on.year - birth.year
    if (on.month, on.day) < (birth.month, birth.day):
        years -= 1
    return years


def utcnow() -> datetime:
    return datetime.now(UTC)


__all__ = [
    "age_in_years",
    "effective_time",
    "observed_at",
    "parse_date",
    "parse_datetime",
    "timedelta",
    "utcnow",
]
