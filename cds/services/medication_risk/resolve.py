"""From a MedicationRequest (or MedicationStatement) to the RxNorm ingredients it contains.

EHRs send product codes (SCD/SBD/packs), ingredient codes, codes from other systems, or only text,
directly in medicationCodeableConcept or in a Medication that is contained, in the draftOrders
bundle, or in the prefetched record. Codes we know win; otherwise ingredient names are read from
the text and displays. A combination product resolves to each of its ingredients.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cds.fhir.record import PatientRecord
from cds.fhir.terminology import RXNORM, canonical_system, concept_text
from cds.fhir.value import as_list
from cds.services.medication_risk.knowledge import Knowledge


class UnreadableMedication(ValueError):
    """The resource does not say which medication it is (no code, no text, dangling reference)."""


@dataclass(frozen=True, eq=False)
class Med:
    """One medication order or statement as the rules see it."""

    key: str  # "MedicationRequest/123", or "draftOrders[2]" for a draft without an id
    resource: Mapping[str, Any]
    label: str
    text: str  # lower-case text of the medication, for rules that look at the form ("vaginal")
    ingredients: frozenset[str]
    draft: bool

    @property
    def resource_id(self) -> str | None:
        rid = self.resource.get("id")
        return f"{self.resource.get('resourceType')}/{rid}" if isinstance(rid, str) and rid else None


class Resolver:
    """Resolves medication concepts against one knowledge base; results are cached per concept."""

    def __init__(self, kb: Knowledge) -> None:
        self.kb = kb
        self._cached = lru_cache(maxsize=8192)(self._resolve_key)

    def concept_ingredients(self, concept: Mapping[str, Any] | None) -> frozenset[str]:
        """Ingredient RxCUIs of a CodeableConcept: by RxNorm code, else by names in its text."""
        if not isinstance(concept, dict):
            return frozenset()
        codes: list[str] = []
        texts: list[str] = []
        for c in as_list(concept.get("coding")):
            if not isinstance(c, dict):
                continue
            if canonical_system(c.get("system")) == RXNORM and isinstance(c.get("code"), str):
                codes.append(c["code"])
            if isinstance(c.get("display"), str):
                texts.append(c["display"])
        if isinstance(concept.get("text"), str):
            texts.append(concept["text"])
        return self._cached((tuple(codes), tuple(texts)))

    def text_ingredients(self, text: str) -> frozenset[str]:
        return self._cached(((), (text,)))

    def _resolve_key(self, key: tuple[tuple[str, ...], tuple[str, ...]]) -> frozenset[str]:
        codes, texts = key
        found: set[str] = set()
        for code in codes:
            if code in self.kb.products:
                found |= self.kb.products[code]
            elif code in self.kb.ingredients:
                found.add(code)
        if found:
            return frozenset(found)
        for text in texts:
            found.update(self.kb.ingredient_names.find(text))
        return frozenset(found)

    def medication(
        self,
        resource: Mapping[str, Any],
        key: str,
        record: PatientRecord,
        bundle: Mapping[str, Mapping[str, Any]] | None = None,
        draft: bool = False,
    ) -> Med:
        """The Med for a MedicationRequest/Statement; raises UnreadableMedication when it names none."""
        concept = resource.get("medicationCodeableConcept")
        if concept is not None:
            if not isinstance(concept, dict) or not (concept.get("coding") or concept.get("text")):
                raise UnreadableMedication("medicationCodeableConcept has neither a coding nor text")
            label = concept_text(concept) or "medication"
            return Med(
                key, resource, label, _all_text(concept).lower(), self.concept_ingredients(concept), draft
            )
        ref = resource.get("medicationReference")
        if isinstance(ref, dict):
            med = self._referenced(resource, ref, record, bundle)
            if med is not None:
                concept = med.get("code")
                ings = set(self.concept_ingredients(concept))
                texts = [_all_text(concept)]
                for item in as_list(med.get("ingredient")):
                    if isinstance(item, dict) and isinstance(item.get("itemCodeableConcept"), dict):
                        ings |= self.concept_ingredients(item["itemCodeableConcept"])
                        texts.append(_all_text(item["itemCodeableConcept"]))
                label = concept_text(concept) or ref.get("display") or "medication"
                if not ings and not any(texts):
                    raise UnreadableMedication(
                        f"Medication {ref.get('reference')!r} has no code, text or ingredient"
                    )
                return Med(key, resource, str(label), " ".join(texts).lower(), frozenset(ings), draft)
            display = ref.get("display")
            if isinstance(display, str) and display.strip():
                return Med(key, resource, display, display.lower(), self.text_ingredients(display), draft)
            raise UnreadableMedication(
                f"medicationReference {ref.get('reference')!r} is neither contained, in draftOrders, nor in the "
                "record, and has no display"
            )
        raise UnreadableMedication("it has neither medicationCodeableConcept nor medicationReference")

    @staticmethod
    def _referenced(
        resource: Mapping[str, Any],
        ref: Mapping[str, Any],
        record: PatientRecord,
        bundle: Mapping[str, Mapping[str, Any]] | None,
    ) -> Mapping[str, Any] | None:
        target = ref.get("reference")
        if not isinstance(target, str) or not target:
            return None
        if target.startswith("#"):
            for c in as_list(resource.get("contained")):
                if (
                    isinstance(c, dict)
                    and c.get("resourceType") == "Medication"
                    and c.get("id") == target[1:]
                ):
                    return c
            return None
        if bundle:
            hit = bundle.get(target) or bundle.get(_relative(target))
            if hit is not None:
                return hit
        found = record.resolve(_relative(target))
        return found if found is not None and found.get("resourceType") == "Medication" else None


def _relative(reference: str) -> str:
    """'http://x/fhir/Medication/5' or 'Medication/5/_history/2' -> 'Medication/5'."""
    parts = [p for p in reference.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return "/".join(parts[-2:]) if len(parts) >= 2 else reference


def _all_text(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    out = [concept.get("text") or ""]
    out += [c.get("display") or "" for c in as_list(concept.get("coding")) if isinstance(c, dict)]
    return " ".join(t for t in out if isinstance(t, str))
