"""The six case findings of issue 14 (a hospital pharmacist's order-sign cases), as regression tests
through the order-sign path."""

from __future__ import annotations

import re
from typing import Any

import pytest

from cds.services.medication_risk.patient import kidney_number
from tests.medication.conftest import allergy, condition, draft, egfr, med, obs, potassium, run

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
ENOX_80 = ("854241", "0.8 ML enoxaparin sodium 100 MG/ML Prefilled Syringe")


def dosage(mg: float, every_hours: int, text: str) -> list[dict[str, Any]]:
    return [
        {
            "text": text,
            "timing": {"repeat": {"frequency": 1, "period": every_hours, "periodUnit": "h"}},
            "route": {"text": "subcutaneous"},
            "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg", "code": "mg"}}],
        }
    ]


def updates(card) -> list[dict[str, Any]]:
    return [a.resource for s in card.suggestions for a in s.actions if a.type == "update"]


# 1. Enoxaparin treatment dose at eGFR 22 ---------------------------------------------------------
def _enox_dvt() -> dict[str, Any]:
    return draft(
        "d1",
        *ENOX_80,
        dosageInstruction=dosage(80, 12, "80 mg subcutaneously every 12 hours"),
        reasonCode=[{"coding": [{"system": ICD, "code": "I82.401", "display": "DVT of right leg"}]}],
    )


@pytest.mark.parametrize(("weight", "mg", "rxcui"), [(80.0, 80, "854241"), (58.0, 58, "854238")])
def test_case1_enoxaparin_treatment_at_egfr_22_is_1_mg_per_kg_daily(service, weight, mg, rxcui) -> None:
    scr = 2.6
    cards = run(
        service,
        [_enox_dvt()],
        active=[egfr(22), obs("2160-0", scr, "mg/dL"), obs("29463-7", weight, "kg")],
        age=70,
        sex="male",
    )
    assert len(cards) == 1
    card = cards[0]
    crcl = (140 - 70) * weight / (72 * scr)
    assert crcl < 30
    assert f"CrCl {kidney_number(crcl)} mL/min" in card.summary
    assert f"actual body weight {weight:.1f} kg" in card.detail  # says CrCl was computed with weight
    assert "venous thromboembolism treatment" in card.detail  # the indication was told, not assumed
    (res,) = updates(card)
    dose = res["dosageInstruction"][0]
    assert res["id"] == "d1"
    assert dose["doseAndRate"][0]["doseQuantity"]["value"] == mg  # 1 mg/kg by weight, not 30 mg
    assert dose["timing"]["repeat"] == {"frequency": 1, "period": 1, "periodUnit": "d"}  # once daily
    assert res["medicationCodeableConcept"]["coding"][0]["code"] == rxcui  # a syringe that holds the dose
    assert "30 mg" not in dose["text"]


def test_case1_enoxaparin_without_weight_is_a_review_not_an_update(service) -> None:
    cards = run(service, [_enox_dvt()], active=[egfr(22), obs("2160-0", 2.6, "mg/dL")], age=70, sex="male")
    (card,) = cards
    assert updates(card) == []
    assert any(s.label.startswith("Review the dose") for s in card.suggestions)
    assert "1 mg/kg" in card.summary and "no weight on record" in card.summary
    assert "Creatinine clearance could not be computed (no body weight" in card.detail


def test_case1_prophylaxis_is_30_mg_daily(service) -> None:
    proph = draft("d1", "854235", "0.4 ML enoxaparin sodium 100 MG/ML Prefilled Syringe")
    proph["dosageInstruction"] = dosage(40, 24, "40 mg subcutaneously daily")
    cards = run(service, [proph], active=[obs("2160-0", 3.0, "mg/dL"), obs("29463-7", 70, "kg")], age=75)
    (res,) = updates(cards[0])
    assert res["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 30
    assert res["medicationCodeableConcept"]["coding"][0]["code"] == "854228"  # the 30 mg syringe


# 2. Apixaban in AF, age 82, SCr 1.6, 55 kg ----------------------------------------------------------
def _apixaban(**extra: Any) -> dict[str, Any]:
    d = draft("d1", "1364445", "apixaban 5 MG Oral Tablet", **extra)
    d["dosageInstruction"] = [
        {
            "text": "5 mg twice daily",
            "timing": {"code": {"coding": [{"code": "BID"}]}},
            "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mg", "code": "mg"}}],
        }
    ]
    return d


def test_case2_apixaban_af_dose_reduction_criteria(service) -> None:
    af = condition("I48.91")
    d = _apixaban(reasonReference=[{"reference": f"Condition/{af['id']}"}])
    cards = run(
        service, [d], active=[af, obs("2160-0", 1.6, "mg/dL"), obs("29463-7", 55, "kg")], age=82, sex="female"
    )
    assert len(cards) == 1
    card = cards[0]
    assert card.indicator in ("warning", "critical")
    assert "2.5 mg" in card.summary and "age 82" in card.summary and "55.0 kg" in card.summary
    (res,) = updates(card)
    assert res["medicationCodeableConcept"]["coding"][0]["code"] == "1364435"  # apixaban 2.5 MG Oral Tablet
    dose = res["dosageInstruction"][0]
    assert dose["doseAndRate"][0]["doseQuantity"]["value"] == 2.5
    assert dose["timing"]["repeat"] == {"frequency": 1, "period": 12, "periodUnit": "h"}


