"""Label dosing: boundary sweeps of enoxaparin, the DOACs, metformin and the gabapentinoids at CrCl and
eGFR edges, with and without weight, against a reference implementation of the label rules written
here from the labels (not from dosing.json), through the order-sign path.

Labels: Lovenox 2.3; Eliquis 2.2; Xarelto 2.2-2.3; Pradaxa 2.2-2.4; Savaysa 2.1-2.3; metformin 2.3 and
4; Neurontin 2.4 table 1; Lyrica 2.6 table 2. CrCl is Cockcroft-Gault with actual body weight.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from cds.hooks.service import ServiceLoadError
from cds.runtime.settings import Settings
from cds.services.medication_risk.egfr import cockcroft_gault
from cds.services.medication_risk.knowledge import KB_DIR
from cds.services.medication_risk.patient import kidney_number
from cds.services.medication_risk.service import MedicationRiskService
from tests.medication.conftest import draft, egfr, med, obs, run

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
AF = [{"coding": [{"system": ICD, "code": "I48.91"}]}]
DVT = [{"coding": [{"system": ICD, "code": "I82.409"}]}]
CODED = {"af": AF, "vte_treatment": DVT, None: None}

# SCDs a one-click dose change may order (VSAC value sets, see dosing.json)
SYRINGES = [(30, "854228"), (40, "854235"), (60, "854238"), (80, "854241"), (100, "854248"), (120, "854245")]
SYRINGES += [(150, "854252")]
TABLETS = {
    ("apixaban", 2.5): "1364435",
    ("rivaroxaban", 15.0): "1232082",
    ("dabigatran", 75.0): "1037179",
    ("edoxaban", 30.0): "1599551",
}
INGREDIENT = {
    "enoxaparin": "67108",
    "apixaban": "1364430",
    "rivaroxaban": "1114195",
    "dabigatran": "1037042",
    "edoxaban": "1599538",
    "metformin": "6809",
    "gabapentin": "25480",
    "pregabalin": "187832",
}


# --- the reference: label rules, written out ------------------------------------------------------
def ref_cg(scr: float, age: int, weight: float, female: bool) -> float:
    crcl = (140 - age) * weight / (72 * scr)
    return crcl * 0.85 if female else crcl


def ref_indications(drug: str, mg: float, n: float) -> list[str]:
    """What the ordered regimen can be for, per the labels' dosage tables."""
    table: dict[str, list[tuple[Any, list[str]]]] = {
        "enoxaparin": [(lambda: mg <= 40, ["vte_prophylaxis"]), (lambda: mg > 40, ["vte_treatment"])],
        "apixaban": [
            (lambda: mg >= 10 and n == 2, ["vte_treatment"]),
            (lambda: mg == 5 and n == 2, ["af", "vte_treatment"]),
            (lambda: mg == 2.5 and n == 2, ["af", "vte_prophylaxis"]),
        ],
        "rivaroxaban": [
            (lambda: mg == 15 and n == 2, ["vte_treatment"]),
            (lambda: mg == 20 and n == 1, ["af", "vte_treatment"]),
            (lambda: mg == 15 and n == 1, ["af"]),
            (lambda: mg == 10 and n == 1, ["vte_prophylaxis"]),
        ],
        "dabigatran": [
            (lambda: mg == 150 and n == 2, ["af", "vte_treatment"]),
            (lambda: mg == 75 and n == 2, ["af"]),
            (lambda: mg <= 110 and n == 1, ["vte_prophylaxis"]),
        ],
        "edoxaban": [(lambda: mg in (30, 60) and n == 1, ["af", "vte_treatment"])],
    }
    for cond, ids in table[drug]:
        if cond():
            return ids
    return {
        "enoxaparin": ["vte_prophylaxis", "vte_treatment"],
        "apixaban": ["af", "vte_prophylaxis", "vte_treatment"],
        "rivaroxaban": ["af", "vte_prophylaxis", "vte_treatment"],
        "dabigatran": ["af", "vte_prophylaxis", "vte_treatment"],
        "edoxaban": ["af", "vte_treatment"],
    }[drug]


