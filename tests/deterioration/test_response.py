"""The card follows the RCP 2017 response for its NEWS2 band at each edge, and never goes above it."""

from __future__ import annotations

import dataclasses

import pytest

from cds.fhir.record import PatientRecord
from cds.runtime.settings import load_settings
from cds.services.deterioration.service import DeteriorationService

from .fhir import NOW, bp_panel, obs, patient
from .test_service import REQUEST

LOINC = "http://loinc.org"


def alert(hours_ago: float = 0.5) -> dict:
    return obs("67775-7", hours_ago=hours_ago, valueCodeableConcept={"text": "Alert"})


def chart(rr=14, spo2=98, sbp=124, hr=72, temp=36.8, level="Alert") -> list[dict]:
    return [
        patient(birth="1990-06-01", gender="female"),
        obs("9279-1", rr, "/min", 0.5),
        obs("59408-5", spo2, "%", 0.5),
        obs("3150-0", 21, "%", 0.5),  # on air
        bp_panel(sbp, 70, 0.5),
        obs("8867-4", hr, "/min", 0.5),
        obs("8310-5", temp, "Cel", 0.5),
        obs("67775-7", hours_ago=0.5, valueCodeableConcept={"text": level}),
    ]


CASES = [  # (chart, NEWS2 total, response)
    (chart(), 0, "ward"),
    (chart(hr=105, temp=38.5, sbp=105, spo2=95), 4, "ward"),
    (chart(rr=26), 3, "urgent-ward"),
    (chart(hr=105, temp=38.5, rr=26), 5, "urgent"),  # a red parameter inside 5-6 is the urgent response
    (chart(hr=115, rr=22, temp=38.5), 5, "urgent"),
    (chart(hr=115, rr=22, temp=38.5, sbp=105), 6, "urgent"),
    (chart(hr=115, rr=22, temp=38.5, sbp=98), 7, "emergency"),
    (chart(hr=135, rr=28, temp=39.5, sbp=85, level="Confused"), 14, "emergency"),
]
RANK = {"ward": 0, "urgent-ward": 1, "urgent": 2, "emergency": 3}


@pytest.fixture(scope="module")
def service() -> DeteriorationService:
    return DeteriorationService.from_settings(load_settings()).load()


@pytest.mark.parametrize("resources,total,response", CASES)
def test_response_band_at_each_news2_edge(service, resources, total, response) -> None:
    a = service.model.assess(PatientRecord.from_resources(resources, now=NOW))
    assert (a.news2.total, a.news2.complete, a.response) == (total, True, response)
    # Whatever level the card takes (the ICU model may raise it), the suggestion is the band's response.
    for band in ("info", "warning", "critical"):
        card = service.card(dataclasses.replace(a, band=band), REQUEST).to_json()
        assert card["summary"].startswith(f"NEWS2 {total}")
        (s,) = card["suggestions"]
        label = s["label"].lower()
        assert label.startswith(
            {
                "ward": "ward-based",
                "urgent-ward": "urgent ward-based",
                "urgent": "urgent response",
                "emergency": "emergency",
            }[response]
        )
        if RANK[response] < RANK["urgent"]:  # NEWS2 0-4 (red or not): no rapid response
            assert "rapid" not in label
        if RANK[response] < RANK["emergency"]:
            assert "emergency" not in label and "critical-care" not in label and "outreach" not in label
        sr = s["actions"][0]["resource"]
        assert (
            sr["priority"]
            == {"ward": "routine", "urgent-ward": "urgent", "urgent": "urgent", "emergency": "stat"}[response]
        )


def test_news2_sets_the_card_level(service) -> None:
    levels = {}
    for resources, total, _ in CASES:
        a = service.model.assess(PatientRecord.from_resources(resources, now=NOW))
        levels[total] = a.band
    assert levels[7] == levels[14] == "critical"
    assert levels[5] == levels[6] == levels[3] == "warning"
