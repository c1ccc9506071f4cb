"""Reading medications (codes, text, combination products, contained/referenced Medication),
refusing unreadable drafts with a 400, and allergy matching by ingredient and documented class."""

from __future__ import annotations

import pytest

from cds.runtime.errors import BadRequest
from tests.medication.conftest import RX, allergy, draft, kinds, med, run

WARFARIN = ("855332", "Warfarin Sodium 5 MG Oral Tablet")


def test_name_fallback_on_brand_and_whole_words(service) -> None:
    r = service.resolver
    assert r.text_ingredients("Coumadin 5 mg tablet") == {"11289"}
    assert r.text_ingredients("enoxaparin 40 MG/0.4ML") == {"67108"}  # not heparin
    mono, di = (
        frozenset(service.kb.ingredient_names.find(n))
        for n in ("isosorbide mononitrate", "isosorbide dinitrate")
    )
    assert mono != di and r.text_ingredients("Isosorbide Mononitrate 30 MG") == mono  # not the dinitrate
    assert r.text_ingredients("Penicillin V Potassium 500 MG") == {"7984"}  # not potassium chloride
    assert r.text_ingredients("Insulin glargine") == {"274783"}
    assert r.text_ingredients("Unobtainium 5 MG Oral Tablet") == frozenset()


def test_unknown_rxnorm_code_falls_back_to_the_display(service) -> None:
    cards = run(
        service,
        drafts=[draft("d1", "99999999", "Ibuprofen 800 MG Oral Tablet")],
        active=[med("m1", *WARFARIN)],
    )
    assert "ddi:anticoagulant-nsaid" in kinds(cards)


@pytest.mark.parametrize(
    ("product", "active", "rule"),
    [
        # oxycodone/acetaminophen (Synthea) with alprazolam (CMS506 benzodiazepine value set)
        (
            ("1049221", "Acetaminophen 325 MG / oxyCODONE Hydrochloride 5 MG Oral Tablet"),
            ("308048", "alprazolam 0.5 MG Oral Tablet"),
            "ddi:opioid-benzodiazepine",
        ),
        # acetaminophen/dextromethorphan/doxylamine (Synthea) with an MAO inhibitor
        (
            ("1043400", "Acetaminophen / Dextromethorphan / doxylamine Oral Solution"),
            ("8123", "phenelzine"),
            "ddi:onc-narcotic-maoi",
        ),
        # ibuprofen/oxycodone (CMS506 opioid value set) with warfarin
        (
            ("1049589", "ibuprofen 400 MG / oxycodone hydrochloride 5 MG Oral Tablet"),
            WARFARIN,
            "ddi:anticoagulant-nsaid",
        ),
    ],
)
def test_combination_products_count_for_each_ingredient(service, product, active, rule) -> None:
    cards = run(service, drafts=[draft("d1", *product)], active=[med("m1", *active)])
    assert rule in kinds(cards)
    # and from the other side
    cards = run(service, drafts=[draft("d1", *active)], active=[med("m1", *product)])
    assert rule in kinds(cards)


def test_combination_product_does_not_interact_with_itself(service) -> None:
    # amoxicillin/clavulanate, acetaminophen/oxycodone: no card for the pair inside one product
    assert run(service, drafts=[draft("d1", "562251", "Amoxicillin 250 MG / Clavulanate 125 MG")]) == []
    assert run(service, drafts=[draft("d1", "1049221", "Acetaminophen 325 MG / oxyCODONE 5 MG")]) == []


def _medication(id: str, code: str, display: str) -> dict:
    return {
        "resourceType": "Medication",
        "id": id,
        "code": {"coding": [{"system": RX, "code": code, "display": display}]},
    }


def _by_reference(id: str, reference: str, display: str | None = None, **extra) -> dict:
    r = draft(id)
    r.pop("medicationCodeableConcept")
    r["medicationReference"] = {"reference": reference, **({"display": display} if display else {})}
    r.update(extra)
    return r


def test_contained_medication(service) -> None:
    order = _by_reference("d1", "#m", contained=[_medication("m", "310965", "Ibuprofen 200 MG Oral Tablet")])
    assert "ddi:anticoagulant-nsaid" in kinds(run(service, drafts=[order], active=[med("m1", *WARFARIN)]))


