"""The alert analytics report: per service and card kind, over a time range, what happened to the
cards: issued, accepted, overridden, ignored (no feedback), top override reasons, acceptance by
model version, and the override rate over time. Served as `cds feedback report` and
`GET /feedback/summary`.

A card counts once, with the outcome of its latest feedback; the time range selects cards by the
time they were issued.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cds.feedback.validate import parse_rfc3339

if TYPE_CHECKING:
    from cds.feedback.store import FeedbackStore

DEFAULT_DAYS = 30
TOP_REASONS = 5
_RELATIVE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
NO_REASON = "(none given)"


def parse_when(text: str, now: datetime) -> datetime:
    """A point in time from `2025-03-01`, an RFC 3339 date-time, `now`, or an age (`90m`, `12h`, `7d`,
    `2w`: that long before now). ValueError with the accepted forms otherwise."""
    t = text.strip()
    if t == "now":
        return now
    m = _RELATIVE.match(t)
    if m:
        try:
            return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        except OverflowError:  # `99999999d` reaches before year 1
            raise ValueError(f"{text!r} reaches too far back") from None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
        try:
            return datetime.fromisoformat(t).replace(tzinfo=UTC)
        except ValueError:
            pass
    when = parse_rfc3339(t)
    if when is None:
        raise ValueError(
            f"{text!r} is not a time: use YYYY-MM-DD, an RFC 3339 date-time, 'now' or an age like 7d"
        )
    return when


def time_range(since: str | None, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The [since, until) range from user input; default: the last 30 days."""
    end = parse_when(until, now) if until else now
    start = parse_when(since, now) if since else end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise ValueError(f"since ({iso(start)}) must be before until ({iso(end)})")
    return start, end


def bucket_for(since: datetime, until: datetime) -> tuple[str, int]:
    """The time step of the override-rate series: hours up to 3 days, days up to 180, else weeks."""
    span = until - since
    if span <= timedelta(days=3):
        return "hour", 3_600_000
    if span <= timedelta(days=180):
        return "day", 86_400_000
    return "week", 7 * 86_400_000


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _counts(issued: int, accepted: int, overridden: int) -> dict[str, Any]:
    return {
        "issued": issued,
        "accepted": accepted,
        "overridden": overridden,
        "ignored": issued - accepted - overridden,
        "acceptance_rate": _rate(accepted, issued),
        "override_rate": _rate(overridden, issued),
    }


async def build_report(
    store: FeedbackStore,
    since: datetime,
    until: datetime,
    service: str | None = None,
    *,
    issuer: str | None = None,
    tenant: str = "",
) -> dict[str, Any]:
    """The report as JSON-ready data (the shape of GET /feedback/summary), over the cards issued to
    `issuer` and `tenant` (a caller's own), or all cards when `issuer` is None (the CLI)."""
    bucket_name, bucket_ms = bucket_for(since, until)
    await store.flush(timeout=2.0)  # include cards issued a moment ago (best effort)
    rows = await store.summary(since, until, service, bucket_ms, issuer=issuer, tenant=tenant)

    by_kind: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    versions: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for svc, kind, version, issued, accepted, overridden in rows.outcomes:
        issued, accepted, overridden = int(issued), int(accepted or 0), int(overridden or 0)
        total = by_kind[(svc, kind)]
        total[0] += issued
        total[1] += accepted
        total[2] += overridden
        versions[(svc, kind)].append({"model_version": version, **_counts(issued, accepted, overridden)})

    reasons: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for svc, kind, system, code, n in rows.reasons:
        item: dict[str, Any] = {"code": code or NO_REASON, "cards": int(n)}
        if system:
            item["system"] = system
        reasons[(svc, kind)].append(item)

    series: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for svc, kind, bucket, issued, overridden in sorted(rows.series, key=lambda r: (r[0], r[1], r[2])):
        start = datetime.fromtimestamp(int(bucket) * bucket_ms / 1000, UTC)
        series[(svc, kind)].append(
            {
                "start": iso(start),
                "issued": int(issued),
                "overridden": int(overridden or 0),
                "override_rate": _rate(int(overridden or 0), int(issued)),
            }
        )

    kinds = []
    for (svc, kind), (issued, accepted, overridden) in sorted(
        by_kind.items(), key=lambda kv: (kv[0][0], -kv[1][0], kv[0][1])
    ):
        top = sorted(reasons[(svc, kind)], key=lambda r: (-r["cards"], r["code"]))[:TOP_REASONS]
        kinds.append(
            {
                "service": svc,
                "kind": kind,
                **_counts(issued, accepted, overridden),
                "top_override_reasons": top,
                "by_model_version": sorted(
                    versions[(svc, kind)],
                    key=lambda v: (v["model_version"] is None, v["model_version"] or ""),
                ),
                "series": series[(svc, kind)],
            }
        )
    totals = [sum(k[f] for k in kinds) for f in ("issued", "accepted", "overridden")]
    report: dict[str, Any] = {"since": iso(since), "until": iso(until), "bucket": bucket_name}
    if service:
        report["service"] = service
    report["totals"] = _counts(*totals)
    report["kinds"] = kinds
    return report


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _reasons_text(kind: dict[str, Any]) -> str:
    return "; ".join(f"{r['code']} ({r['cards']})" for r in kind["top_override_reasons"])


def _versions_text(kind: dict[str, Any]) -> str:
    return "; ".join(
        f"{v['model_version'] or '(none)'}: {_percent(v['acceptance_rate'])} of {v['issued']}"
        for v in kind["by_model_version"]
    )


CSV_COLUMNS = (
    "service", "kind", "issued", "accepted", "overridden", "ignored", "acceptance_rate", "override_rate",
    "top_override_reasons", "acceptance_by_model_version",
)  # fmt: skip


def to_csv(report: dict[str, Any]) -> str:
    """One row per service and card kind; reasons and model versions as `a (n); b (m)` text."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for k in report["kinds"]:
        writer.writerow(
            [k[c] if k[c] is not None else "" for c in CSV_COLUMNS[:8]]
            + [_reasons_text(k), _versions_text(k)]
        )
    return out.getvalue()


def to_table(report: dict[str, Any]) -> str:
    """A plain-text table for a terminal."""
    head = ("service", "kind", "issued", "accepted", "overridden", "ignored", "accept", "override")
    rows = [
        (k["service"], k["kind"], str(k["issued"]), str(k["accepted"]), str(k["overridden"]),
         str(k["ignored"]),
         _percent(k["acceptance_rate"]), _percent(k["override_rate"]))
        for k in report["kinds"]
    ]  # fmt: skip
    t = report["totals"]
    rows.append(("all", "", str(t["issued"]), str(t["accepted"]), str(t["overridden"]), str(t["ignored"]),
                 _percent(t["acceptance_rate"]), _percent(t["override_rate"])))  # fmt: skip
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    scope = report.get("service", "all services")
    lines = [f"Cards issued {report['since']} .. {report['until']} ({scope})", "", line(head)]
    lines.append("  ".join("-" * w for w in widths))
    lines += [line(r) for r in rows]
    if any(k["top_override_reasons"] for k in report["kinds"]):
        lines += ["", "Top override reasons (cards)"]
        lines += [
            f"  {k['service']} / {k['kind']}: {_reasons_text(k)}"
            for k in report["kinds"]
            if k["top_override_reasons"]
        ]
    lines += ["", "Acceptance by model version"]
    lines += [f"  {k['service']} / {k['kind']}: {_versions_text(k)}" for k in report["kinds"]]
    return "\n".join(lines) + "\n"
