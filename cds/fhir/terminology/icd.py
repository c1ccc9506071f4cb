"""How ICD diagnosis codes are spelled: ICD-9-CM keys and WHO ICD-10 (and its national
modifications) keys, with the ICD-10-GM diagnosis certainty. Readers compare these keys against
prefix lists (dots ignored), so every spelling of one code reads alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cds.fhir.terminology import ICD10, ICD10CA, ICD10GM

# WHO ICD-10 and the national modifications whose category codes are WHO's (ICD-10-GM, ICD-10-CA).
WHO_ICD10 = frozenset({ICD10, ICD10GM, ICD10CA})
# ICD-10-GM diagnosis certainty (Diagnosesicherheit), an extension on the ICD-10-GM Coding in the
# German base profiles (de.basisprofil.r4), values from KBV_CS_SFHIR_ICD_DIAGNOSESICHERHEIT:
# G confirmed, V suspected, Z status after (no longer present), A excluded.
GM_CERTAINTY_URLS = frozenset(
    {
        "http://fhir.de/StructureDefinition/icd-10-gm-diagnosesicherheit",
        "https://fhir.de/StructureDefinition/icd-10-gm-diagnosesicherheit",
    }
)
GM_NOT_PRESENT = frozenset({"A", "Z"})
_ICD9_CODE = re.compile(r"([0-9]{3}|V[0-9]{2}|E[0-9]{3})\.?([0-9]{0,2})")
_WHO_CODE = re.compile(r"([A-Z][0-9]{2})(?:\.?([0-9]{1,3}))?(.*)")
_WHO_MARKERS = frozenset("+*!#\u2020\u2021-.")  # dagger, asterisk, exclamation, filler (I50.-)


def icd9_key(code: str) -> str | None:
    """An ICD-9-CM diagnosis code without its dot, or None when it is no diagnosis code this reads:
    an external-cause E-code (E800-E999: the cause, never the condition) or a malformed code (the
    three digits before the dot are required, so "38.9" is not read as 038.9)."""
    m = _ICD9_CODE.fullmatch(code.strip().upper())
    if m is None or m.group(1).startswith("E"):
        return None
    return m.group(1) + m.group(2)


def who_icd10_key(code: str, gm: bool = False) -> tuple[str, str | None] | None:
    """A WHO ICD-10 (or GM/CA) code without dot, dagger/asterisk/exclamation marks or a UK filler X,
    and the ICD-10-GM certainty letter appended to it (G, V, Z, A; side letters R, L, B are
    dropped); None when malformed, or when a letter is appended to a code that is not ICD-10-GM."""
    m = _WHO_CODE.fullmatch(code.strip().upper().replace(" ", ""))
    if m is None:
        return None
    head, tail, rest = m.groups()
    if rest.startswith("X") and not tail:  # NHS filler: I64X is I64
        rest = rest[1:]
    letters = [ch for ch in rest if ch not in _WHO_MARKERS]
    if letters and not (gm and set(letters) <= set("GVZARLB")):
        return None
    certainty = [ch for ch in letters if ch in "GVZA"]
    if len(certainty) > 1 or len(letters) > 2:
        return None
    return head + (tail or ""), certainty[0] if certainty else None


def gm_certainty(element: Mapping[str, Any]) -> str | None:
    """The ICD-10-GM diagnosis certainty letter an element (Coding or Condition) carries, if any."""
    for ext in element.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") in GM_CERTAINTY_URLS:
            value = ext.get("valueCoding")
            code = value.get("code") if isinstance(value, dict) else ext.get("valueCode")
            if isinstance(code, str):
                return code.strip().upper()
    return None
