"""Breadth of the knowledge base, checked over the knowledge base itself rather than hand-picked pairs.

- Every ONC high-priority rule (Phansalkar 2012) fires, at warning or above, for every pair of
  ingredients its two classes list, whichever drug is the draft and whichever is already taken
  (ingredient RxCUIs, through the service's order-sign path).
- Every pair an ONC non-interruptive rule (Phansalkar 2013) lists stays below warning, unless the
  same two ingredients also match a more serious rule (listed in the test, so a new overlap is seen).
- Classes: each one the rules use has members and a citation; the ONC classes hold the members the
  issue names; membership is stated per ingredient RxCUI, confirmed or flagged for review.
"""

from __future__ import annotations

import csv

import pytest

from cds.services.medication_risk.knowledge import KB_DIR, Knowledge
from tests.medication.conftest import RX, draft, med, run
from tests.medication.test_onc_interactions import NON_INTERRUPTIVE

INTERRUPT = ("warning", "critical")


def _onc(kb: Knowledge, kind: str) -> list[str]:
    return sorted(r.id for r in kb.interactions if r.onc == kind)


def _pairs(kb: Knowledge, rule_id: str) -> list[tuple[str, str]]:
    rule = next(r for r in kb.interactions if r.id == rule_id)
    return sorted((x, y) for x in rule.a for y in rule.b if x != y)


def _cards(service, kb: Knowledge, draft_code: str, active_code: str, age: int = 50):
    return run(
        service,
        drafts=[draft("d1", draft_code, kb.ingredient_label(draft_code))],
        active=[med("m1", active_code, kb.ingredient_label(active_code))],
        age=age,
    )


ONC_RULES = [
    "onc-amphetamine-maoi",
    "onc-atazanavir-ppi",
    "onc-ergot-cyp3a4-inhibitor",
    "onc-febuxostat-thiopurine",
    "onc-irinotecan-cyp3a4-inhibitor",
    "onc-narcotic-maoi",
    "onc-pi-cyp3a4-inducer",
    "onc-qt-qt",
    "onc-ramelteon-cyp1a2",
    "onc-ssri-maoi",
    "onc-statin-cyp3a4-inhibitor",
    "onc-tca-maoi",
    "onc-tizanidine-cyp1a2",
    "onc-tranylcypromine-procarbazine",
    "onc-triptan-maoi",
]


def test_the_fifteen_onc_rules_are_the_parametrised_ones(kb: Knowledge) -> None:
    assert _onc(kb, "high-priority") == ONC_RULES


@pytest.mark.parametrize("rule_id", ONC_RULES)
def test_every_member_pair_of_an_onc_rule_interrupts_from_both_orders(service, kb, rule_id) -> None:
    pairs = _pairs(kb, rule_id)
    assert pairs
    missed = []
    for x, y in pairs:
        assert any(r.id == rule_id for r in kb.pairs[(x, y)]), (x, y)
        for d, a in ((x, y), (y, x)):
            if not any(c.indicator in INTERRUPT for c in _cards(service, kb, d, a)):
                missed.append((kb.ingredient_label(d), kb.ingredient_label(a)))
    assert not missed, f"{len(missed)} of {2 * len(pairs)} orders silent: {missed[:10]}"


# Pairs inside an ONC non-interruptive class pair that are also a serious interaction of their own.
NON_INTERRUPTIVE_OVERLAPS = {
    ("sotalol", "citalopram"): "onc-qt-qt",
    ("sotalol", "escitalopram"): "onc-qt-qt",
}


def test_the_non_interruptive_rules_are_the_parametrised_ones(kb: Knowledge) -> None:
    assert _onc(kb, "non-interruptive") == sorted(NON_INTERRUPTIVE)


@pytest.mark.parametrize("rule_id", sorted(NON_INTERRUPTIVE))
def test_every_member_pair_of_a_non_interruptive_rule_stays_below_warning(service, kb, rule_id) -> None:
    loud = []
    for x, y in _pairs(kb, rule_id):
        names = (kb.ingredient_label(x), kb.ingredient_label(y))
        serious = [r.id for r in kb.pairs[(x, y)] if not r.non_interruptive]
        if serious:
            assert NON_INTERRUPTIVE_OVERLAPS.get(names) in serious, (names, serious)
            continue
        for d, a in ((x, y), (y, x)):
            # age 50: no Beers finding, so any interrupting card would come from the pair itself
            interrupting = [c.kind for c in _cards(service, kb, d, a) if c.indicator in INTERRUPT]
            if interrupting:
                loud.append((kb.ingredient_label(d), kb.ingredient_label(a), interrupting))
    assert not loud, loud[:10]


