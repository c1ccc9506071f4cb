"""eICU-CRD demo -> FHIR R4: each ICU stay becomes a Patient, Observations (LOINC, UCUM) and Procedures.

Training then reads the stays through the service's own feature extractor, so the model learns
from exactly what a FHIR chart would give it. Times are synthetic but faithful in relative terms:
every stay starts at `T0` (ICU admission), eICU offsets are minutes after it, and the model scores
at T0 + 24 h. The APACHE worst-of-day values carry no time; they are charted at T0 + 12 h.

Source: eICU Collaborative Research Database demo v2.0 (Pollard et al., Sci Data 2018;5:180178;
PhysioNet), ODbL v1.0. Tables are gzip TSV; -1 in `apacheapsvar` means "not measured".
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cds.fhir.terminology import ICD10CM, LOINC, RXNORM, SNOMED, UCUM
from cds.services.deterioration.features import conditions_knowledge

T0 = datetime(2015, 7, 1, tzinfo=UTC)
SCORING_TIME = T0 + timedelta(hours=24)
APACHE_TIME = T0 + timedelta(hours=12)
FIRST_DAY_MINUTES = 24 * 60
TABLES = (
    "patient",
    "apacheapsvar",
    "apachepatientresult",
    "vitalaperiodic",
    "respiratorycharting",
    "pasthistory",
    "diagnosis",
    "infusiondrug",
)
ICD10_CODE = re.compile(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")

# apacheapsvar column -> (LOINC, display, UCUM unit). Units are those of the eICU documentation.
APACHE_OBSERVATIONS: dict[str, tuple[str, str, str]] = {
    "heartrate": ("8867-4", "Heart rate", "/min"),
    "respiratoryrate": ("9279-1", "Respiratory rate", "/min"),
    "meanbp": ("8478-0", "Mean blood pressure", "mm[Hg]"),
    "temperature": ("8310-5", "Body temperature", "Cel"),
    "sodium": ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L"),
    "creatinine": ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL"),
    "bun": ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL"),
    "glucose": ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL"),
    "wbc": ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL"),
    "hematocrit": ("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "%"),
    "bilirubin": ("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "mg/dL"),
    "albumin": ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL"),
    "ph": ("2744-1", "pH of Arterial blood", "[pH]"),
    "pao2": ("2703-7", "Oxygen [Partial pressure] in Arterial blood", "mm[Hg]"),
    "pco2": ("2019-8", "Carbon dioxide [Partial pressure] in Arterial blood", "mm[Hg]"),
    "fio2": ("3150-0", "Inhaled oxygen concentration", "%"),
}
VITAL_CODES = {"8867-4", "9279-1", "8478-0", "8310-5", "3150-0"}
GCS_COMPONENTS = {
    "eyes": ("9267-6", "Glasgow coma score eye opening"),
    "verbal": ("9270-0", "Glasgow coma score verbal"),
    "motor": ("9268-4", "Glasgow coma score motor"),
}
PROCEDURES = {
    "vent": ("40617009", "Artificial respiration"),
    "intubated": ("112798008", "Insertion of endotracheal tube"),
    "dialysis": ("108241001", "Dialysis procedure"),
}
RESPIRATORY_CHARTING = {
    "SaO2": ("2708-6", "Oxygen saturation in Arterial blood", "%"),
    "FiO2": ("3150-0", "Inhaled oxygen concentration", "%"),
    "LPM O2": ("3151-8", "Inhaled oxygen flow rate", "L/min"),
}


@dataclass(frozen=True)
class Stay:
    """One ICU stay as FHIR, with what training needs beside it."""

    stay_id: str
    hospital_id: str
    died: int
    apache_iva: float | None
    resources: list[dict[str, Any]]


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _observation(
    rid: str,
    patient: str,
    code: str,
    display: str,
    category: str,
    t: datetime,
    value: float | None = None,
    unit: str | None = None,
    components: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": _iso(t),
    }
    if value is not None:
        obs["valueQuantity"] = _quantity(value, unit or "1")
    if components:
        obs["component"] = components
    return obs


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _component(code: str, display: str, value: float, unit: str) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        "valueQuantity": _quantity(value, unit),
    }


def data_sha256(data_dir: Path) -> str:
    """SHA-256 over the tables training reads (name and content, in a fixed order)."""
    h = hashlib.sha256()
    for table in TABLES:
        path = Path(data_dir) / f"{table}.tsv.gz"
        h.update(table.encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _read(data_dir: Path, table: str) -> Any:
    import pandas as pd

    path = Path(data_dir) / f"{table}.tsv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"eICU table {table} not found: {path}")
    return pd.read_csv(path, sep="\t", compression="gzip", low_memory=False)


def stays(data_dir: Path | str) -> Iterator[Stay]:
    """Every stay with first-day APACHE values and a known hospital outcome, as FHIR resources."""
    data_dir = Path(data_dir)
    patient = _read(data_dir, "patient")
    aps = _read(data_dir, "apacheapsvar").drop_duplicates("patientunitstayid").set_index("patientunitstayid")
    result = _read(data_dir, "apachepatientresult")
    iva = result[result["apacheversion"] == "IVa"].drop_duplicates("patientunitstayid")
    iva = iva.set_index("patientunitstayid")["predictedhospitalmortality"]

    vitals = _read(data_dir, "vitalaperiodic")
    vitals = vitals[(vitals["observationoffset"] >= 0) & (vitals["observationoffset"] <= FIRST_DAY_MINUTES)]
    vitals_by_stay = {k: g for k, g in vitals.groupby("patientunitstayid")}
    resp = _read(data_dir, "respiratorycharting")
    resp = resp[
        resp["respchartvaluelabel"].isin(list(RESPIRATORY_CHARTING))
        & (resp["respchartoffset"] >= 0)
        & (resp["respchartoffset"] <= FIRST_DAY_MINUTES)
    ]
    resp_by_stay = {k: g for k, g in resp.groupby("patientunitstayid")}

    history = _read(data_dir, "pasthistory")
    history = history[history["pasthistoryoffset"] <= FIRST_DAY_MINUTES]
    history_by_stay = {k: g for k, g in history.groupby("patientunitstayid")}
    dx = _read(data_dir, "diagnosis")
    dx = dx[(dx["diagnosisoffset"] <= FIRST_DAY_MINUTES) & dx["icd9code"].notna()]
    dx_by_stay = {k: g for k, g in dx.groupby("patientunitstayid")}
    drugs = _read(data_dir, "infusiondrug")
    drugs = drugs[(drugs["infusionoffset"] >= 0) & (drugs["infusionoffset"] <= FIRST_DAY_MINUTES)]
    drugs_by_stay = {k: g for k, g in drugs.groupby("patientunitstayid")}

    patient = patient[patient["hospitaldischargestatus"].isin(["Alive", "Expired"])]
    patient = patient[patient["patientunitstayid"].isin(aps.index)].sort_values("patientunitstayid")
    for row in patient.itertuples(index=False):
        sid = int(row.patientunitstayid)
        pred = _number(iva.get(sid))
        yield Stay(
            stay_id=str(sid),
            hospital_id=str(row.hospitalid),
            died=int(row.hospitaldischargestatus == "Expired"),
            apache_iva=pred if pred is not None and 0 <= pred <= 1 else None,
            resources=_stay_resources(sid, row, aps.loc[sid], vitals_by_stay.get(sid), resp_by_stay.get(sid))
            + _conditions(sid, history_by_stay.get(sid), dx_by_stay.get(sid))
            + _infusions(sid, drugs_by_stay.get(sid)),
        )


def _condition(rid: str, pid: str, system: str, code: str, text: str, minutes: int) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {"coding": [{"system": system, "code": code}], "text": text},
        "subject": {"reference": f"Patient/{pid}"},
        "recordedDate": _iso(T0 + timedelta(minutes=minutes)),
    }


def _conditions(sid: int, history: Any, dx: Any) -> list[dict[str, Any]]:
    """Past history as SNOMED CT Conditions (one per category), first-day diagnoses as ICD-10-CM."""
    pid, out = str(sid), []
    if history is not None:
        cats = conditions_knowledge()["categories"]
        seen: set[str] = set()
        for h in history.itertuples(index=False):
            path = str(h.pasthistorypath)
            for name, cat in cats.items():
                if name not in seen and any(k in path for k in cat.get("eicu_pasthistory", ())):
                    seen.add(name)
                    out.append(
                        _condition(
                            f"{pid}-ph-{name}",
                            pid,
                            SNOMED,
                            cat["snomed"][0],
                            cat["label"],
                            int(h.pasthistoryoffset),
                        )
                    )
    if dx is not None:
        for d in dx.itertuples(index=False):
            code = str(d.icd9code).split(",")[-1].strip()
            if ICD10_CODE.match(code) and not re.match(r"^E[0-9]{3}", code):
                text = str(d.diagnosisstring).split("|")[-1]
                out.append(
                    _condition(f"{pid}-dx-{d.diagnosisid}", pid, ICD10CM, code, text, int(d.diagnosisoffset))
                )
    return out


def _infusions(sid: int, drugs: Any) -> list[dict[str, Any]]:
    """Vasoactive infusions as MedicationAdministrations coded with the RxNorm ingredient."""
    pid = str(sid)
    out: list[dict[str, Any]] = []
    if drugs is None:
        return out
    by_name = {v: k for k, v in conditions_knowledge()["vasoactive"]["rxnorm"].items()}
    for d in drugs.itertuples(index=False):
        name = str(d.drugname).lower()
        agent = next((a for a in by_name if a in name), None)
        if agent is None:
            continue
        out.append(
            {
                "resourceType": "MedicationAdministration",
                "id": f"{pid}-inf-{d.infusiondrugid}",
                "status": "in-progress",
                "medicationCodeableConcept": {
                    "coding": [{"system": RXNORM, "code": by_name[agent], "display": agent}]
                },
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": _iso(T0 + timedelta(minutes=int(d.infusionoffset))),
            }
        )
    return out


def _stay_resources(sid: int, row: Any, aps: Any, vitals: Any, resp: Any) -> list[dict[str, Any]]:
    pid = str(sid)
    out: list[dict[str, Any]] = []
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "gender": {"Male": "male", "Female": "female"}.get(row.gender, "unknown"),
    }
    age = str(row.age).strip()
    years = 90 if age.startswith(">") else _number(age)
    if years is not None:
        patient["birthDate"] = f"{SCORING_TIME.year - int(years):04d}-01-01"
    out.append(patient)

    for col, (code, display, unit) in APACHE_OBSERVATIONS.items():
        v = _number(aps[col])
        if v is None or v == -1:
            continue
        category = "vital-signs" if code in VITAL_CODES else "laboratory"
        out.append(_observation(f"{pid}-aps-{col}", pid, code, display, category, APACHE_TIME, v, unit))

    urine = _number(aps["urine"])
    if urine is not None and urine != -1:
        obs = _observation(
            f"{pid}-aps-urine", pid, "9187-6", "Urine output", "vital-signs", SCORING_TIME, urine, "mL"
        )
        del obs["effectiveDateTime"]
        obs["effectivePeriod"] = {"start": _iso(T0), "end": _iso(SCORING_TIME)}
        out.append(obs)

    gcs = [(GCS_COMPONENTS[c], _number(aps[c])) for c in ("eyes", "verbal", "motor")]
    parts = [_component(code, disp, v, "{score}") for (code, disp), v in gcs if v is not None and v > 0]
    if parts:
        out.append(
            _observation(
                f"{pid}-aps-gcs",
                pid,
                "35088-4",
                "Glasgow coma scale panel",
                "survey",
                APACHE_TIME,
                components=parts,
            )
        )

    for col, (code, display) in PROCEDURES.items():
        if _number(aps[col]) == 1:
            out.append(
                {
                    "resourceType": "Procedure",
                    "id": f"{pid}-{col}",
                    "status": "in-progress",
                    "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
                    "subject": {"reference": f"Patient/{pid}"},
                    "performedPeriod": {"start": _iso(APACHE_TIME)},
                }
            )

    if vitals is not None:
        for v in vitals.itertuples(index=False):
            sbp, dbp = _number(v.noninvasivesystolic), _number(v.noninvasivediastolic)
            if sbp is None or dbp is None:
                continue
            t = T0 + timedelta(minutes=int(v.observationoffset))
            out.append(
                _observation(
                    f"{pid}-bp-{v.vitalaperiodicid}",
                    pid,
                    "85354-9",
                    "Blood pressure panel",
                    "vital-signs",
                    t,
                    components=[
                        _component("8480-6", "Systolic blood pressure", sbp, "mm[Hg]"),
                        _component("8462-4", "Diastolic blood pressure", dbp, "mm[Hg]"),
                    ],
                )
            )

    if resp is not None:
        for r in resp.itertuples(index=False):
            value = _number(str(r.respchartvalue).rstrip("%").strip())
            if value is None:
                continue
            code, display, unit = RESPIRATORY_CHARTING[r.respchartvaluelabel]
            t = T0 + timedelta(minutes=int(r.respchartoffset))
            out.append(
                _observation(f"{pid}-resp-{r.respchartid}", pid, code, display, "vital-signs", t, value, unit)
            )
    return out
