"""The patient record: one read-only view over prefetch and fetched FHIR resources.

Every model reads the patient through this class, never through raw prefetch keys, so the same
code works whether the EHR prefetched the data, the service fetched it, or training built it.
Resources stay plain dicts (as orjson gives them); the record only indexes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from cds.fhir.dates import age_in_years, effective_time, parse_date, utcnow
from cds.fhir.terminology import CodeSet
from cds.fhir.value import dicts

if TYPE_CHECKING:
    from cds.fhir.terminology.maps import TerminologyMaps

# Statuses that mean "this did not happen / is not true": never read as data.
INVALID_STATUSES = frozenset({"entered-in-error", "cancelled", "canceled"})
ACTIVE_MED_STATUSES = frozenset({"active", "on-hold", "intended"})


def _status(resource: Mapping[str, Any]) -> str | None:
    """A resource's status when it is a string (malformed input may hold anything there)."""
    s = resource.get("status")
    return s if isinstance(s, str) else None


def resources_of(value: Any) -> Iterable[dict[str, Any]]:
    """The resources inside one prefetch value: a resource, a Bundle of them, or nothing.

    OperationOutcome entries (a client's way of saying a query failed) are dropped.
    """
    if not isinstance(value, dict):
        return
    rtype = value.get("resourceType")
    if rtype == "Bundle":
        entries = value.get("entry")
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, dict):
                res = entry.get("resource")
                if isinstance(res, dict) and isinstance(res.get("resourceType"), str):
                    if res["resourceType"] == "Bundle":
                        yield from resources_of(res)
                    elif res["resourceType"] != "OperationOutcome":
                        yield res
    elif isinstance(rtype, str) and rtype != "OperationOutcome":
        yield value