def ref_label(drug: str, ind: str, kid: float, p: dict[str, Any]) -> tuple | None:
    """None (the label has nothing to change), ("avoid",) or ("target", mg, per_day)."""
    w, age, scr = p["weight"], p["age"], p["scr"]
    if drug == "enoxaparin" and kid < 30:
        if ind == "vte_treatment":
            return ("target", round(w) if w else None, 1)
        if ind == "vte_prophylaxis":
            return ("target", 30, 1)
    if drug == "apixaban" and ind == "af" and sum((age >= 80, w is not None and w <= 60, scr >= 1.5)) >= 2:
        return ("target", 2.5, 2)
    if drug == "rivaroxaban":
        if kid < 15:
            return ("avoid",)
        if ind == "af" and kid <= 50:
            return ("target", 15, 1)
    if drug == "dabigatran":
        if ind == "af":
            if kid < 15:
                return ("avoid",)
            if kid <= 30:
                return ("target", 75, 2)
        elif kid <= 30:
            return ("avoid",)
    if drug == "edoxaban":
        if kid < 15:
            return ("avoid",)
        if kid <= 50:
            return ("target", 30, 1)
        if ind == "af" and kid > 95:
            return ("avoid",)
        if ind == "vte_treatment" and w is not None and w <= 60:
            return ("target", 30, 1)
    return None


def ref_outcome(drug: str, mg: float, n: float, coded: str | None, p: dict[str, Any]) -> tuple:
    """("none",), ("card",) (a card without a one-click dose change) or ("update", mg, per_day, rxcui)."""
    exact = p["weight"] is not None
    kid = ref_cg(p["scr"], p["age"], p["weight"], p["female"]) if exact else p["egfr"]
    from_regimen = ref_indications(drug, mg, n)
    if coded is None:
        cands, settled = from_regimen, len(from_regimen) == 1
    elif coded in from_regimen:
        cands, settled = [coded], True
    else:
        cands, settled = sorted({coded, *from_regimen}), False
    outcomes = []
    for ind in cands:
        o = ref_label(drug, ind, kid, p)
        if o and o[0] == "target" and o[1] is not None and mg * n <= o[1] * o[2] * 1.1 and n <= o[2]:
            o = None  # the order already follows the label
        outcomes.append(o)
    hits = [o for o in outcomes if o]
    if not hits:
        # criteria the chart cannot answer (no weight) that could change the dose: said, not silent
        w_unknown = p["weight"] is None
        if drug == "edoxaban" and "vte_treatment" in cands and w_unknown and kid >= 15 and mg * n > 30 * 1.1:
            return ("card",)
        possible = (p["age"] >= 80) + (p["scr"] >= 1.5) >= 1
        if drug == "apixaban" and "af" in cands and w_unknown and possible and mg * n > 2.5 * 2 * 1.1:
            return ("card",)
        return ("none",)
    o = hits[0]
    if not settled or o[0] == "avoid" or o[1] is None:
        return ("card",)
    kidney_band = drug != "apixaban"
    if kidney_band and not exact:
        return ("card",)
    if drug == "enoxaparin":
        rxcui = next((c for s, c in SYRINGES if s >= o[1]), None)
    else:
        rxcui = TABLETS.get((drug, float(o[1])))
    if rxcui is None:
        return ("card",)
    return ("update", float(o[1]), float(o[2]), rxcui)


# --- the service -----------------------------------------------------------------------------------
def order(drug: str, mg: float, per_day: float, coded: str | None) -> dict[str, Any]:
    dosage = {
        "text": f"{mg:g} mg",
        "timing": {"repeat": {"frequency": int(per_day), "period": 1, "periodUnit": "d"}},
        "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg", "code": "mg"}}],
    }
    extra: dict[str, Any] = {"dosageInstruction": [dosage]}
    if CODED[coded]:
        extra["reasonCode"] = CODED[coded]
    return draft("d1", INGREDIENT[drug], text=drug, **extra)


def labs(p: dict[str, Any]) -> list[dict[str, Any]]:
    out = [obs("2160-0", p["scr"], "mg/dL"), egfr(p["egfr"])]  # reported eGFR wins over computed on a tie
    if p["weight"] is not None:
        out.append(obs("29463-7", p["weight"], "kg"))
    return out