# The members the issue names as missing, by class (ingredient names in ingredients.csv).
NAMED_MEMBERS = {
    "maoi": {
        "phenelzine",
        "tranylcypromine",
        "isocarboxazid",
        "selegiline",
        "rasagiline",
        "safinamide",
        "procarbazine",
    },
    "maoi_like": {"linezolid", "methylene blue"},
    # Phansalkar 2012 table 2 (amphetamine derivatives; PPIs with dexlansoprazole added by the panel)
    "amphetamine_class": {
        "dexmethylphenidate",
        "dextroamphetamine",
        "methylphenidate",
        "lisdexamfetamine",
        "methamphetamine",
        "pseudoephedrine",
        "amphetamine",
        "phentermine",
        "atomoxetine",
    },
    "ppi": {"omeprazole", "esomeprazole", "lansoprazole", "dexlansoprazole", "pantoprazole", "rabeprazole"},
    "thiopurine": {"azathioprine", "mercaptopurine"},
    "tca": {"trimipramine", "amitriptyline", "imipramine", "nortriptyline", "protriptyline", "amoxapine"},
    "snri": {"milnacipran", "levomilnacipran", "venlafaxine", "duloxetine", "desvenlafaxine"},
    "serotonergic_opioid": {
        "tramadol",
        "meperidine",
        "methadone",
        "fentanyl",
        "tapentadol",
        "dextromethorphan",
    },
    "qt_risk": {
        "disopyramide",
        "droperidol",
        "haloperidol",
        "chloroquine",
        "dofetilide",
        "pentamidine",
        "ibutilide",
        "sotalol",
        "amiodarone",
        "methadone",
        "arsenic trioxide",
    },
    "azole_antifungal": {"fluconazole", "ketoconazole", "itraconazole", "voriconazole", "posaconazole"},
    "strong_cyp3a4_inhibitor": {"clarithromycin", "ritonavir", "cobicistat", "ketoconazole", "nefazodone"},
    "strong_cyp3a4_inducer": {"rifampin", "carbamazepine", "phenytoin", "st. john's wort", "enzalutamide"},
    "benzodiazepine": {"alprazolam", "lorazepam", "clonazepam", "diazepam", "midazolam", "clobazam"},
    "z_drug": {"zolpidem", "eszopiclone", "zaleplon"},
    "gabapentinoid": {"gabapentin", "pregabalin"},
    "anticholinergic": {"oxybutynin", "benztropine", "diphenhydramine", "hydroxyzine", "amitriptyline"},
    "anticoagulant": {"warfarin", "apixaban", "rivaroxaban", "dabigatran etexilate", "enoxaparin", "heparin"},
    "nephrotoxin": {"gentamicin", "vancomycin", "amphotericin b", "cisplatin", "tacrolimus"},
    "potassium_raising": {"spironolactone", "lisinopril", "losartan", "trimethoprim", "potassium chloride"},
}


@pytest.mark.parametrize("cls", sorted(NAMED_MEMBERS))
def test_named_members_are_in_their_class(kb: Knowledge, cls: str) -> None:
    names = {kb.ingredient_label(i) for i in kb.class_members[cls]}
    assert NAMED_MEMBERS[cls] <= names, NAMED_MEMBERS[cls] - names


def test_every_class_has_members_and_a_known_citation(kb: Knowledge) -> None:
    for cls, members in kb.class_members.items():
        assert members, cls
        assert kb.class_citations[cls] and all(s in kb.sources for s in kb.class_citations[cls]), cls