@dataclass(frozen=True)
class PatientRecord:
    """What the service knows about one patient at one moment (`now`)."""

    patient: dict[str, Any] | None
    by_type: Mapping[str, tuple[dict[str, Any], ...]]
    now: datetime = field(default_factory=utcnow)
    # `valid(type)` per type, computed once: the app and the services each read the valid
    # Observations of the same record. Not an init field, so a record built from another starts empty.
    _valid: dict[str, tuple[dict[str, Any], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_resources(
        cls,
        resources: Iterable[Mapping[str, Any]],
        now: datetime | None = None,
        patient_id: str | None = None,
        terminology: TerminologyMaps | None = None,
    ) -> PatientRecord:
        """Index resources by type, dropping exact duplicates (same type and id).

        With `terminology` (reviewed ConceptMaps), an Observation's mapped local code also carries
        its LOINC code, so every lookup of observations by code finds it.
        """
        # Hot path (every resource of every call): ids seen per type, one dict lookup for the
        # type's group, the terminology test hoisted out of the loop.
        seen: dict[str, set[str]] = {}
        groups: dict[str, list[dict[str, Any]]] = {}
        translate = terminology.translate if terminology else None
        for res in resources:
            rtype = res.get("resourceType")
            if not isinstance(rtype, str):
                continue
            group = groups.get(rtype)
            if group is None:
                group = groups[rtype] = []
                ids = seen[rtype] = set()
            else:
                ids = seen[rtype]
            rid = res.get("id")
            if isinstance(rid, str):
                if rid in ids:
                    continue
                ids.add(rid)
            if translate is not None and rtype == "Observation":
                res = translate(res)  # type: ignore[arg-type]
            group.append(res)  # type: ignore[arg-type]
        patients = groups.get("Patient", [])
        patient = None
        if patient_id is not None:
            patient = next((p for p in patients if p.get("id") == patient_id), None)
        if patient is None and patients:
            patient = patients[0]
        return cls(
            patient=patient,
            by_type={k: tuple(v) for k, v in groups.items()},
            now=now or utcnow(),
        )

    @classmethod
    def from_prefetch(
        cls, prefetch: Mapping[str, Any], now: datetime | None = None, patient_id: str | None = None
    ) -> PatientRecord:
        """Build a record from a CDS Hooks prefetch object (values are resources or Bundles)."""
        return cls.from_resources(
            (r for v in prefetch.values() for r in resources_of(v)), now=now, patient_id=patient_id
        )

    # --- demographics -------------------------------------------------------------------------
    @property
    def patient_id(self) -> str | None:
        return self.patient.get("id") if self.patient else None

    @property
    def birth_date(self) -> date | None:
        return parse_date(self.patient.get("birthDate")) if self.patient else None

    @property
    def sex(self) -> str | None:
        """Administrative gender, `male` or `female`; None when other/unknown/absent."""
        g = self.patient.get("gender") if self.patient else None
        return g if g in ("male", "female") else None

    def age(self, on: date | None = None) -> int | None:
        """Age in completed years on a date (default: the record's `now`)."""
        b = self.birth_date
        return age_in_years(b, on or self.now.date()) if b else None

    # --- resources ----------------------------------------------------------------------------
    def of_type(self, resource_type: str) -> tuple[dict[str, Any], ...]:
        """All resources of a type, including ones with an invalid status."""
        return self.by_type.get(resource_type, ())

    def valid(self, resource_type: str) -> list[dict[str, Any]]:
        """Resources of a type that were not entered in error or cancelled."""
        found = self._valid.get(resource_type)
        if found is None:
            found = self._valid[resource_type] = tuple(
                r for r in self.of_type(resource_type) if _status(r) not in INVALID_STATUSES
            )
        return list(found)

    def observations(
        self, codes: CodeSet | None = None, since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Valid Observations (optionally of some codes, optionally since a time), newest first.

        An observation matches on its own code or on the code of one of its components.
        """
        out: list[tuple[datetime | None, dict[str, Any]]] = []
        for obs in self.valid("Observation"):
            if codes is not None and not (
                codes.matches(obs.get("code"))
                or any(codes.matches(c.get("code")) for c in dicts(obs.get("component")))
            ):
                continue
            t = effective_time(obs)
            if since is not None and (t is None or t < since or t > self.now):
                continue
            out.append((t, obs))
        out.sort(
            key=lambda p: (p[0] is not None, p[0] or datetime.min.replace(tzinfo=self.now.tzinfo)),
            reverse=True,
        )
        return [o for _, o in out]

    def active_medications(self) -> list[dict[str, Any]]:
        """MedicationRequests and MedicationStatements the patient is taking now."""
        meds = [
            m
            for m in self.of_type("MedicationRequest")
            if _status(m) in ACTIVE_MED_STATUSES and m.get("intent") not in ("proposal", "plan")
        ]
        meds += [m for m in self.of_type("MedicationStatement") if _status(m) in ("active", "intended")]
        return meds

    def conditions(self, active_only: bool = True) -> list[dict[str, Any]]:
        """Conditions not refuted or entered in error; by default only clinically active ones."""
        out = []
        for c in self.of_type("Condition"):
            ver = _first_code(c.get("verificationStatus"))
            if ver in ("entered-in-error", "refuted"):
                continue
            if active_only:
                clin = _first_code(c.get("clinicalStatus"))
                if clin not in (None, "active", "recurrence", "relapse"):
                    continue
                if c.get("abatementDateTime") or c.get("abatementPeriod"):
                    continue
            out.append(c)
        return out

    def allergies(self) -> list[dict[str, Any]]:
        """Active, not refuted AllergyIntolerances."""
        out = []
        for a in self.of_type("AllergyIntolerance"):
            if _first_code(a.get("verificationStatus")) in ("entered-in-error", "refuted"):
                continue
            if _first_code(a.get("clinicalStatus")) in ("inactive", "resolved"):
                continue
            out.append(a)
        return out

    def procedures(self) -> list[dict[str, Any]]:
        return [p for p in self.valid("Procedure") if _status(p) != "not-done"]

    def immunizations(self) -> list[dict[str, Any]]:
        return [i for i in self.valid("Immunization") if _status(i) != "not-done"]

    def encounters(self) -> list[dict[str, Any]]:
        return self.valid("Encounter")

    def resolve(self, reference: str | None) -> dict[str, Any] | None:
        """The resource a relative reference (`Type/id`) points to, if the record holds it."""
        if not isinstance(reference, str) or "/" not in reference:
            return None
        rtype, _, rid = reference.rpartition("/")
        rtype = rtype.rsplit("/", 1)[-1]
        return next((r for r in self.of_type(rtype) if r.get("id") == rid), None)


def _first_code(concept: Any) -> str | None:
    if isinstance(concept, dict):
        for c in dicts(concept.get("coding")):
            if isinstance(c.get("code"), str):
                return c["code"]
    return None