def test_medication_referenced_in_draft_orders_or_record(service) -> None:
    ibu = _medication("ibu", "310965", "Ibuprofen 200 MG Oral Tablet")
    order = _by_reference("d1", "Medication/ibu")
    in_bundle = run(service, drafts=[order], active=[med("m1", *WARFARIN)], bundle_extra=[ibu])
    in_record = run(service, drafts=[order], active=[med("m1", *WARFARIN), ibu])
    assert "ddi:anticoagulant-nsaid" in kinds(in_bundle) and "ddi:anticoagulant-nsaid" in kinds(in_record)
    # an absolute reference to the same Medication
    absolute = _by_reference("d2", "https://ehr.example.org/fhir/Medication/ibu")
    assert "ddi:anticoagulant-nsaid" in kinds(
        run(service, drafts=[absolute], active=[med("m1", *WARFARIN), ibu])
    )


def test_active_medication_by_reference_and_by_ingredient_list(service) -> None:
    warf = {
        "resourceType": "Medication",
        "id": "w",
        "ingredient": [
            {"itemCodeableConcept": {"coding": [{"system": RX, "code": "11289", "display": "warfarin"}]}}
        ],
    }
    active = _by_reference("m1", "Medication/w")
    active["status"] = "active"
    assert "ddi:anticoagulant-nsaid" in kinds(
        run(service, drafts=[draft("d1", "310965", "Ibuprofen")], active=[active, warf])
    )


def test_unresolvable_reference_uses_its_display(service) -> None:
    order = _by_reference("d1", "Medication/elsewhere", display="Ibuprofen 400 mg tablet")
    assert "ddi:anticoagulant-nsaid" in kinds(run(service, drafts=[order], active=[med("m1", *WARFARIN)]))


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (
            {k: v for k, v in draft("d1").items() if k != "medicationCodeableConcept"},
            r"entry\[0\] \(MedicationRequest/d1\).*neither medicationCodeableConcept",
        ),
        (draft("d1"), "neither a coding nor text"),
        (_by_reference("d1", "Medication/nowhere"), "Medication/nowhere"),
        (_by_reference("d1", "#missing"), "#missing"),
    ],
)
def test_unreadable_draft_is_a_bad_request(service, order, message) -> None:
    with pytest.raises(BadRequest, match=message):
        run(service, drafts=[order])


def test_malformed_draft_orders_are_bad_requests(service) -> None:
    from cds.fhir.record import PatientRecord
    from cds.hooks.request import HookRequest

    record = PatientRecord.from_resources([])
    for bundle, message in [
        ({"resourceType": "Bundle", "entry": [{"fullUrl": "x"}]}, r"entry\[0\] has no resource"),
        ({"resourceType": "Bundle", "entry": ["nope"]}, r"entry\[0\] has no resource"),
        ({"resourceType": "Bundle", "entry": {"resource": {}}}, "entry must be a list"),
        ({"entry": []}, "must be a FHIR Bundle"),
    ]:
        req = HookRequest("medication-risk", "order-sign", "h", {"patientId": "p1", "draftOrders": bundle})
        with pytest.raises(BadRequest, match=message):
            service.evaluate(req, record)


def test_other_order_types_are_ignored(service) -> None:
    lab = {
        "resourceType": "ServiceRequest",
        "id": "s1",
        "status": "draft",
        "intent": "order",
        "code": {"text": "CBC"},
    }
    assert run(service, drafts=[], bundle_extra=[lab]) == []


def test_resigned_order_is_not_compared_with_itself(service) -> None:
    same = med("d1", *WARFARIN)  # the draft is also in the active list (re-sign)
    assert run(service, drafts=[draft("d1", *WARFARIN)], active=[same]) == []


# --- allergies -----------------------------------------------------------------------------------
AMOXICILLIN = ("308182", "Amoxicillin 250 MG Oral Capsule")