def test_case2_apixaban_without_a_coded_indication_is_a_review(service) -> None:
    cards = run(
        service, [_apixaban()], active=[obs("2160-0", 1.6, "mg/dL"), obs("29463-7", 55, "kg")], age=82
    )
    (card,) = cards
    assert updates(card) == [] and "depends on the indication" in card.summary
    assert "If for atrial fibrillation" in card.detail


@pytest.mark.parametrize(("age", "weight", "scr", "fires"), [(79, 61, 1.6, False), (80, 61, 1.5, True)])
def test_case2_apixaban_criteria_edges(service, age, weight, scr, fires) -> None:
    d = _apixaban(reasonCode=[{"coding": [{"system": ICD, "code": "I48.0"}]}])
    cards = run(service, [d], active=[obs("2160-0", scr, "mg/dL"), obs("29463-7", weight, "kg")], age=age)
    assert any(c.kind == "dose:apixaban" for c in cards) is fires


# 3. Severity escalated by the labs -----------------------------------------------------------------
def test_case3_spironolactone_on_an_ace_inhibitor_at_k_5_6_is_one_critical_card(service) -> None:
    cards = run(
        service,
        [draft("d1", "9997", "spironolactone")],
        active=[med("m1", "29046", "lisinopril"), potassium(5.6)],
    )
    assert len(cards) == 1 and cards[0].indicator == "critical"
    assert "ddi:raas-k-sparing" in cards[0].detail  # the interaction rides along, listed by kind
    assert "Potassium 5.6 mmol/L" in cards[0].detail


def test_case3_potassium_chloride_at_k_5_8_is_critical(service) -> None:
    cards = run(service, [draft("d1", "8591", "potassium chloride")], active=[potassium(5.8)])
    assert [(c.kind, c.indicator) for c in cards] == [("lab:hyperkalaemia-potassium-raising", "critical")]


@pytest.mark.parametrize("new_first", [True, False])
def test_case3_methotrexate_with_trimethoprim_is_critical_avoid(service, new_first) -> None:
    mtx, tmp = draft("d1", "6851", "methotrexate"), draft("d2", "10829", "trimethoprim")
    cards = run(service, [mtx, tmp] if new_first else [tmp, mtx])
    assert len(cards) == 1
    card = cards[0]
    assert card.indicator == "critical" and card.kind == "ddi:methotrexate-trimethoprim"
    assert "Contraindicated: avoid" in card.detail and "fatal pancytopenia" in card.detail
    # the antibiotic is the drug to change
    removes = [a.resource_id for s in card.suggestions for a in s.actions if a.type == "delete"]
    assert removes == ["MedicationRequest/d2"]


# 4. Unknown orders (see also test_not_checked.py) --------------------------------------------------
def test_case4_an_order_matching_nothing_gets_an_info_card(service) -> None:
    cards = run(service, [draft("d1", "99999999", "Qwzx 5 MG Oral Tablet")])
    assert [(c.kind, c.indicator) for c in cards] == [("not-checked:unrecognised-medication", "info")]


# 5. Warfarin + aspirin both new in atrial fibrillation ---------------------------------------------
@pytest.mark.parametrize("warfarin_first", [True, False])
def test_case5_the_suggestion_removes_the_aspirin_not_the_warfarin(service, warfarin_first) -> None:
    w = draft("w1", "855332", "Warfarin Sodium 5 MG Oral Tablet")
    a = draft("a1", "243670", "aspirin 81 MG Oral Tablet")
    cards = run(service, [w, a] if warfarin_first else [a, w], active=[condition("I48.91")])
    card = next(c for c in cards if c.kind == "ddi:anticoagulant-antiplatelet")
    deletes = [x.resource_id for s in card.suggestions for x in s.actions if x.type == "delete"]
    assert deletes == ["MedicationRequest/a1"]
    assert card.summary.startswith("Aspirin + warfarin")
    assert not any("w1" in (x.resource_id or "") for c in cards for s in c.suggestions for x in s.actions)


# 6. Wording ----------------------------------------------------------------------------------------
def _sentences(text: str) -> list[str]:
    body = text.split("**Sources:**")[0]
    parts = re.split(r"(?<=[.!?])\s+|(?<=[.!?]\*\*)\s+|\n", body)
    return [re.sub(r"[*_\-]", "", p).strip().rstrip(".").lower() for p in parts if len(p.strip()) > 12]


