"""Care-gap card summaries come from each measure's `care_gap` texts (cds/knowledge/measures), not
from branches on measure ids in the service: the texts the service wrote before, branch by branch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cds.services.care_gaps.measures.engine import MEASURE_IDS
from cds.services.care_gaps.measures.result import Evidence
from cds.services.care_gaps.measures.spec import load_spec
from cds.services.care_gaps.service import _summary

WHEN = datetime(2025, 8, 14, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("measure", "evidence", "summary"),
    [
        (
            "CMS122",
            Evidence("HbA1c", WHEN, "10.4%", out_of_control=True),
            "HbA1c 10.4% on 2025-08-14 is above 9%: diabetes not in control (CMS122)",
        ),
        (
            "CMS122",
            Evidence("HbA1c", WHEN, "no result"),
            "HbA1c on 2025-08-14 has no result: repeat the test (CMS122)",
        ),
        ("CMS122", None, "HbA1c test due (CMS122): none on record"),
        (
            "CMS165",
            Evidence("BP", WHEN, "152/94", out_of_control=True),
            "Blood pressure 152/94 on 2025-08-14 is not below 140/90 (CMS165)",
        ),
        ("CMS165", None, "Blood pressure check due (CMS165): none on record"),
        (
            "CMS165",
            Evidence("BP", WHEN, "incomplete reading"),
            "Blood pressure check due (CMS165): last 2025-08-14",
        ),
        (
            "CMS951",
            Evidence("eGFR", WHEN, "eGFR 2025-08-14"),
            "Kidney health evaluation (eGFR and urine ACR) due (CMS951): last 2025-08-14",
        ),
        (
            "CMS130",
            Evidence("Colonoscopy", WHEN),
            "Colorectal cancer screening due (CMS130): last 2025-08-14",
        ),
    ],
)
def test_summary_per_branch(measure: str, evidence: Evidence | None, summary: str) -> None:
    assert _summary(load_spec(measure), evidence) == summary


@pytest.mark.parametrize("measure", MEASURE_IDS)
def test_every_care_gap_text_formats_with_the_fields_it_is_given(measure: str) -> None:
    gap = load_spec(measure)["care_gap"]
    texts = [
        gap.get("out_of_control_summary"),
        gap.get("last_text"),
        *gap.get("evidence_summaries", {}).values(),
    ]
    for text in filter(None, texts):
        assert text.format(value="V", date="D")  # no other placeholder, no stray brace
    codes = [c["order_code"] for c in gap.get("components", [])]
    ordered = {r["coding"][0][1] for o in gap["orders"] for r in o["resources"]}
    assert set(codes) <= ordered  # each component names an order that closes it