def service_outcome(service, drug: str, mg: float, n: float, coded: str | None, p: dict[str, Any]) -> tuple:
    cards = run(
        service,
        [order(drug, mg, n, coded)],
        active=labs(p),
        age=p["age"],
        sex="female" if p["female"] else "male",
    )
    mine = [c for c in cards if f"renal:{drug}" in (c.kind, *c.detail.split("`")) or c.kind == f"dose:{drug}"]
    mine += [c for c in cards if f"`dose:{drug}`" in (c.detail or "") and c not in mine]
    if not mine:
        return ("none",)
    updates = [a.resource for s in mine[0].suggestions for a in s.actions if a.type == "update"]
    if not updates:
        return ("card",)
    res = updates[0]
    dose = res["dosageInstruction"][0]
    rep = dose["timing"]["repeat"]
    per_day = rep["frequency"] * (24 / rep["period"] if rep["periodUnit"] == "h" else 1 / rep["period"])
    return (
        "update",
        float(dose["doseAndRate"][0]["doseQuantity"]["value"]),
        float(per_day),
        res["medicationCodeableConcept"]["coding"][0]["code"],
    )


def patient_at(crcl: float, age: int, weight: float, female: bool) -> float:
    """The serum creatinine (2 decimals) that puts Cockcroft-Gault nearest a target CrCl."""
    return round((140 - age) * weight * (0.85 if female else 1) / (72 * crcl), 2)


CRCL_EDGES = [10, 14.5, 15.5, 25, 29.5, 30.5, 45, 49.5, 50.5, 55, 60, 90, 96, 110]
EGFR_EDGES = [14.9, 15, 29.9, 30, 30.1, 44.9, 45, 49.9, 50, 50.1, 95, 95.1]
REGIMENS = {
    "enoxaparin": [(40, 1), (30, 2), (80, 2), (120, 1), (60, 1)],
    "apixaban": [(5, 2), (2.5, 2), (10, 2)],
    "rivaroxaban": [(20, 1), (15, 1), (15, 2), (10, 1)],
    "dabigatran": [(150, 2), (75, 2), (110, 1)],
    "edoxaban": [(60, 1), (30, 1)],
}


def _cases_with_weight():
    for drug, regs in REGIMENS.items():
        for (mg, n), coded, crcl, (age, weight, female) in itertools.product(
            regs, (None, "af", "vte_treatment"), CRCL_EDGES, ((55, 80.0, False), (82, 55.0, True))
        ):
            yield drug, mg, n, coded, crcl, age, weight, female


@pytest.mark.parametrize(
    ("drug", "mg", "n", "coded", "crcl", "age", "weight", "female"), list(_cases_with_weight())
)
def test_anticoagulant_dose_with_weight_matches_the_labels(
    service, drug, mg, n, coded, crcl, age, weight, female
):
    scr = patient_at(crcl, age, weight, female)
    p = {"scr": scr, "age": age, "weight": weight, "female": female, "egfr": 200.0}
    assert service_outcome(service, drug, mg, n, coded, p) == ref_outcome(drug, mg, n, coded, p)


@pytest.mark.parametrize(
    ("drug", "mg", "n", "coded", "value"),
    [
        (drug, mg, n, coded, value)
        for drug, regs in REGIMENS.items()
        for (mg, n) in regs
        for coded in (None, "af", "vte_treatment")
        for value in EGFR_EDGES
    ],
)
def test_anticoagulant_dose_without_weight_falls_back_to_egfr_and_never_updates(
    service, drug, mg, n, coded, value
):
    p = {"scr": 1.2, "age": 60, "weight": None, "female": False, "egfr": value}
    got = service_outcome(service, drug, mg, n, coded, p)
    assert got == ref_outcome(drug, mg, n, coded, p)
    assert got[0] != "update" or drug == "apixaban"  # a CrCl label threshold met by eGFR is a review


def test_fallback_card_says_egfr_stands_in_for_crcl(service) -> None:
    cards = run(service, [order("rivaroxaban", 20, 1, "af")], active=[egfr(40), obs("2160-0", 1.8, "mg/dL")])
    assert "Creatinine clearance could not be computed (no body weight" in cards[0].detail
    assert "eGFR 40 mL/min/1.73 m2" in cards[0].detail and "stands in for it" in cards[0].detail


