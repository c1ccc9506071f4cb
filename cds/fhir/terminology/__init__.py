"""Code systems and code matching: the one place that knows how codes are spelled.

Models never compare `system`/`code` strings themselves; they build a `CodeSet` (usually from
their knowledge files) and ask it whether a CodeableConcept matches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ICD9CM = "http://hl7.org/fhir/sid/icd-9-cm"
ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
# National modifications of WHO ICD-10 (canonical FHIR system URIs): ICD-10-GM as the German base
# profiles and HL7 Deutschland's TerminologieBasisDE define it (BfArM publishes it; older profiles say
# dimdi), ICD-10-CA as HL7 Terminology (THO) defines it (publisher CIHI, OID 2.16.840.1.113883.6.94).
ICD10GM = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
ICD10CA = "http://hl7.org/fhir/sid/icd-10-ca"

# Other spellings seen in the wild (OIDs, http/https, trailing slashes) -> canonical URI.
_ALIASES: dict[str, str] = {
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "https://loinc.org": LOINC,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "http://snomed.info/sct/": SNOMED,
    "https://snomed.info/sct": SNOMED,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "https://www.nlm.nih.gov/research/umls/rxnorm": RXNORM,
    "http://www.nlm.nih.gov/research/umls/rxnorm/": RXNORM,
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "http://hl7.org/fhir/sid/icd-10-cm/": ICD10CM,
    "urn:oid:2.16.840.1.113883.12.292": CVX,
    "urn:oid:2.16.840.1.113883.6.8": UCUM,
    "urn:oid:2.16.840.1.113883.6.12": CPT,
    "urn:oid:2.16.840.1.113883.6.285": HCPCS,
    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": HCPCS,
    "http://www.nlm.nih.gov/research/umls/hcpcs": HCPCS,  # VSAC expansions spell it so
    "urn:oid:2.16.840.1.113883.6.103": ICD9CM,
    "urn:oid:2.16.840.1.113883.6.4": ICD10PCS,
    "urn:oid:2.16.840.1.113883.6.3": ICD10,  # THO NamingSystem icd10
    "http://fhir.de/CodeSystem/dimdi/icd-10-gm": ICD10GM,  # before DIMDI became part of BfArM (2020)
    "urn:oid:2.16.840.1.113883.6.94": ICD10CA,
}


def canonical_system(system: object) -> str:
    """The canonical URI of a code system, whatever alias the sender used ("" when it is absent
    or not a string: malformed input matches no code system)."""
    if not system or type(system) is not str:
        return ""
    return _ALIASES.get(system, system)


def coding_items(concept: Any) -> list[Any]:
    """The raw entries of a CodeableConcept's `coding` (a single Coding stands for itself); empty
    when there are none. Entries are not checked: callers skip what is not a dict."""
    if not isinstance(concept, dict):
        return []
    items = concept.get("coding")
    if items is None and "code" in concept:
        return [concept]
    return items if isinstance(items, list) else []


def codings(concept: Mapping[str, Any] | None) -> Iterator[tuple[str, str]]:
    """Every (canonical system, code) of a CodeableConcept or a single Coding."""
    for c in coding_items(concept):
        if isinstance(c, dict):
            code = c.get("code")
            if isinstance(code, str) and code:
                yield canonical_system(c.get("system")), code


def concept_text(concept: Mapping[str, Any] | None) -> str:
    """The human text of a CodeableConcept: its text, else the first coding display."""
    if not isinstance(concept, dict):
        return ""
    text = concept.get("text")
    if isinstance(text, str) and text:
        return text
    items = concept.get("coding")
    for c in items if isinstance(items, list) else ():
        if isinstance(c, dict) and isinstance(c.get("display"), str):
            return c["display"]
    return ""


class CodeSet:
    """An immutable set of (system, code) pairs, matched against FHIR concepts."""

    __slots__ = ("_pairs", "name")

    def __init__(self, pairs: Iterable[tuple[str, str]], name: str = "") -> None:
        self.name = name
        self._pairs = frozenset((canonical_system(s), c) for s, c in pairs)

    @classmethod
    def of(cls, system: str, *codes: str, name: str = "") -> CodeSet:
        return cls(((system, c) for c in codes), name=name)

    def __contains__(self, pair: object) -> bool:
        return pair in self._pairs

    def __len__(self) -> int:
        return len(self._pairs)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._pairs)

    def __or__(self, other: CodeSet) -> CodeSet:
        return CodeSet(self._pairs | other._pairs, name=f"{self.name}|{other.name}")

    def matches(self, concept: Mapping[str, Any] | None) -> bool:
        """True when any coding of the concept is in this set."""
        return any(p in self._pairs for p in codings(concept))

    def matching_code(self, concept: Mapping[str, Any] | None) -> tuple[str, str] | None:
        for p in codings(concept):
            if p in self._pairs:
                return p
        return None
