"""Never silence on what the service cannot check: an unrecognised drug or a draft order of another
FHIR version (DSTU2 MedicationOrder, as the official sandbox sends by default) gets an info card
saying it was not checked, counted in /metrics (issue 14; issue 21 item 4)."""

from __future__ import annotations

from tests.core.conftest import Caller
from tests.medication.conftest import body, draft, med, run

PATH = "/cds-services/medication-risk"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
WARFARIN = ("855332", "Warfarin Sodium 5 MG Oral Tablet")


def dstu2_order(id: str, code: str, display: str) -> dict:
    """A draft MedicationOrder shaped like the official CDS Hooks sandbox's DSTU2 orders."""
    return {
        "resourceType": "MedicationOrder",
        "id": id,
        "status": "draft",
        "dateWritten": "2026-11-25",
        "patient": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {
            "text": display,
            "coding": [{"system": RX, "code": code, "display": display}],
        },
        "dosageInstruction": [
            {
                "text": "1 tablet twice daily",
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnits": "d"}},
            }
        ],
    }


def _not_checked_count(caller: Caller, reason: str) -> float:
    text = caller.client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith("cds_orders_not_checked_total{") and f'reason="{reason}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_unknown_order_gets_one_info_card(service) -> None:
    cards = run(service, drafts=[draft("d1", "99999991", "Zzyzx 10 MG Oral Tablet")])
    assert [(c.kind, c.indicator) for c in cards] == [("not-checked:unrecognised-medication", "info")]
    assert cards[0].summary == "Not checked: unrecognised medication Zzyzx 10 MG Oral Tablet"
    assert "99999991" in cards[0].detail and "not an all-clear" in cards[0].detail


def test_unknown_order_beside_a_known_one_keeps_both_cards(service) -> None:
    cards = run(
        service,
        drafts=[draft("d1", "310965", "Ibuprofen 200 MG Oral Tablet"), draft("d2", text="mystery tonic")],
        active=[med("m1", *WARFARIN)],
    )
    assert [c.kind for c in cards] == ["ddi:anticoagulant-nsaid", "not-checked:unrecognised-medication"]


def test_unknown_order_is_counted_in_metrics(caller: Caller) -> None:
    before = _not_checked_count(caller, "unrecognised-medication")
    r = caller.post(PATH, json=body([draft("d1", text="mystery tonic")], []))
    assert r.status_code == 200, r.text
    assert [c["indicator"] for c in r.json()["cards"]] == ["info"]
    assert _not_checked_count(caller, "unrecognised-medication") == before + 1


def test_dstu2_medication_order_gets_a_not_checked_card_not_an_all_clear(caller: Caller) -> None:
    """Issue 21 item 4: warfarin + naproxen from the sandbox's DSTU2 server was answered {"cards": []}."""
    before = _not_checked_count(caller, "unsupported-resource")
    r = caller.post(
        PATH,
        json=body(
            [dstu2_order("request-123", "198013", "Naproxen 250 MG Oral Tablet")],
            [med("m1", *WARFARIN)],
        ),
    )
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert len(cards) == 1
    card = cards[0]
    assert card["indicator"] == "info"
    assert card["source"]["topic"]["code"] == "not-checked:unsupported-resource"
    assert "MedicationOrder" in card["summary"] and "FHIR DSTU2" in card["summary"]
    assert "FHIR R4" in card["summary"] and len(card["summary"]) < 140
    assert "Naproxen 250 MG Oral Tablet" in card["summary"]
    assert "not checked" in card["detail"]
    assert _not_checked_count(caller, "unsupported-resource") == before + 1


def test_non_medication_drafts_stay_quiet(service) -> None:
    lab = {"resourceType": "ServiceRequest", "id": "s1", "status": "draft", "intent": "order"}
    assert run(service, drafts=[lab]) == []
