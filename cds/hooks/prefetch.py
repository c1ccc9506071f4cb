"""Prefetch templates: rendering tokens and deciding which keys the client did not satisfy."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

_TOKEN = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


class UnresolvedToken(ValueError):
    """A template names a token the context cannot supply."""


def token_value(token: str, context: Mapping[str, Any]) -> str:
    """The value of one prefetch token, per CDS Hooks 2.0: `context.<field>` (root-level
    primitive fields only) or one of the user tokens derived from `context.userId`."""
    if token.startswith("context."):
        name = token[len("context.") :]
        if "." in name:
            raise UnresolvedToken(f"{{{{{token}}}}}: only root-level context fields can be tokens")
        value = context.get(name)
        if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
            raise UnresolvedToken(f"{{{{{token}}}}}: context.{name} is absent or not a primitive")
        return str(value)
    if token in _USER_TOKENS:
        user = context.get("userId")
        rtype = _USER_TOKENS[token]
        if isinstance(user, str) and user.startswith(rtype + "/") and len(user) > len(rtype) + 1:
            return user[len(rtype) + 1 :]
        raise UnresolvedToken(f"{{{{{token}}}}}: context.userId is not a {rtype}")
    raise UnresolvedToken(f"{{{{{token}}}}}: not a CDS Hooks prefetch token")


def render(template: str, context: Mapping[str, Any]) -> str:
    """A relative FHIR URL with every token replaced (values URL-encoded)."""
    return _TOKEN.sub(lambda m: quote(token_value(m.group(1), context), safe=""), template)


def is_satisfied(value: Any) -> bool:
    """Whether a prefetch value counts as data: absent, null and OperationOutcome do not."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("resourceType"), str)
        and (value["resourceType"] != "OperationOutcome")
    )


def missing_keys(templates: Mapping[str, str], prefetch: Mapping[str, Any]) -> list[str]:
    """Template keys whose data the client did not provide."""
    return [k for k in templates if not is_satisfied(prefetch.get(k))]
