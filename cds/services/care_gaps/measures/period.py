"""The measurement period: a CQL `Interval<DateTime>` from the first to the last millisecond of
its days, in UTC (the eCQM default `Interval[@2025-01-01T00:00:00.000Z, @2025-12-31T23:59:59.999Z]`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta


@dataclass(frozen=True, slots=True)
class Period:
    start_date: date
    end_date: date

    def __post_init__(self) -> None:
        if self.end_date < self.start_date:
            raise ValueError(
                f"measurement period ends ({self.end_date}) before it starts ({self.start_date})"
            )

    @property
    def start(self) -> datetime:
        return datetime.combine(self.start_date, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.end_date, time(23, 59, 59, 999000), tzinfo=UTC)

    @classmethod
    def parse(cls, start: str, end: str) -> Period:
        """From two ISO dates (or datetimes, whose date part is used)."""
        return cls(date.fromisoformat(start[:10]), date.fromisoformat(end[:10]))

    @classmethod
    def calendar_year(cls, today: date) -> Period:
        """The calendar year containing `today` (how CMS reports the measures)."""
        return cls(date(today.year, 1, 1), date(today.year, 12, 31))

    @classmethod
    def rolling_12_months(cls, today: date) -> Period:
        """The 12 months ending on `today`."""
        return cls(add_years(today, -1) + timedelta(days=1), today)

    def __str__(self) -> str:
        return f"{self.start_date.isoformat()}/{self.end_date.isoformat()}"


def add_years(d: date, years: int) -> date:
    """CQL date + N years: Feb 29 becomes Feb 28 in a non-leap year."""
    try:
        return d.replace(year=d.year + years)
    except ValueError:
        return d.replace(year=d.year + years, day=28)


def add_months(d: date, months: int) -> date:
    """CQL date + N months, clamped to the end of the month."""
    m = d.month - 1 + months
    y, m = d.year + m // 12, m % 12 + 1
    for day in (d.day, 30, 29, 28):
        try:
            return date(y, m, day)
        except ValueError:
            continue
    raise ValueError(d)