def test_case6_no_repeated_sentences(service) -> None:
    cards = run(service, [draft("d1", "3498", "diphenhydramine")], age=84)
    (card,) = cards
    sentences = _sentences(card.detail)
    assert len(sentences) == len(set(sentences)), sentences
    assert card.detail.lower().count("strongly anticholinergic") == 1


def test_case6_no_stop_if_qtc_exceeds_500_when_it_is_512(service) -> None:
    cards = run(
        service,
        [draft("d1", "18631", "azithromycin")],
        active=[med("m1", "2556", "citalopram"), obs("8636-3", 512, "ms")],
    )
    detail = cards[0].detail
    assert "exceeds 500" not in detail
    assert "QTc is already 512 ms" in detail and cards[0].indicator == "critical"


def test_case6_no_internal_risk_score_line(service) -> None:
    cards = run(service, [draft("d1", "310965", "Ibuprofen 200 MG Oral Tablet")], active=[med("m1", "11289")])
    assert cards and all("Risk score" not in c.detail and "/100" not in c.detail for c in cards)


def test_case6_already_tolerating_only_for_drugs_already_taken(service) -> None:
    new = run(service, [draft("d1", "310965", "Ibuprofen 200 MG Oral Tablet")], active=[med("m1", "11289")])
    assert "already-tolerating" not in {r.code for r in new[0].override_reasons}
    both_new = run(service, [draft("w1", "11289", "warfarin"), draft("a1", "1191", "aspirin")])
    assert all("already-tolerating" not in {r.code for r in c.override_reasons} for c in both_new)
    renewal = run(
        service,
        [draft("d1", "310965", "Ibuprofen 200 MG Oral Tablet")],
        active=[med("m1", "11289"), med("m0", "310965", "Ibuprofen 200 MG Oral Tablet")],
    )
    assert "already-tolerating" in {r.code for r in renewal[0].override_reasons}


def test_case6_the_allergic_reaction_is_named(service) -> None:
    pen = allergy(code="7980", text="Penicillin G", criticality="high")
    pen["reaction"] = [{"manifestation": [{"text": "Hives"}], "severity": "moderate"}]
    cards = run(service, [draft("d1", "308182", "Amoxicillin 250 MG Oral Capsule")], active=[pen])
    assert "hives" in cards[0].summary.lower()
    assert "Recorded reaction to Penicillin G: hives" in cards[0].detail


def test_severity_and_documentation_label(service) -> None:
    cards = run(service, [draft("d1", "310965", "Ibuprofen 200 MG Oral Tablet")], active=[med("m1", "11289")])
    first = cards[0].detail.splitlines()[0]
    assert re.fullmatch(r"\*\*(Contraindicated: avoid|Major|Moderate|Minor) · Documentation: .+\*\*", first)


@pytest.mark.parametrize(
    ("rxcui", "ingredient"),
    [
        ("1364445", "apixaban"),
        ("854241", "enoxaparin"),
        ("1232086", "rivaroxaban"),
        ("1037045", "dabigatran"),
    ],
)
def test_dosed_scds_resolve_by_code_alone(service, rxcui, ingredient) -> None:
    # coded only (no display or text): the dosing products list maps the SCD to its ingredient
    d = draft("d1", rxcui)
    assert service.resolver.concept_ingredients(d["medicationCodeableConcept"]) == {
        next(k for k, v in service.kb.ingredients.items() if v.name.startswith(ingredient))
    }


def test_case5_with_a_coronary_stent_the_card_says_to_confirm_before_removing_aspirin(service) -> None:
    w = draft("w1", "855332", "Warfarin Sodium 5 MG Oral Tablet")
    a = draft("a1", "243670", "aspirin 81 MG Oral Tablet")
    without = run(service, [w, a], active=[condition("I48.91")])
    stent = run(service, [w, a], active=[condition("I48.91"), condition("Z95.5")])
    assert "coronary stent" not in without[0].detail
    assert "coronary stent" in stent[0].detail and "Confirm the plan with cardiology" in stent[0].detail
    # still the aspirin's card; its removal is offered but not recommended
    remove = [s for s in stent[0].suggestions if s.actions and s.actions[0].type == "delete"]
    assert remove[0].actions[0].resource_id == "MedicationRequest/a1" and not remove[0].is_recommended


def test_case2_apixaban_criteria_that_cannot_be_checked_are_said(service) -> None:
    # age 82 (one criterion) and no weight or creatinine: two criteria unknown -> an info card, not silence
    d = _apixaban(reasonCode=[{"coding": [{"system": ICD, "code": "I48.0"}]}])
    cards = run(service, [d], age=82)
    assert [(c.kind, c.indicator) for c in cards] == [("dose:apixaban", "info")]
    assert "not fully checked" in cards[0].summary
    assert "weight 60 kg or less" in cards[0].detail and updates(cards[0]) == []
    # age 50, creatinine 1.0, weight unknown: the weight alone cannot make two criteria -> nothing to say
    assert run(service, [d], active=[obs("2160-0", 1.0, "mg/dL")], age=50) == []
