"""Issue 21 item 3: a swap of the drug in a draft order is ONE update of that MedicationRequest (same
id, new medication and dose), whatever way the draft named its drug."""

from __future__ import annotations

from tests.medication.conftest import draft, med, run

WARFARIN = ("855332", "Warfarin Sodium 5 MG Oral Tablet")
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _swap(cards):
    card = next(c for c in cards if c.kind == "ddi:anticoagulant-nsaid")
    first = card.suggestions[0]
    assert first.is_recommended and [a.type for a in first.actions] == ["update"]
    return first.actions[0].resource


def test_swap_of_a_coded_draft_is_one_update_keeping_everything_else(service) -> None:
    d = draft(
        "d1",
        "310965",
        "Ibuprofen 200 MG Oral Tablet",
        encounter={"reference": "Encounter/e1"},
        note=[{"text": "x"}],
    )
    res = _swap(run(service, [d], active=[med("m1", *WARFARIN)]))
    assert res["id"] == "d1" and res["resourceType"] == "MedicationRequest" and res["status"] == "draft"
    assert res["encounter"] == {"reference": "Encounter/e1"} and res["note"] == [{"text": "x"}]
    assert res["medicationCodeableConcept"]["coding"] == [
        {"system": RX, "code": "313782", "display": "Acetaminophen 325 MG Oral Tablet"}
    ]
    assert "acetaminophen" not in str(d).lower()  # the draft itself was not modified in place


def test_swap_of_a_draft_with_a_contained_medication_drops_the_reference(service) -> None:
    d = draft("d1")
    del d["medicationCodeableConcept"]
    d["contained"] = [
        {
            "resourceType": "Medication",
            "id": "m",
            "code": {"coding": [{"system": RX, "code": "310965", "display": "Ibuprofen 200 MG Oral Tablet"}]},
        }
    ]
    d["medicationReference"] = {"reference": "#m"}
    res = _swap(run(service, [d], active=[med("m1", *WARFARIN)]))
    assert "medicationReference" not in res and "contained" not in res
    assert res["medicationCodeableConcept"]["coding"][0]["code"] == "313782"


def test_no_id_no_one_click_change(service) -> None:
    d = draft("d1", "310965", "Ibuprofen 200 MG Oral Tablet")
    del d["id"]
    cards = run(service, [d], active=[med("m1", *WARFARIN)])
    assert all(a.type != "update" for c in cards for s in c.suggestions for a in s.actions)
