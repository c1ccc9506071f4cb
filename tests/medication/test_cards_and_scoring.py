"""Cards: what they say, what they suggest, how labs and patient factors move the indicator, and how
few of them an order produces."""

from __future__ import annotations

import pytest

from cds.fhir.terminology import LOINC, RXNORM
from tests.medication.conftest import draft, egfr, inr, kinds, med, obs, potassium, run

WARFARIN = ("855332", "Warfarin Sodium 5 MG Oral Tablet")
IBUPROFEN = ("310965", "Ibuprofen 200 MG Oral Tablet")


def test_summary_detail_and_source(service) -> None:
    cards = run(service, drafts=[draft("d1", *IBUPROFEN)], active=[med("m1", *WARFARIN), inr(4.2)], age=70)
    assert len(cards) == 1  # one card per draft order: the Beers finding rides along
    card = next(c for c in cards if c.kind == "ddi:anticoagulant-nsaid")
    assert card.summary == "Ibuprofen + warfarin: major bleeding risk (+1 more)"
    assert len(card.summary) < 140
    d = card.detail
    assert "NSAIDs inhibit platelet function" in d  # mechanism
    assert "INR 4.2" in d and "Age 70" in d  # the patient's own values
    assert "use acetaminophen" in d  # management
    assert "https://doi.org/10.7326/M13-1581" in d  # citation
    assert "Major · Documentation:" in d  # severity and documentation label, like a monograph
    assert "`beers:nsaid" in d or "`beers:" in d  # the other finding kinds are listed
    assert "Risk score" not in d  # no internal score line
    j = card.to_json()
    assert j["source"]["label"] and j["source"]["url"].startswith("https://")
    assert j["selectionBehavior"] == "at-most-one"
    # a new drug: "already tolerating this combination" does not fit, "other medication no longer taken" does
    assert [r["code"] for r in j["overrideReasons"]] == [
        "benefit-outweighs-risk",
        "will-monitor",
        "medication-list-outdated",
    ]
    assert None not in _values(j)


def _values(obj):
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in _values(x)]
    if isinstance(obj, list):
        return [v for x in obj for v in _values(x)]
    return [obj]


def test_suggestions_are_complete_fhir(service) -> None:
    cards = run(
        service,
        drafts=[draft("d1", *IBUPROFEN, encounter={"reference": "Encounter/e1"})],
        active=[med("m1", *WARFARIN)],
    )
    card = next(c for c in cards if c.kind == "ddi:anticoagulant-nsaid")
    js = card.to_json()["suggestions"]
    replace = js[0]
    assert replace["isRecommended"] is True
    # issue 21 item 3: a swap of the drug is ONE update of the same draft (same id, new drug and dose)
    assert [a["type"] for a in replace["actions"]] == ["update"]
    new = replace["actions"][0]["resource"]
    assert new["id"] == "d1"
    assert (
        new["resourceType"] == "MedicationRequest" and new["status"] == "draft" and new["intent"] == "order"
    )
    assert new["subject"] == {"reference": "Patient/p1"} and new["encounter"] == {"reference": "Encounter/e1"}
    assert new["medicationCodeableConcept"]["coding"][0] == {
        "system": RXNORM,
        "code": "313782",
        "display": "Acetaminophen 325 MG Oral Tablet",
    }
    assert (
        new["dosageInstruction"][0]["text"]
        and new["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 2
    )
    delete_only = [s for s in js if [a["type"] for a in s["actions"]] == ["delete"]]
    assert delete_only and delete_only[0]["actions"][0]["resourceId"] == "MedicationRequest/d1"


def test_alternative_only_replaces_the_drug_it_is_for(service) -> None:
    # warfarin drafted onto an NSAID: acetaminophen would not replace warfarin
    cards = run(service, drafts=[draft("d1", *WARFARIN)], active=[med("m1", *IBUPROFEN)])
    card = next(c for c in cards if c.kind == "ddi:anticoagulant-nsaid")
    creates = [a for s in card.suggestions for a in s.actions if a.type == "create"]
    assert not creates


def test_monitoring_lab_order_is_a_loinc_coded_service_request(service) -> None:
    cards = run(service, drafts=[draft("d1", "4450", "fluconazole")], active=[med("m1", *WARFARIN)])
    card = next(c for c in cards if c.kind == "ddi:warfarin-azole")
    orders = [a.resource for s in card.suggestions for a in s.actions if a.type == "create"]
    assert orders[0]["resourceType"] == "ServiceRequest"
    assert orders[0]["status"] == "draft" and orders[0]["intent"] == "order"
    assert orders[0]["code"]["coding"][0] == {
        "system": LOINC,
        "code": "6301-6",
        "display": "INR in Platelet poor plasma by Coagulation assay",
    }
    assert orders[0]["subject"] == {"reference": "Patient/p1"}


def test_clopidogrel_ppi_suggests_pantoprazole(service) -> None:
    cards = run(
        service,
        drafts=[draft("d1", "7646", "omeprazole")],
        active=[med("m1", "309362", "Clopidogrel 75 MG Oral Tablet")],
    )
    card = next(c for c in cards if c.kind == "ddi:clopidogrel-ppi")
    # the alternative is coded as an ingredient (40790), not an orderable product: offered, never applied
    first = card.suggestions[0]
    assert first.label.startswith("Use pantoprazole") and "not changed automatically" in first.label
    assert first.actions == () and not first.is_recommended
    assert not [a for s in card.suggestions for a in s.actions if a.type == "update"]


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        (4.2, {"ddi:raas-k-sparing": "info"}),
        # at 5.0 and above a mineralocorticoid antagonist should not be started: the lab card leads and
        # the interaction rides along in it
        (5.1, {"lab:mra-potassium-above-5": "warning"}),
        # issue 14 case 3: one critical card (escalated: potassium-raising drug at K >= 5.5)
        (5.6, {"lab:hyperkalaemia-potassium-raising": "critical"}),
    ],
)
def test_potassium_raises_the_hyperkalaemia_combination(service, k, expected) -> None:
    cards = run(
        service,
        drafts=[draft("d1", "9997", "spironolactone")],
        active=[med("m1", "29046", "lisinopril"), potassium(k)],
    )
    assert kinds(cards) == expected
    if k == 5.1:
        assert "hyperkalaemia risk" in cards[0].detail  # the folded interaction


