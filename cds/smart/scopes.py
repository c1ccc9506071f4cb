"""SMART scopes: does a granted scope string cover a FHIR query, and which scope to ask for.

SMART App Launch 2.x scopes are `<context>/<resource type>.<permissions>`: context `patient`,
`user` or `system`; resource type or `*`; v2 permissions a subset of `cruds` in that order
(`r` read, `s` search), v1 `read`, `write` or `*`. A v2 scope may narrow itself with a query
(`patient/Observation.rs?category=laboratory`): we cannot tell which results such a scope lets
through, so it never counts as covering a query here (the caller then uses another token).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)$")


def interaction(query: str) -> str:
    """'s' for a search (`Type?params` or `Type`), 'r' for a read (`Type/id`)."""
    path = query.split("?", 1)[0].strip("/")
    return "r" if "/" in path else "s"


def resource_type(query: str) -> str:
    """The resource type a relative FHIR query asks for (`Observation?...` -> Observation)."""
    return query.split("?", 1)[0].strip("/").split("/", 1)[0]


def covers(scope: str | None, query: str) -> bool:
    """Whether `scope` (space-separated, as granted) allows the relative FHIR `query`."""
    if not scope:
        return False
    wanted_type, wanted = resource_type(query), interaction(query)
    for token in scope.split():
        m = _SCOPE.match(token)
        if m is None:
            continue
        _, rtype, perms = m.groups()
        if rtype not in ("*", wanted_type):
            continue
        if perms in ("read", "*") or (perms not in ("write",) and wanted in perms):
            return True
    return False


def system_scope(queries: Iterable[str]) -> str:
    """The SMART v2 system scopes that cover `queries` (`system/Observation.rs ...`), sorted."""
    types = sorted({resource_type(q) for q in queries if resource_type(q)})
    return " ".join(f"system/{t}.rs" for t in types)
