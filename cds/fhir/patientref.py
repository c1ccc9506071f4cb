"""Which patient a FHIR resource is about: the one reading of patient references.

Used by request validation (is this prefetch/draft order about context.patientId?), by
`cds measure` (whose chart is this resource?) and by the sandbox's FHIR search. A reference is
read strictly: `Patient/<id>`, an absolute `.../Patient/<id>` (optionally `/_history/<v>`), or
a `urn:uuid:` that the enclosing Bundle's `fullUrl`s resolve to a Patient. Anything else that
names a subject (`patient/p2`, `#p2`, ` Patient/p2`, a Group, a bare identifier) is UNREADABLE:
callers treat it as not this patient's, never as "assumed ours".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Final

SUBJECT_FIELDS: Final = ("subject", "patient", "beneficiary")
# FHIR id: 1-64 of [A-Za-z0-9-.] (R4 datatypes, "id").
_ID = r"[A-Za-z0-9\-.]{1,64}"
_RELATIVE = re.compile(rf"Patient/({_ID})(?:/_history/{_ID})?")
_ABSOLUTE = re.compile(rf"https?://[^\s#?]+/Patient/({_ID})(?:/_history/{_ID})?")
# FHIR wants a UUID after `urn:uuid:`; senders (and test data) use other ids. Resolution is an exact
# match against the Bundle's own fullUrls, so any id without spaces is accepted here.
_UUID = re.compile(r"urn:uuid:[^\s]+")


class _Unreadable(str):
    """The type of UNREADABLE: a str that is no valid FHIR id, so it equals no patient id."""

    __slots__ = ()


UNREADABLE: Final = _Unreadable("<unreadable patient reference>")


def patient_id_of_reference(reference: Any, full_urls: Mapping[str, str] | None = None) -> str | None:
    """The patient id a Reference (or reference string) names, or None when it is unreadable."""
    if isinstance(reference, dict):
        reference = reference.get("reference")
    if type(reference) is not str:
        return None
    pid = _patient_id(reference)
    if pid is not None:
        return pid
    if full_urls and _UUID.fullmatch(reference):
        return full_urls.get(reference.lower())
    return None


@lru_cache(maxsize=4096)
def _patient_id(reference: str) -> str | None:
    """The id in a `Patient/<id>` or `.../Patient/<id>` reference. Cached: every resource of a
    chart names the same patient, and validation reads each one's reference on every hook."""
    m = _RELATIVE.fullmatch(reference) or _ABSOLUTE.fullmatch(reference)
    return m.group(1) if m else None


def patient_of(resource: Mapping[str, Any], full_urls: Mapping[str, str] | None = None) -> str | None:
    """The id of the patient a resource is about; None when it names no subject (Medication,
    Practitioner...); UNREADABLE when it names one that cannot be read as a Patient.

    A Patient is about itself (None without an id, as in a prefetch `patient` answer built without
    one; UNREADABLE when its id is not a string). `full_urls` maps the lower-cased
    `urn:uuid:` fullUrls of the enclosing Bundle to Patient ids (see `bundle_patient_urls`).
    """
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        if rid is None:
            return None
        return rid if type(rid) is str and rid else UNREADABLE
    for name in SUBJECT_FIELDS:
        ref = resource.get(name)
        if ref is None:
            continue
        if not isinstance(ref, dict):  # a Reference is an object; a bare string is malformed
            return UNREADABLE
        return patient_id_of_reference(ref, full_urls) or UNREADABLE
    return None


def bundle_patient_urls(bundles: Iterable[Any]) -> dict[str, str]:
    """`urn:uuid:` fullUrl (lower-cased) -> Patient id, for the Patient entries of the Bundles."""
    out: dict[str, str] = {}
    for bundle in bundles:
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        for entry in entries if isinstance(entries, list) else ():
            if not isinstance(entry, dict):
                continue
            url, res = entry.get("fullUrl"), entry.get("resource")
            if type(url) is str and _UUID.fullmatch(url) and isinstance(res, dict):
                if res.get("resourceType") == "Patient" and type(res.get("id")) is str:
                    out[url.lower()] = res["id"]
                elif res.get("resourceType") == "Bundle":
                    out.update(bundle_patient_urls([res]))
    return out