def test_every_ingredient_code_is_confirmed_or_flagged_for_review(kb: Knowledge) -> None:
    with open(KB_DIR / "ingredients.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(kb.ingredients) >= 500
    for row in rows:
        check = set(row["check"].split("|"))
        assert check == {"review"} or check <= {"vsac", "ref"}, row
    # the review file lists every code still to confirm, so a pharmacist can work through them
    review = (KB_DIR.parents[2] / "docs" / "medication-knowledge.md").read_text()
    for row in rows:
        if row["check"] == "review":
            assert f"{row['rxcui']} {row['name']}" in review, row


def test_rxcui_evidence_matches_the_ingredient_table() -> None:
    """Each code confirmed from a public source is `ref` with that exact name and cites a pinned file;
    each code a source gives to another drug is still `review` (never silently trusted)."""
    with open(KB_DIR / "ingredients.csv", newline="") as fh:
        table = {row["rxcui"]: row for row in csv.DictReader(fh)}
    with open(KB_DIR / "rxcui_evidence.csv", newline="") as fh:
        evidence = list(csv.DictReader(fh))
    assert len(evidence) >= 150
    assert len({e["rxcui"] for e in evidence}) == len(evidence)
    for e in evidence:
        row = table.get(e["rxcui"])
        assert row is not None and row["name"] == e["name"], e
        repo, _, rest = e["source"].removeprefix("github:").partition("@")
        commit, _, path = rest.partition(":")
        assert "/" in repo and len(commit) >= 12 and path, e
        if e["note"].startswith("wrong:"):
            assert row["check"] == "review", e
        else:
            assert "ref" in row["check"].split("|"), e
    # a corrected code no longer appears anywhere as that ingredient
    for e in evidence:
        if e["note"].startswith("corrected from "):
            old = e["note"].split()[2]
            assert table.get(old, {}).get("name") != e["name"], e


def test_the_clinical_review_file_is_current() -> None:
    """docs/medication-knowledge.md is generated from the data; regenerate it after any change."""
    import importlib.util

    path = KB_DIR.parents[2] / "scripts" / "medication_kb_review.py"
    spec = importlib.util.spec_from_file_location("medication_kb_review", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "run: python scripts/medication_kb_review.py"


def test_issue_cases_are_graded_as_the_references_say(service, kb: Knowledge) -> None:
    """Methotrexate + trimethoprim: avoid (critical); fluconazole + simvastatin: interrupts."""
    cards = run(
        service,
        drafts=[draft("d1", "10829", "trimethoprim")],
        active=[med("m1", "6851", "methotrexate")],
    )
    assert any(c.indicator == "critical" for c in cards), [(c.kind, c.indicator) for c in cards]
    cards = run(
        service, drafts=[draft("d1", "4450", "fluconazole")], active=[med("m1", "36567", "simvastatin")]
    )
    assert any(c.indicator in INTERRUPT for c in cards)


@pytest.mark.parametrize(
    ("ingredient", "name"),
    [("29046", "lisinopril"), ("1364430", "apixaban"), ("67108", "enoxaparin"), ("11289", "warfarin")],
)
def test_common_clinical_drugs_resolve_by_product_code(
    service, kb: Knowledge, ingredient: str, name: str
) -> None:
    """Products from the VSAC medication value sets resolve by code alone (no display, no text)."""
    codes = [code for code, ings in kb.products.items() if ings == {ingredient}]
    assert codes, name
    for code in codes:
        concept = {"coding": [{"system": RX, "code": code}]}
        assert service.resolver.concept_ingredients(concept) == {ingredient}, (name, code)


@pytest.mark.data
def test_vsac_confirmed_codes_are_in_the_value_sets_with_that_name(kb: Knowledge, ecqm_dir) -> None:
    """An ingredient marked `vsac` has its RxCUI, with the same name, in the shared VSAC expansions;
    and no ingredient code of those value sets is given a different name here."""
    import json

    vsac: dict[str, str] = {}
    for path in sorted(ecqm_dir.glob("valuesets*/*.json")):
        for c in json.loads(path.read_text()).get("expansion", {}).get("contains", []):
            if "rxnorm" in c.get("system", "") and c.get("code") and c.get("display"):
                vsac[c["code"]] = c["display"].lower()
    for ing in kb.ingredients.values():
        if "vsac" in ing.check:
            assert vsac.get(ing.rxcui) == ing.name, ing
        elif ing.rxcui in vsac:
            assert vsac[ing.rxcui] == ing.name, (ing, vsac[ing.rxcui])