def test_obesity_notes_adjusted_body_weight(service) -> None:
    # 150 kg, 170 cm man: IBW 66 kg; CrCl with actual weight is the label's, the adjusted value is noted
    cards = run(
        service,
        [order("enoxaparin", 150, 2, "vte_treatment")],
        active=[obs("2160-0", 6.0, "mg/dL"), obs("29463-7", 150, "kg"), obs("8302-2", 170, "cm")],
        age=60,
        sex="male",
    )
    expected = cockcroft_gault(6.0, 60, 150, female=False)
    assert expected < 30
    assert (
        f"CrCl {kidney_number(expected)} mL/min (Cockcroft-Gault with actual body weight 150.0 kg"
        in cards[0].detail
    )
    assert (
        "adjusted body weight" in cards[0].detail and "120% of ideal body weight (66 kg)" in cards[0].detail
    )
    update = [a.resource for s in cards[0].suggestions for a in s.actions if a.type == "update"]
    assert (
        update and update[0]["medicationCodeableConcept"]["coding"][0]["code"] == "854252"
    )  # 150 mg syringe


# --- metformin (eGFR label) and gabapentinoids (CrCl ranges) --------------------------------------
def ref_metformin(value: float, continuing: bool) -> str:
    if value < 30:
        return "contraindicated"
    if value < 45:
        return "moderate" if continuing else "major"
    return "none"


@pytest.mark.parametrize("value", [10, 29.9, 30, 30.1, 44.9, 45, 45.1, 60])
@pytest.mark.parametrize("continuing", [False, True])
@pytest.mark.parametrize("weight", [None, 70.0])
def test_metformin_egfr_edges(service, value, continuing, weight) -> None:
    active = [egfr(value)] + ([obs("29463-7", weight, "kg"), obs("2160-0", 1.0, "mg/dL")] if weight else [])
    if continuing:
        active.append(med("m1", "861007", "metformin hydrochloride 500 MG Oral Tablet"))
    cards = run(service, [draft("d1", "861007", "metformin hydrochloride 500 MG Oral Tablet")], active=active)
    expected = ref_metformin(value, continuing)
    card = next((c for c in cards if c.kind == "renal:metformin"), None)
    if expected == "none":
        assert card is None
        return
    assert card is not None
    assert {"contraindicated": "Contraindicated", "major": "Major", "moderate": "Moderate"}[
        expected
    ] in card.detail
    assert not [a for s in card.suggestions for a in s.actions if a.type == "update"]  # never a dose update
    assert (
        f"eGFR {kidney_number(value)}" in card.summary
    )  # the label's measure is eGFR, even when CrCl is known
    if expected == "major":
        assert "not recommended" in card.detail  # do not start at eGFR 30-44


GABA_MAX = {  # label maximum daily dose by CrCl band (upper bound exclusive)
    "gabapentin": [(15, 300), (30, 700), (60, 1400)],
    "pregabalin": [(15, 75), (30, 150), (60, 300)],
}
GABA_REGIMENS = {
    "gabapentin": [(100, 3), (300, 1), (300, 2), (300, 3), (600, 3)],
    "pregabalin": [(25, 1), (75, 1), (75, 2), (150, 2), (300, 2)],
}


def ref_gaba(drug: str, kid: float, daily: float) -> str:
    for below, top in GABA_MAX[drug]:
        if kid < below:
            return "card" if daily > top else "none"
    return "none"


@pytest.mark.parametrize("drug", ["gabapentin", "pregabalin"])
@pytest.mark.parametrize("crcl", [10, 14.5, 15.5, 29.5, 30.5, 59.5, 60.5, 90])
@pytest.mark.parametrize("with_weight", [True, False])
def test_gabapentinoid_crcl_bands(service, drug, crcl, with_weight) -> None:
    for mg, n in GABA_REGIMENS[drug]:
        if with_weight:
            scr = patient_at(crcl, 60, 70.0, False)
            kid = ref_cg(scr, 60, 70.0, False)
            active = [obs("2160-0", scr, "mg/dL"), obs("29463-7", 70.0, "kg"), egfr(200)]
        else:
            kid = crcl
            active = [egfr(crcl)]
        o = order(drug, mg, n, None)
        cards = run(service, [o], active=active, age=60, sex="male")
        got = "card" if any(c.kind == f"renal:{drug}" for c in cards) else "none"
        assert got == ref_gaba(drug, kid, mg * n), (mg, n, kid)
        for c in cards:  # a range is never applied in one click
            assert not [a for s in c.suggestions for a in s.actions if a.type == "update"]
            assert ("CrCl" in c.summary) is with_weight


