"""What a measure says about one patient: its population criteria and the evidence behind them.

Counts follow the proportion-measure hierarchy of the CQF measure evaluators (and MADiE's expected
results): the denominator is within the initial population, an excluded patient is not counted in
the numerator, and an exception only counts for a denominator patient who is neither excluded nor
in the numerator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cds.services.care_gaps.measures.period import Period

POPULATION_CODES = (
    "initial-population",
    "denominator",
    "denominator-exclusion",
    "numerator",
    "denominator-exception",
)
POPULATION_DISPLAY = {
    "initial-population": "Initial Population",
    "denominator": "Denominator",
    "denominator-exclusion": "Denominator Exclusion",
    "numerator": "Numerator",
    "denominator-exception": "Denominator Exception",
}


@dataclass(frozen=True, slots=True)
class Criteria:
    """The raw CQL results of one population group (None: the measure has no such population)."""

    initial_population: bool
    denominator: bool
    denominator_exclusion: bool
    numerator: bool
    denominator_exception: bool | None = None

    def counts(self) -> dict[str, int]:
        ip = self.initial_population
        den = ip and self.denominator
        denex = den and self.denominator_exclusion
        num = den and not denex and self.numerator
        out = {
            "initial-population": int(ip),
            "denominator": int(den),
            "denominator-exclusion": int(denex),
            "numerator": int(num),
        }
        if self.denominator_exception is not None:
            out["denominator-exception"] = int(den and not denex and not num and self.denominator_exception)
        return out


@dataclass(frozen=True, slots=True)
class Evidence:
    """The patient's last relevant test (or none), for the card's "why"."""

    label: str
    when: datetime | None = None
    value: str | None = None
    out_of_control: bool = False


@dataclass(frozen=True)
class MeasureResult:
    measure_id: str
    title: str
    measure_url: str
    period: Period
    groups: tuple[Criteria, ...]
    evidence: Evidence | None = None
    inverse: bool = False
    facts: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> list[dict[str, int]]:
        return [g.counts() for g in self.groups]

    @property
    def open_gap_groups(self) -> list[int]:
        """1-based groups where the patient has a gap: in the denominator, not excluded or excepted,
        and not in the numerator (in it, for an inverse measure)."""
        out = []
        for i, c in enumerate(self.counts(), 1):
            if not c["denominator"] or c["denominator-exclusion"] or c.get("denominator-exception"):
                continue
            if bool(c["numerator"]) == self.inverse:
                out.append(i)
        return out

    def to_json(self, patient_id: str | None) -> dict[str, Any]:
        """One line of `cds measure evaluate`: the measure and its population counts."""
        groups = self.counts()
        d: dict[str, Any] = {
            "patient": patient_id,
            "measure": self.measure_id,
            "period": {"start": self.period.start_date.isoformat(), "end": self.period.end_date.isoformat()},
        }
        if len(groups) == 1:
            d["populations"] = groups[0]
        else:
            d["groups"] = [{"group": i, "populations": g} for i, g in enumerate(groups, 1)]
        return d

    def to_measure_report(self, patient_id: str | None) -> dict[str, Any]:
        """An individual FHIR R4 MeasureReport with the same population codes."""
        report: dict[str, Any] = {
            "resourceType": "MeasureReport",
            "status": "complete",
            "type": "individual",
            "measure": self.measure_url,
            "period": {"start": self.period.start_date.isoformat(), "end": self.period.end_date.isoformat()},
            "group": [
                {
                    "population": [
                        {
                            "code": {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/measure-population",
                                        "code": code,
                                        "display": POPULATION_DISPLAY[code],
                                    }
                                ]
                            },
                            "count": n,
                        }
                        for code, n in g.items()
                    ]
                }
                for g in self.counts()
            ],
        }
        if patient_id:
            report["subject"] = {"reference": f"Patient/{patient_id}"}
        return report


def last_evidence(
    none_label: str, found: Sequence[tuple[datetime, str, str | None]], out_of_control: bool = False
) -> Evidence:
    """The newest of (time, label, value) candidates, or "none found" evidence."""
    if not found:
        return Evidence(label=none_label)
    when, label, value = max(found, key=lambda f: f[0])
    return Evidence(label=label, when=when, value=value, out_of_control=out_of_control)
