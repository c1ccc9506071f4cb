"""Tolerant reads of FHIR JSON: the element if it has the type FHIR gives it, else nothing.

Prefetch comes from outside and may hold anything anywhere (a `coding` that is an object, a
`system` that is a list, nulls). Every reader of resource content goes through these (or through
`terminology`, `fhirdates` and `units`, which use them), so a malformed element reads as absent and
never raises; the rest of the resource and of the chart is still used.
"""

from __future__ import annotations

from typing import Any


def as_list(value: Any) -> list[Any]:
    """A FHIR list element, or [] when the sender put something else there."""
    return value if isinstance(value, list) else []


def dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a FHIR list element (other items dropped): CodeableConcepts, Codings..."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    """A FHIR complex element (Period, Reference...), or {} when it is anything else."""
    return value if isinstance(value, dict) else {}


def as_str(value: Any) -> str | None:
    """A FHIR string/code/uri element, or None when it is anything else."""
    return value if type(value) is str else None