def test_high_potassium_alone_flags_a_potassium_raising_order(service) -> None:
    cards = run(service, drafts=[draft("d1", "8591", "potassium chloride")], active=[potassium(5.8)])
    assert kinds(cards) == {"lab:hyperkalaemia-potassium-raising": "critical"}  # escalated at K >= 5.5
    assert "Potassium 5.8 mmol/L" in cards[0].summary


@pytest.mark.parametrize(("value", "expected"), [(2.5, "warning"), (3.2, "warning"), (4.5, "critical")])
def test_inr_raises_warfarin_nsaid(service, value, expected) -> None:
    cards = run(service, drafts=[draft("d1", *IBUPROFEN)], active=[med("m1", *WARFARIN), inr(value)])
    assert kinds(cards)["ddi:anticoagulant-nsaid"] == expected


@pytest.mark.parametrize(("qtc", "expected"), [(440, "warning"), (480, "warning"), (510, "critical")])
def test_qtc_raises_qt_pairs(service, qtc, expected) -> None:
    ecg = obs("8636-3", qtc, "ms")
    cards = run(
        service, drafts=[draft("d1", "18631", "azithromycin")], active=[med("m1", "2556", "citalopram"), ecg]
    )
    assert len(cards) == 1
    assert cards[0].indicator == expected
    assert ("lab:qt-drug-qtc-prolonged" in cards[0].detail) is (qtc >= 500)
    if qtc >= 500:  # the wording never says "stop if QTc exceeds 500" when it already does
        assert "stop if QTc exceeds 500" not in cards[0].detail
        assert "QTc is already 510 ms" in cards[0].detail


def test_qtc_in_an_ecg_component_is_read(service) -> None:
    ecg = {
        "resourceType": "Observation",
        "id": "ecg1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "11524-6"}]},
        "effectiveDateTime": "2026-11-24T10:00:00Z",
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8636-3"}]},
                "valueQuantity": {"value": 520, "unit": "ms", "code": "ms"},
            }
        ],
    }
    cards = run(service, drafts=[draft("d1", "26225", "ondansetron")], active=[ecg])
    assert "lab:qt-drug-qtc-prolonged" in kinds(cards) or "lab:qt-drug-qtc-prolonged" in cards[0].detail


@pytest.mark.parametrize(("plt", "expected"), [(250, "warning"), (80, "warning"), (40, "critical")])
def test_platelets_raise_antithrombotic_risk(service, plt, expected) -> None:
    cards = run(
        service, drafts=[draft("d1", *IBUPROFEN)], active=[med("m1", *WARFARIN), obs("777-3", plt, "10*3/uL")]
    )
    assert kinds(cards)["ddi:anticoagulant-nsaid"] == expected


def test_stale_labs_are_ignored(service) -> None:
    old = obs("6301-6", 6.0, None, days_ago=60)
    cards = run(service, drafts=[draft("d1", *IBUPROFEN)], active=[med("m1", *WARFARIN), old])
    assert kinds(cards)["ddi:anticoagulant-nsaid"] == "warning"


def test_more_interacting_drugs_raise_the_score(service) -> None:
    one = run(service, drafts=[draft("d1", "7804", "oxycodone")], active=[med("m1", "596", "alprazolam")])
    three = run(
        service,
        drafts=[draft("d1", "7804", "oxycodone")],
        active=[
            med("m1", "596", "alprazolam"),
            med("m2", "6470", "lorazepam"),
            med("m3", "25480", "gabapentin"),
        ],
    )
    s1 = next(c.score for c in one if c.kind == "ddi:opioid-benzodiazepine")
    s3 = next(c.score for c in three)
    assert s3 > s1
    assert len(three) == 1  # one card for the order: both benzodiazepines and the gabapentinoid in it
    assert three[0].summary.startswith("Oxycodone + alprazolam, lorazepam: respiratory depression risk")
    assert "ddi:opioid-benzodiazepine" in three[0].detail