def test_shown_kidney_values_never_cross_a_threshold() -> None:
    # thresholds sit on multiples of 5: the number on the card is on the same side of each as the value
    for i in range(0, 15000):
        value = i / 97
        shown = float(kidney_number(value))
        for m in range(0, 160, 5):
            assert (value < m) == (shown < m) and (value > m) == (shown > m), (value, shown, m)


def _broken_dosing(tmp_path, edit) -> Path:
    d = tmp_path / "kb"
    shutil.copytree(KB_DIR, d)
    doc = json.loads((d / "dosing.json").read_text())
    edit(doc)
    (d / "dosing.json").write_text(json.dumps(doc))
    return d


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda doc: doc["drugs"][0].update(ingredient="999999999"), "is not in ingredients.csv"),
        (lambda doc: doc["drugs"][0].update(measure="bsa"), "measure must be crcl or egfr"),
        (lambda doc: doc["drugs"][0]["regimens"][0].update(indication="gout"), "unknown indication 'gout'"),
        (
            lambda doc: doc["drugs"][0]["indications"]["vte_prophylaxis"][0].update(products=["nope"]),
            "unknown product",
        ),
        (lambda doc: doc["drugs"][0].update(citation=["no_such_source"]), "citation missing"),
        (lambda doc: doc["products"]["apixaban-2.5"].pop("source"), "needs an RxCUI, a display and a source"),
    ],
)
def test_invalid_dosing_knowledge_stops_the_service_with_a_message(tmp_path, edit, message) -> None:
    d = _broken_dosing(tmp_path, edit)
    with pytest.raises(ServiceLoadError, match=re.escape(message)):
        MedicationRiskService.from_settings(
            Settings(services={"medication-risk": {"knowledge_dir": str(d)}})
        ).load()


def test_malformed_dosing_entry_is_a_clean_load_error(tmp_path) -> None:
    d = _broken_dosing(
        tmp_path, lambda doc: doc["drugs"][1]["indications"]["af"][0]["criteria"]["of"][0].pop("op")
    )
    # Decoded against its declaration (knowledge_files.DosingFile): the message names the entry and path.
    with pytest.raises(
        ServiceLoadError,
        match=r"dosing.json: apixaban af: object missing required field `op` "
        r"\(at \$\.drugs\[1\]\.indications\['af'\]\[0\]\.criteria\.of\[0\]\)",
    ):
        MedicationRiskService.from_settings(
            Settings(services={"medication-risk": {"knowledge_dir": str(d)}})
        ).load()


def test_gabapentin_without_a_readable_dose_asks_to_check_it(service) -> None:
    cards = run(service, [draft("d1", "25480", text="gabapentin")], active=[egfr(20)])
    assert cards[0].kind == "renal:gabapentin"
    assert "check the dose: label maximum 700 mg a day" in cards[0].summary
    assert "could not be read" in cards[0].detail


@pytest.mark.parametrize(("code", "value", "unit"), [("2160-0", 3.0, "mg/dL"), ("14682-9", 265.2, "umol/L")])
def test_creatinine_in_micromoles_counts_like_mass_concentration(service, code, value, unit) -> None:
    """Creatinine reported as LOINC 14682-9 in µmol/L (most labs outside the US) reads as the same
    kidney function as 2160-0 in mg/dL (265.2 µmol/L = 3.0 mg/dL at 88.4 µmol/L per mg/dL)."""
    active = [obs(code, value, unit), obs("29463-7", 70.0, "kg")]
    cards = run(service, [order("enoxaparin", 80, 2, "vte_treatment")], active=active, age=70, sex="male")
    expected = cockcroft_gault(3.0, 70, 70.0, female=False)
    assert expected < 30
    assert any(f"CrCl {kidney_number(expected)} mL/min" in c.detail for c in cards), [c.detail for c in cards]
