"""Small builders of FHIR resources for the deterioration tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
_n = iter(range(1, 10**9))


def at(hours_ago: float, now: datetime = NOW) -> str:
    return (now - timedelta(hours=hours_ago)).isoformat()


def qty(value: float, unit: str | None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if unit is not None:
        q.update(unit=unit, system=UCUM, code=unit)
    return q


def component(code: str, value: float, unit: str | None) -> dict[str, Any]:
    return {"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": qty(value, unit)}


def obs(
    code: str,
    value: float | None = None,
    unit: str | None = None,
    hours_ago: float = 1.0,
    status: str = "final",
    components: list[dict[str, Any]] | None = None,
    now: datetime = NOW,
    patient: str = "p1",
    **extra: Any,
) -> dict[str, Any]:
    o: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"o{next(_n)}",
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": at(hours_ago, now),
    }
    if value is not None:
        o["valueQuantity"] = qty(value, unit)
    if components:
        o["component"] = components
    o.update(extra)
    return o


def bp_panel(
    sbp: float, dbp: float, hours_ago: float = 1.0, code: str = "85354-9", **kw: Any
) -> dict[str, Any]:
    return obs(
        code,
        hours_ago=hours_ago,
        components=[component("8480-6", sbp, "mm[Hg]"), component("8462-4", dbp, "mm[Hg]")],
        **kw,
    )


def patient(pid: str = "p1", gender: str = "male", birth: str = "1944-01-01") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth}


def procedure(
    code: str,
    status: str = "in-progress",
    start_hours_ago: float = 5.0,
    now: datetime = NOW,
    end_hours_ago: float | None = None,
) -> dict[str, Any]:
    period = {"start": at(start_hours_ago, now)}
    if end_hours_ago is not None:
        period["end"] = at(end_hours_ago, now)
    return {
        "resourceType": "Procedure",
        "id": f"pr{next(_n)}",
        "status": status,
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "performedPeriod": period,
    }


def sick_patient(now: datetime = NOW) -> list[dict[str, Any]]:
    """A fixed deteriorating patient: tachypnoeic, hypoxic, hypotensive, febrile, raised creatinine."""
    return [
        patient(),
        obs("8867-4", 128, "/min", 1, now=now),
        obs("9279-1", 26, "/min", 1, now=now),
        obs("59408-5", 90, "%", 1, now=now),
        bp_panel(88, 50, 1, now=now),
        obs("8310-5", 101.5, "[degF]", 2, now=now),
        obs("2160-0", 221, "umol/L", 5, now=now),
        obs("6690-2", 18, "10*3/uL", 5, now=now),
        obs("9269-2", 14, "{score}", 3, now=now),
    ]


def well_patient(now: datetime = NOW) -> list[dict[str, Any]]:
    return [
        patient(birth="1990-06-01", gender="female"),
        obs("8867-4", 72, "/min", 1, now=now),
        obs("9279-1", 14, "/min", 1, now=now),
        obs("59408-5", 98, "%", 1, now=now),
        bp_panel(124, 78, 1, now=now),
        obs("8310-5", 36.8, "Cel", 1, now=now),
    ]
