"""Evaluate the care-gap eCQMs for one patient and one measurement period.

    results = evaluate(record, Period.parse("2025-01-01", "2025-12-31"))

Every measure shares one `MeasureContext`, so the code index and the shared library definitions
are computed once per call.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from types import ModuleType
from typing import Any

from cds.fhir.record import PatientRecord
from cds.services.care_gaps.measures.context import MeasureContext
from cds.services.care_gaps.measures.period import Period
from cds.services.care_gaps.measures.result import MeasureResult
from cds.services.care_gaps.measures.spec import load_spec
from cds.services.care_gaps.measures.valuesets import ValueSets

# Measure id -> module implementing `evaluate(ctx) -> (groups, evidence)`.
MEASURE_MODULES: dict[str, str] = {
    "CMS130": "cds.services.care_gaps.measures.cms130",
    "CMS125": "cds.services.care_gaps.measures.cms125",
    "CMS124": "cds.services.care_gaps.measures.cms124",
    "CMS122": "cds.services.care_gaps.measures.cms122",
    "CMS165": "cds.services.care_gaps.measures.cms165",
    "CMS347": "cds.services.care_gaps.measures.cms347",
    "CMS131": "cds.services.care_gaps.measures.cms131",
    "CMS951": "cds.services.care_gaps.measures.cms951",
}
MEASURE_IDS: tuple[str, ...] = tuple(MEASURE_MODULES)

log = logging.getLogger("cds.services.care_gaps.measures")


class UnknownMeasureError(KeyError):
    pass


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    out: dict[str, str] = {}
    for mid in MEASURE_IDS:
        spec = load_spec(mid)
        for alias in (mid, mid[3:], mid + "FHIR", spec.library, spec.measure_url):
            out[alias.lower()] = mid
    return out


def resolve_measure(name: str) -> str:
    """A measure id from `CMS130`, `130`, `CMS130FHIR`, the library name or the Measure URL."""
    mid = _aliases().get(name.strip().lower())
    if mid is None:
        raise UnknownMeasureError(f"unknown measure {name!r}; known: {', '.join(MEASURE_IDS)}")
    return mid


def _module(mid: str) -> ModuleType:
    return importlib.import_module(MEASURE_MODULES[mid])


def evaluate(
    record: PatientRecord | Iterable[Mapping[str, Any]],
    period: Period,
    measure_ids: Sequence[str] | None = None,
    valuesets: ValueSets | None = None,
    context: MeasureContext | None = None,
    failed: list[str] | None = None,
) -> list[MeasureResult]:
    """The populations of each measure (default: all eight) for the record's patient. `context`:
    a context of this record and period to share (its shared definitions stay memoised there).

    With `failed`, a measure that raises on data it cannot read is left out and its id appended
    there (the others are still evaluated); without it, the error propagates (`cds measure`).
    """
    if not isinstance(record, PatientRecord):
        record = PatientRecord.from_resources(record)
    ctx = context if context is not None else MeasureContext(record, period, valuesets)
    out = []
    for mid in measure_ids or MEASURE_IDS:
        mid = resolve_measure(mid)
        spec = load_spec(mid)
        try:
            groups, evidence = _module(mid).evaluate(ctx)
        except Exception:
            if failed is None:
                raise
            log.exception("measure could not be evaluated", extra={"measure": mid})
            failed.append(mid)
            continue
        out.append(
            MeasureResult(
                measure_id=mid,
                title=spec.title,
                measure_url=spec.measure_url,
                period=period,
                groups=tuple(groups),
                evidence=evidence if evidence and evidence.label else None,
                inverse=bool(spec.get("inverse", False)),
            )
        )
    return out
