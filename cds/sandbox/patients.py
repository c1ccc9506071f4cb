"""Sample patients shipped with the sandbox, with their dates moved to today.

Each patient is a FHIR R4 Bundle in `patients/<id>.json` written as of its `Bundle.timestamp`
(the anchor). Loading shifts every full date and dateTime by the time between the anchor and now,
so "two hours ago" stays two hours ago next year and ages do not drift (birth dates move too).
Draft orders a clinician might sign for a patient live in `orders/<id>.json` (a Bundle of draft
requests); titles and descriptions for the page in `patients/catalog.yaml`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import yaml

from cds.fhir.dates import parse_datetime, utcnow

HERE = Path(__file__).resolve().parent
PATIENTS_DIR = HERE / "patients"
ORDERS_DIR = HERE / "orders"

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")


class UnknownPatient(KeyError):
    """No sample patient or draft order by that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown sample patient"


@dataclass(frozen=True)
class SamplePatient:
    id: str
    title: str
    description: str
    bundle: dict[str, Any]  # as stored (anchor dates)
    orders: tuple[dict[str, Any], ...]  # draft requests, as stored

    @property
    def anchor(self) -> datetime:
        anchor = parse_datetime(self.bundle.get("timestamp"))
        if anchor is None:
            raise ValueError(f"sample patient {self.id}: Bundle.timestamp (the anchor) is missing")
        return anchor

    def resources(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """The patient's resources with dates shifted so the anchor falls on `now`."""
        bundle = shift_dates(self.bundle, self.anchor, now or utcnow())
        return [e["resource"] for e in bundle.get("entry") or [] if isinstance(e.get("resource"), dict)]

    def draft_orders(self, ids: list[str] | None = None, now: datetime | None = None) -> list[dict[str, Any]]:
        """The draft orders with these ids (all when None), dates shifted like the record."""
        known = {o["id"]: o for o in self.orders}
        if ids is None:
            chosen = list(self.orders)
        else:
            missing = [i for i in ids if i not in known]
            if missing:
                raise UnknownPatient(
                    f"patient {self.id} has no draft order {', '.join(missing)} (known: {', '.join(known)})"
                )
            chosen = [known[i] for i in ids]
        return [shift_dates(o, self.anchor, now or utcnow()) for o in chosen]

    def summary(self) -> dict[str, Any]:
        """What the sandbox page lists: ids, titles and the orders to choose from."""
        patient = next((r for r in self.resources() if r.get("resourceType") == "Patient"), {})
        names = patient.get("name") or [{}]
        name = " ".join([*names[0].get("given", []), names[0].get("family", "")]).strip()
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "name": name,
            "gender": patient.get("gender"),
            "birthDate": patient.get("birthDate"),
            "orders": [{"id": o["id"], "label": order_label(o)} for o in self.orders],
        }


def order_label(order: dict[str, Any]) -> str:
    """A human label for a draft order: its medication or service text and dose."""
    concept = order.get("medicationCodeableConcept") or order.get("code") or {}
    text = concept.get("text") or next((c.get("display") for c in concept.get("coding") or []), order["id"])
    dosage = (order.get("dosageInstruction") or [{}])[0].get("text")
    return f"{text} — {dosage}" if dosage else str(text)


def _shift_value(value: str, delta: timedelta, days: timedelta) -> str:
    if _DATE.match(value):
        dt = parse_datetime(value)
        return (dt + days).date().isoformat() if dt else value
    if _DATETIME.match(value):
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        moved = (dt + delta).isoformat(timespec="seconds")
        return moved.replace("+00:00", "Z") if value.endswith("Z") else moved
    return value


def shift_dates(data: Any, anchor: datetime, now: datetime) -> Any:
    """A deep copy of `data` with every full FHIR date/dateTime moved by (now - anchor).

    dateTimes move by the exact interval (recent vitals stay recent); plain dates by whole days.
    """
    delta = now - anchor
    days = timedelta(days=(now.date() - anchor.date()).days)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            return _shift_value(node, delta, days)
        return node

    return walk(copy.deepcopy(data))


@lru_cache(maxsize=1)
def _catalog() -> dict[str, SamplePatient]:
    entries = yaml.safe_load((PATIENTS_DIR / "catalog.yaml").read_text())
    out: dict[str, SamplePatient] = {}
    for entry in entries:
        pid = entry["id"]
        bundle = orjson.loads((PATIENTS_DIR / f"{pid}.json").read_bytes())
        orders_file = ORDERS_DIR / f"{pid}.json"
        orders: tuple[dict[str, Any], ...] = ()
        if orders_file.exists():
            ob = orjson.loads(orders_file.read_bytes())
            orders = tuple(e["resource"] for e in ob.get("entry") or [])
        out[pid] = SamplePatient(
            id=pid,
            title=entry["title"],
            description=entry.get("description", "").strip(),
            bundle=bundle,
            orders=orders,
        )
    return out


def sample_patients() -> list[SamplePatient]:
    """All sample patients, in catalog order."""
    return list(_catalog().values())


def sample_patient(patient_id: str) -> SamplePatient:
    """One sample patient by id; UnknownPatient names the ones that exist."""
    try:
        return _catalog()[patient_id]
    except KeyError:
        raise UnknownPatient(f"no sample patient {patient_id!r} (known: {', '.join(_catalog())})") from None