def test_duplicate_therapy(service) -> None:
    cards = run(
        service,
        drafts=[draft("d1", *IBUPROFEN)],
        active=[med("m1", "849574", "Naproxen sodium 220 MG Oral Tablet")],
    )
    assert kinds(cards) == {"duplicate:nsaid": "info"}
    assert "ibuprofen + naproxen" in cards[0].summary
    # the same drug re-ordered is not duplicate therapy
    assert (
        run(
            service,
            drafts=[draft("d1", *IBUPROFEN)],
            active=[med("m1", "198405", "Ibuprofen 100 MG Oral Tablet")],
        )
        == []
    )


def test_one_order_never_produces_a_wall_of_cards(service) -> None:
    # tramadol for an 85-year-old on an MAOI, an SSRI, a benzodiazepine, a gabapentinoid, at eGFR 20
    active = [
        med("m1", "8123", "phenelzine"),
        med("m2", "36437", "sertraline"),
        med("m3", "596", "alprazolam"),
        med("m4", "25480", "gabapentin"),
        med("m5", "6813", "methadone"),
        med("m6", "190376", "linezolid"),
        egfr(20),
    ]
    cards = run(
        service,
        drafts=[draft("d1", "835603", "tramadol hydrochloride 50 MG Oral Tablet")],
        active=active,
        age=85,
    )
    assert len(cards) == 1  # one card per draft order, its findings merged
    assert "more)" in cards[0].summary and "Also on this order" in cards[0].detail
    assert cards[0].indicator == "critical" and cards[0].kind == "ddi:onc-narcotic-maoi"
    assert "Findings on this order:" in cards[0].detail


def test_info_findings_ride_along_with_a_serious_card(service) -> None:
    cards = run(service, drafts=[draft("d1", *IBUPROFEN)], active=[med("m1", *WARFARIN)], age=70)
    assert [c.kind for c in cards] == ["ddi:anticoagulant-nsaid"]
    assert "Beers" in cards[0].detail


# Twenty medications with no interaction, duplication or age/kidney problem between them
# (product codes from the Synthea sample data).
UNRELATED = [
    ("313782", "Acetaminophen 325 MG Oral Tablet"),
    ("316049", "Hydrochlorothiazide 25 MG"),
    ("197361", "Amlodipine 5 MG Oral Tablet"),
    ("311372", "Loratadine 10 MG Oral Tablet"),
    ("997488", "Fexofenadine hydrochloride 30 MG Oral Tablet"),
    ("745679", "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"),
    ("895994", "120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler"),
    ("966222", "Levothyroxine Sodium 0.075 MG Oral Tablet"),
    ("904419", "Alendronic acid 10 MG Oral Tablet"),
    ("310325", "ferrous sulfate 325 MG Oral Tablet"),
    ("197319", "Allopurinol 100 MG Oral Tablet"),
    ("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet"),
    ("1870230", "NDA020800 0.3 ML Epinephrine 1 MG/ML Auto-Injector"),
    ("2001499", "Vitamin B 12 5 MG/ML Injectable Solution"),
    ("198031", "24hr nicotine transdermal patch"),
    ("106258", "Hydrocortisone 10 MG/ML Topical Cream"),
    ("608139", "atomoxetine 100 MG Oral Capsule"),
    ("106892", "insulin human, isophane 70 UNT/ML / Regular Insulin, Human 30 UNT/ML [Humulin]"),
    ("312961", "Simvastatin 20 MG Oral Tablet"),
    ("665078", "Loratadine 5 MG Chewable Tablet"),
]


def test_twenty_unrelated_medications_no_card(service) -> None:
    active = [med(f"m{i}", *m) for i, m in enumerate(UNRELATED)]
    drafts = [
        draft("d1", "308182", "Amoxicillin 250 MG Oral Capsule"),
        draft("d2", "309097", "Cefuroxime 250 MG Oral Tablet"),
    ]
    assert run(service, drafts=drafts, active=active, age=50) == []
    # each of the twenty as the draft against the other nineteen: nothing to say, except an info card
    # for a drug the knowledge base does not know (never silence on what it cannot check)
    for i, m in enumerate(UNRELATED):
        others = [med(f"m{j}", *o) for j, o in enumerate(UNRELATED) if j != i]
        cards = run(service, drafts=[draft("d1", *m)], active=others, age=50)
        assert [c.kind for c in cards] in ([], ["not-checked:unrecognised-medication"]), m
        assert all(c.indicator == "info" for c in cards), m


def test_concurrent_opioids_cms506(service) -> None:
    cards = run(
        service,
        drafts=[draft("d1", "835603", "tramadol hydrochloride 50 MG Oral Tablet")],
        active=[med("m1", "1049221", "Acetaminophen 325 MG / oxyCODONE Hydrochloride 5 MG Oral Tablet")],
    )
    assert "duplicate:opioid" in kinds(cards)
    assert "Opioids" in next(c.summary for c in cards if c.kind == "duplicate:opioid")