@pytest.mark.parametrize(
    "allergy_resource",
    [
        allergy("91936005", system="http://snomed.info/sct"),  # Allergy to penicillin (SNOMED)
        allergy("7984", text="Penicillin V"),  # RxNorm ingredient
        allergy(None, text="Penicillins"),  # text only, class name
        allergy("834102", text="Penicillin V Potassium 500 MG Oral Tablet"),  # RxNorm product
    ],
)
def test_penicillin_allergy_matches_another_penicillin(service, allergy_resource) -> None:
    cards = run(service, drafts=[draft("d1", *AMOXICILLIN)], active=[allergy_resource])
    assert kinds(cards).get("allergy:penicillin") == "warning"
    assert cards[0].summary.startswith("Amoxicillin: allergy to penicillin")


def test_high_criticality_allergy_is_critical(service) -> None:
    cards = run(
        service,
        drafts=[draft("d1", *AMOXICILLIN)],
        active=[allergy(None, text="penicillin", criticality="high")],
    )
    assert kinds(cards)["allergy:penicillin"] == "critical"


def test_combination_product_matches_allergy(service) -> None:
    cards = run(
        service,
        drafts=[draft("d1", "562251", "Amoxicillin / Clavulanate")],
        active=[allergy(None, text="amoxicillin")],
    )
    assert "allergy:penicillin" in kinds(cards)


def test_documented_cross_reactivity_is_information_only(service) -> None:
    cards = run(
        service, drafts=[draft("d1", "2231", "cephalexin")], active=[allergy(None, text="Penicillin")]
    )
    assert kinds(cards) == {"allergy:penicillin-cephalosporin": "info"}


def test_no_documented_cross_reactivity_no_card(service) -> None:
    sulfa = allergy(None, text="Sulfa drugs")
    assert run(service, drafts=[draft("d1", "4603", "furosemide")], active=[sulfa]) == []
    assert "allergy:sulfonamide-antibiotic" in kinds(
        run(service, drafts=[draft("d1", "10180", "sulfamethoxazole")], active=[sulfa])
    )


def test_nsaid_class_allergy_spares_celecoxib(service) -> None:
    ibu = allergy("5640", text="ibuprofen")
    assert "allergy:nsaid" in kinds(
        run(service, drafts=[draft("d1", "849574", "Naproxen sodium 220 MG")], active=[ibu])
    )
    assert run(service, drafts=[draft("d1", "140587", "celecoxib")], active=[ibu]) == []


def test_same_ingredient_allergy_outside_any_class_group(service) -> None:
    cards = run(
        service, drafts=[draft("d1", "6809", "metformin")], active=[allergy("6809", text="metformin")]
    )
    assert kinds(cards) == {"allergy:metformin": "warning"}


@pytest.mark.parametrize(
    "resource",
    [
        allergy(None, text="Penicillin", status="resolved"),
        {**allergy(None, text="Penicillin"), "verificationStatus": {"coding": [{"code": "refuted"}]}},
        allergy(None, text="Penicillin mould", category="environment"),
    ],
)
def test_inactive_refuted_or_non_drug_allergies_are_ignored(service, resource) -> None:
    assert run(service, drafts=[draft("d1", *AMOXICILLIN)], active=[resource]) == []


def test_the_service_reads_the_orders_decoded_with_the_request(service, tmp_path) -> None:
    """draftOrders is decoded and checked once, with the request: the service reads those orders."""
    import orjson

    from cds.fhir.record import PatientRecord
    from cds.hooks.validation import decode_hook_request
    from tests.core.conftest import dev_settings

    order = draft("d1", "99999999", "Ibuprofen 800 MG Oral Tablet", subject={"reference": "Patient/p1"})
    body = {
        "hook": "order-sign",
        "hookInstance": "1f8e0d52-6f83-4a4c-9a47-2d7c0e3b2f10",
        "context": {
            "userId": "Practitioner/1",
            "patientId": "p1",
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order}]},
        },
    }
    req = decode_hook_request(
        orjson.dumps(body), "medication-risk", "order-sign", dev_settings(tmp_path), "x"
    )
    assert req.orders == (order,)
    record = PatientRecord.from_resources([med("m1", *WARFARIN)], patient_id="p1")
    assert "ddi:anticoagulant-nsaid" in kinds(service.evaluate(req, record))
