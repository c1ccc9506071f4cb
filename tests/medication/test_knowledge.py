"""The knowledge base loads, is versioned and cited, and refuses broken files with a clear message."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cds.hooks.service import ServiceLoadError
from cds.runtime.settings import Settings
from cds.services.medication_risk.knowledge import KB_DIR, KnowledgeError, load_knowledge, loinc_ok
from cds.services.medication_risk.service import MedicationRiskService


def test_loads_versioned_with_counts() -> None:
    kb = load_knowledge()
    assert kb.version and kb.date
    c = kb.counts
    assert c["interactions_onc_high_priority"] == 15
    assert c["interactions_onc_non_interruptive"] >= 20
    # enoxaparin, the DOACs, metformin and the gabapentinoids moved to dosing.json (by indication)
    assert c["interactions"] >= 60 and c["renal_rules"] >= 10 and c["beers_rules"] >= 20
    assert c["products"] > 3000 and c["ingredients"] > 500 and c["class_memberships"] > 700
    assert (
        sum(c[f"interactions_{s}"] for s in ("minor", "moderate", "major", "contraindicated"))
        == c["interactions"]
    )


def test_every_rule_cites_a_known_source() -> None:
    kb = load_knowledge()
    rules = [
        *kb.interactions,
        *kb.renal,
        *kb.beers,
        *kb.lab_rules,
        *kb.allergy_groups,
        *kb.duplicates.values(),
    ]
    for r in rules:
        assert r.citation and all(s in kb.sources for s in r.citation)


def test_products_name_their_source() -> None:
    with open(KB_DIR / "products.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["source"].split(":")[0] for r in rows} <= {"synthea", "vsac"}
    cms156 = [
        r for r in rows if r["source"] == "vsac:2.16.840.1.113883.3.464.1003.1043"
    ]  # CMS156 antihistamines
    assert cms156


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("2823-3", True),
        ("33914-3", True),
        ("48642-3", True),
        ("48643-1", True),
        ("62238-1", True),
        ("98979-8", True),
        ("8636-3", True),
        ("2823-4", False),
        ("48643-3", False),
        ("abc", False),
    ],
)
def test_loinc_check_digit(code: str, ok: bool) -> None:
    assert loinc_ok(code) is ok


def _copy(tmp_path: Path) -> Path:
    d = tmp_path / "kb"
    shutil.copytree(KB_DIR, d)
    return d


def _edit_json(name: str, fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        data = json.loads((d / name).read_text())
        fn(data)
        (d / name).write_text(json.dumps(data))

    return apply


def _append(name: str, line: str) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        with open(d / name, "a") as fh:
            fh.write(line + "\n")

    return apply


def _rule(name: str, rule_id: str, key: str, value: object) -> Callable[[Path], None]:
    def fn(data: dict) -> None:
        for r in data["rules"]:
            if r["id"] == rule_id:
                if value is None:
                    r.pop(key)
                else:
                    r[key] = value

    return _edit_json(name, fn)


BROKEN = {
    "unknown class in ingredients": (
        _append("ingredients.csv", "99999991,madeupazole,,no_such_class,review"),
        "unknown class",
    ),
    "bad ingredient code": (_append("ingredients.csv", "12ab,madeup,,nsaid,review"), "bad RxCUI"),
    "ingredient code neither confirmed nor flagged": (
        _append("ingredients.csv", "99999994,madeupol,,nsaid,"),
        "must be vsac and/or ref, or review",
    ),
    "ingredient confirmed and flagged at once": (
        _append("ingredients.csv", "99999995,madeupine,,nsaid,vsac|review"),
        "must be vsac and/or ref, or review",
    ),
    "class without citation": (
        _edit_json("classes.json", lambda d: d["classes"]["qt_risk"].pop("citation")),
        "classes.json: qt_risk: missing citation",
    ),
    "class cites unknown source": (
        _edit_json("classes.json", lambda d: d["classes"]["maoi"].__setitem__("citation", ["nobody2099"])),
        "'nobody2099' is not a source",
    ),
    "class with no member": (
        _edit_json(
            "classes.json",
            lambda d: d["classes"].__setitem__("empty_class", {"name": "x", "citation": ["fda_labels"]}),
        ),
        "no ingredient in ingredients.csv: empty_class",
    ),
    "product with dangling ingredient": (
        _append("products.csv", "99999992,SCD,Madeup 5 MG Oral Tablet,424242,synthea"),
        "unknown ingredient 424242",
    ),
    "product without source": (
        _append("products.csv", "99999993,SCD,Ibuprofen 1 MG,5640,"),
        "missing source",
    ),
    "interaction citation missing": (
        _rule("interactions.json", "anticoagulant-nsaid", "citation", []),
        "citation",
    ),
    "interaction cites unknown source": (
        _rule("interactions.json", "anticoagulant-nsaid", "citation", ["nobody2099"]),
        "'nobody2099' is not a source",
    ),
    "interaction names unknown class": (
        _rule("interactions.json", "anticoagulant-nsaid", "b", ["nsaids_typo"]),
        "unknown class 'nsaids_typo'",
    ),
    "interaction names unknown ingredient": (
        _rule("interactions.json", "anticoagulant-nsaid", "b", ["31415926"]),
        "RxCUI 31415926 is not an ingredient",
    ),
    "interaction without mechanism": (
        _rule("interactions.json", "anticoagulant-nsaid", "mechanism", None),
        "mechanism",
    ),
    "bad severity": (
        _rule("interactions.json", "anticoagulant-nsaid", "severity", "awful"),
        "severity 'awful'",
    ),
    "monitor names unknown lab order": (
        _rule("interactions.json", "warfarin-azole", "monitor", ["tea-leaves"]),
        "unknown 'tea-leaves'",
    ),
    "renal bands out of order": (
        _rule(
            "renal.json",
            "nsaid",
            "bands",
            [
                {"below": 45, "severity": "moderate", "action": "reduce", "advice": "x"},
                {"below": 30, "severity": "major", "action": "avoid", "advice": "y"},
            ],
        ),
        "increasing order",
    ),
    "beers without citation": (_rule("beers.json", "tca", "citation", None), "missing citation"),
    "bad loinc in labs": (
        _edit_json("labs.json", lambda d: d["labs"]["potassium"].__setitem__("loinc", ["2823-4"])),
        "bad LOINC code '2823-4'",
    ),
    "thresholds out of order": (
        _edit_json("scoring.json", lambda d: d["thresholds"].__setitem__("warning", 90)),
        "thresholds must satisfy",
    ),
    "non-interruptive allowed above info": (
        _edit_json("scoring.json", lambda d: d.__setitem__("non_interruptive_max", "warning")),
        "non_interruptive_max",
    ),
    "duplicate rule id": (
        _edit_json("interactions.json", lambda d: d["rules"].append(dict(d["rules"][0]))),
        "duplicate id",
    ),
    "invalid json": (lambda d: (d / "beers.json").write_text("{not json"), "beers.json: not valid JSON"),
    "missing file": (lambda d: (d / "renal.json").unlink(), "renal.json: file missing"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_invalid_knowledge_is_refused_with_a_message(tmp_path: Path, case: str) -> None:
    breaker, message = BROKEN[case]
    d = _copy(tmp_path)
    load_knowledge(d)  # the copy itself is valid
    breaker(d)
    with pytest.raises(KnowledgeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_knowledge(d)


def test_service_refuses_to_start_on_a_broken_knowledge_base(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    _append("ingredients.csv", "99999991,madeupazole,,no_such_class,review")(d)
    settings = Settings(services={"medication-risk": {"knowledge_dir": str(d)}})
    with pytest.raises(ServiceLoadError, match=r"medication-risk knowledge base is invalid: .*unknown class"):
        MedicationRiskService.from_settings(settings).load()


def test_hooks_prefetch_asks_for_exactly_the_labs_the_rules_read() -> None:
    from urllib.parse import parse_qs, urlsplit

    hooks = json.loads((KB_DIR.parents[2] / "hooks.json").read_text())
    entry = next(s for s in hooks["services"] if s["id"] == "medication-risk")
    assert entry["hook"] == "order-sign"
    query = parse_qs(urlsplit(entry["prefetch"]["labs"]).query)
    asked = {c.split("|")[1] for c in query["code"][0].split(",")}
    kb = load_knowledge()
    assert asked == {code for lab in kb.labs.values() for code in lab.loinc}
    assert query["_sort"] == ["-date"] and int(query["_count"][0]) <= 200
    for key, url in entry["prefetch"].items():
        if "?" in url:
            assert "_count=" in url, key  # every search is bounded
