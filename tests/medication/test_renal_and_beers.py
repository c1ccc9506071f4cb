"""Renal dosing at its thresholds (reported and computed eGFR) and Beers at age 64 vs 65."""

from __future__ import annotations

from datetime import date

import pytest

from cds.services.medication_risk.egfr import ckd_epi_2021
from tests.medication.conftest import NOW, condition, draft, egfr, kinds, med, obs, patient, run


@pytest.mark.parametrize(("value", "fires"), [(30, False), (29.9, True)])
def test_nsaid_threshold(service, value, fires) -> None:
    cards = run(service, drafts=[draft("d1", "310965", "Ibuprofen 200 MG Oral Tablet")], active=[egfr(value)])
    assert (kinds(cards).get("renal:nsaid") == "warning") is fires


# Metformin, enoxaparin, the DOACs and the gabapentinoids: label dosing sweeps in test_dosing.py.


@pytest.mark.parametrize(("value", "fires"), [(95, False), (96, True)])
def test_edoxaban_high_clearance_band(service, value, fires) -> None:
    cards = run(service, drafts=[draft("d1", "1599538", "edoxaban")], active=[egfr(value)])
    assert ("renal:edoxaban" in kinds(cards)) is fires


@pytest.mark.parametrize(("value", "fires"), [(30, False), (29, True)])
def test_spironolactone_and_nitrofurantoin(service, value, fires) -> None:
    spiro = run(service, drafts=[draft("d1", "9997", "spironolactone")], active=[egfr(value)])
    nitro = run(service, drafts=[draft("d1", "7454", "nitrofurantoin")], active=[egfr(value)])
    assert (kinds(spiro).get("renal:spironolactone-eplerenone") == "warning") is fires
    assert ("renal:nitrofurantoin" in kinds(nitro)) is fires


@pytest.mark.parametrize("loinc", ["33914-3", "48642-3", "48643-1", "62238-1", "98979-8"])
def test_every_egfr_loinc_is_read(service, loinc) -> None:
    cards = run(
        service, drafts=[draft("d1", "6809", "metformin")], active=[obs(loinc, 20, "mL/min/{1.73_m2}")]
    )
    assert kinds(cards).get("renal:metformin") == "critical"


def test_ckd_epi_2021_reference_values() -> None:
    # Inker 2021: 142 x min(Scr/k,1)^a x max(Scr/k,1)^-1.2 x 0.9938^age (x 1.012 female)
    assert ckd_epi_2021(0.9, 50, female=False) == pytest.approx(142 * 0.9938**50, rel=1e-9)
    assert ckd_epi_2021(0.7, 50, female=True) == pytest.approx(142 * 0.9938**50 * 1.012, rel=1e-9)
    assert ckd_epi_2021(2.0, 70, female=False) == pytest.approx(
        142 * (2.0 / 0.9) ** -1.2 * 0.9938**70, rel=1e-9
    )
    assert ckd_epi_2021(0.5, 40, female=True) == pytest.approx(
        142 * (0.5 / 0.7) ** -0.241 * 0.9938**40 * 1.012
    )
    assert 35 < ckd_epi_2021(2.0, 70, female=False) < 36


def test_egfr_computed_from_creatinine_in_either_unit(service) -> None:
    # 70-year-old man, creatinine 2.6 mg/dL (= 229.8 umol/L): CKD-EPI 2021 about 26
    for creat in (obs("2160-0", 2.6, "mg/dL"), obs("2160-0", 229.8, "umol/L")):
        cards = run(service, drafts=[draft("d1", "6809", "metformin")], active=[creat], age=70, sex="male")
        card = next(c for c in cards if c.kind == "renal:metformin")
        assert card.indicator == "critical"
        assert "CKD-EPI 2021" in card.detail and "eGFR 26" in card.detail


def test_newest_kidney_value_wins(service) -> None:
    old_low = egfr(20, days_ago=30)
    new_creat = obs("2160-0", 0.8, "mg/dL", days_ago=1)  # eGFR ~ 90
    cards = run(
        service, drafts=[draft("d1", "6809", "metformin")], active=[old_low, new_creat], age=60, sex="male"
    )
    assert "renal:metformin" not in kinds(cards)


def test_no_kidney_value_no_renal_card(service) -> None:
    assert run(service, drafts=[draft("d1", "6809", "metformin")]) == []


# --- Beers ---------------------------------------------------------------------------------------
DIPHENHYDRAMINE = ("1049909", "diphenhydramine hydrochloride 25 MG Oral Capsule")


def test_beers_at_64_vs_65(service) -> None:
    at_64 = run(service, drafts=[draft("d1", *DIPHENHYDRAMINE)], age=64)
    at_65 = run(service, drafts=[draft("d1", *DIPHENHYDRAMINE)], age=65)
    assert "beers:first-gen-antihistamine" not in kinds(at_64)
    assert kinds(at_65)["beers:first-gen-antihistamine"] == "info"
    card = next(c for c in at_65 if c.kind == "beers:first-gen-antihistamine")
    assert "Age 65" in card.detail and "Beers" in card.detail


def test_beers_turns_on_on_the_65th_birthday(service) -> None:
    birthday = {**patient(), "birthDate": date(NOW.year - 65, NOW.month, NOW.day + 1).isoformat()}
    assert run(service, drafts=[draft("d1", *DIPHENHYDRAMINE)], pat=birthday) == []
    birthday["birthDate"] = date(NOW.year - 65, NOW.month, NOW.day).isoformat()
    assert run(service, drafts=[draft("d1", *DIPHENHYDRAMINE)], pat=birthday)


def test_beers_uses_cms156_product_codes(service) -> None:
    # meperidine tablet (Synthea) and a CMS156 skeletal muscle relaxant product
    cards = run(service, drafts=[draft("d1", "861467", "Meperidine Hydrochloride 50 MG Oral Tablet")], age=80)
    assert kinds(cards)["beers:meperidine"] == "warning"
    cards = run(
        service, drafts=[draft("d2", "828348", "cyclobenzaprine hydrochloride 10 MG Oral Tablet")], age=80
    )
    assert "beers:muscle-relaxant" in kinds(cards)


def test_beers_condition_exception_and_form_exclusion(service) -> None:
    haloperidol = draft("d1", "310672", "haloperidol 5 MG Oral Tablet")
    assert "beers:antipsychotic" in kinds(run(service, drafts=[haloperidol], age=75))
    assert "beers:antipsychotic" not in kinds(
        run(service, drafts=[haloperidol], active=[condition("F20.9")], age=75)
    )
    ir = run(service, drafts=[draft("d1", "198032", "nifedipine 10 MG Oral Capsule")], age=75)
    er = run(
        service,
        drafts=[draft("d1", None, text="24 HR nifedipine 30 MG Extended Release Oral Tablet")],
        age=75,
    )
    assert "beers:nifedipine-ir" in kinds(ir) and "beers:nifedipine-ir" not in kinds(er)


def test_beers_new_start_only_rules(service) -> None:
    new = run(service, drafts=[draft("d1", "855332", "Warfarin Sodium 5 MG Oral Tablet")], age=75)
    renewal = run(
        service,
        drafts=[draft("d1", "855332", "Warfarin Sodium 5 MG Oral Tablet")],
        active=[med("m1", "855332", "Warfarin Sodium 5 MG Oral Tablet")],
        age=75,
    )
    assert "beers:warfarin-new-start" in kinds(new)
    assert "beers:warfarin-new-start" not in kinds(renewal)
