"""Answer a rendered prefetch query (`Patient/1`, `Observation?patient=1&category=...`) from a
list of resources, the way a FHIR server would, so the sandbox sends the prefetch an EHR would.

Only the search parameters our prefetch templates use are supported; any other parameter is an
error naming it, so a new template cannot silently get wrong data in the sandbox.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cds.fhir.dates import effective_time, parse_datetime
from cds.fhir.patientref import patient_of
from cds.fhir.terminology import canonical_system
from cds.fhir.value import dicts


class UnsupportedQuery(ValueError):
    """The sandbox cannot answer this prefetch query."""


def _concepts(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return [value] if isinstance(value, dict) else []


def _token_matches(concepts: Iterable[dict[str, Any]], wanted: list[str]) -> bool:
    for concept in concepts:
        for coding in dicts(concept.get("coding")):
            for w in wanted:
                system, sep, code = w.rpartition("|")
                if coding.get("code") == code and (
                    not sep or canonical_system(coding.get("system")) == canonical_system(system)
                ):
                    return True
    return False


def _field_time(*names: str) -> Callable[[dict[str, Any]], datetime | None]:
    return lambda r: next((t for n in names if (t := parse_datetime(r.get(n))) is not None), None)


# Sort parameters of our templates: `date` is each type's clinical date (effective, performed,
# period...); the others name one element.
_SORT_KEYS: dict[str, Callable[[dict[str, Any]], datetime | None]] = {
    "date": effective_time,
    "authoredon": _field_time("authoredOn"),
    "authored": _field_time("authoredOn"),
    "onset-date": _field_time("onsetDateTime"),
    "recorded-date": _field_time("recordedDate"),
}


def _date_filter(value: str) -> Callable[[datetime | None], bool]:
    prefix, raw = (value[:2], value[2:]) if value[:2] in ("ge", "gt", "le", "lt", "eq") else ("eq", value)
    when = parse_datetime(raw)
    if when is None:
        raise UnsupportedQuery(f"date={value}: not a FHIR date")
    ops: dict[str, Callable[[datetime, datetime], bool]] = {
        "ge": lambda t, w: t >= w,
        "gt": lambda t, w: t > w,
        "le": lambda t, w: t <= w,
        "lt": lambda t, w: t < w,
        "eq": lambda t, w: t.date() == w.date(),
    }
    op = ops[prefix]
    return lambda t: t is not None and op(t, when)


def search(resources: list[dict[str, Any]], query: str) -> dict[str, Any] | None:
    """The resource (read) or searchset Bundle (search) a FHIR server would return for `query`."""
    parts = urlsplit(query.lstrip("/"))
    path = parts.path
    if "?" not in query and path.count("/") == 1:
        rtype, rid = path.split("/")
        return next((r for r in resources if r.get("resourceType") == rtype and r.get("id") == rid), None)
    if "/" in path:
        raise UnsupportedQuery(f"{query}: only reads (Type/id) and type-level searches are supported")
    matches = [r for r in resources if r.get("resourceType") == path]
    sort_key: str | None = None
    count: int | None = None
    includes: list[str] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        wanted = value.split(",")
        if name in ("patient", "subject"):
            pid = value.rsplit("/", 1)[-1]
            matches = [r for r in matches if patient_of(r) == pid]
        elif name == "category":
            matches = [r for r in matches if _token_matches(_concepts(r.get("category")), wanted)]
        elif name == "code":
            matches = [r for r in matches if _token_matches(_concepts(r.get("code")), wanted)]
        elif name == "status":
            matches = [r for r in matches if r.get("status") in wanted]
        elif name == "intent":
            matches = [r for r in matches if r.get("intent") in wanted]
        elif name == "clinical-status":
            matches = [r for r in matches if _token_matches(_concepts(r.get("clinicalStatus")), wanted)]
        elif name == "date":
            keep = _date_filter(value)
            matches = [r for r in matches if keep(effective_time(r))]
        elif name == "_include":
            source, _, element = value.partition(":")
            if source != path or not element or ":" in element:
                raise UnsupportedQuery(f"{query}: _include must be {path}:<reference parameter>")
            includes.append(element)
        elif name == "_sort":
            sort_key = value
        elif name == "_count":
            count = int(value)
        else:
            raise UnsupportedQuery(f"{query}: the sandbox does not support the search parameter {name!r}")
    if sort_key is not None:
        when = _SORT_KEYS.get(sort_key.lstrip("-"))
        if when is None:
            raise UnsupportedQuery(f"{query}: the sandbox can sort only by {', '.join(_SORT_KEYS)}")
        floor = datetime.min.replace(tzinfo=UTC)
        matches.sort(key=lambda r: when(r) or floor, reverse=sort_key.startswith("-"))
    total = len(matches)
    if count is not None:
        matches = matches[:count]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": total}
    entries = [{"resource": r, "search": {"mode": "match"}} for r in matches]
    seen: set[tuple[str, str]] = set()
    for r in matches:
        for element in includes:
            target = _resolve(resources, r.get(element + "Reference", r.get(element)))
            if target is not None and (target["resourceType"], str(target.get("id"))) not in seen:
                seen.add((target["resourceType"], str(target.get("id"))))
                entries.append({"resource": target, "search": {"mode": "include"}})
    if entries:  # FHIR JSON has no empty arrays
        bundle["entry"] = entries
    return bundle


def _resolve(resources: list[dict[str, Any]], ref: Any) -> dict[str, Any] | None:
    """The resource a relative reference (`Type/id`) names, among `resources`."""
    value = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(value, str) or "/" not in value:
        return None
    rtype, _, rid = value.rpartition("/")
    rtype = rtype.rsplit("/", 1)[-1]
    return next((r for r in resources if r.get("resourceType") == rtype and r.get("id") == rid), None)
