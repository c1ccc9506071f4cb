"""The 15 ONC high-priority interactions (Phansalkar 2012) fire whichever drug arrives first, coded
with RxNorm product codes, ingredient codes or only text; the ONC non-interruptive pairs
(Phansalkar 2013) never produce a warning or critical card."""

from __future__ import annotations

import pytest

from cds.services.medication_risk.knowledge import Knowledge
from tests.medication.conftest import draft, egfr, kinds, med, run

# rule id -> (drug A, drug B): representative ingredients (RxCUI, name) of the two sides.
ONC_HIGH_PRIORITY = {
    "onc-amphetamine-maoi": (("6901", "methylphenidate"), ("8123", "phenelzine")),
    "onc-atazanavir-ppi": (("343047", "atazanavir"), ("7646", "omeprazole")),
    "onc-febuxostat-thiopurine": (("73689", "febuxostat"), ("1256", "azathioprine")),
    "onc-ssri-maoi": (("32937", "paroxetine"), ("10734", "tranylcypromine")),
    "onc-irinotecan-cyp3a4-inhibitor": (("51499", "irinotecan"), ("6135", "ketoconazole")),
    "onc-narcotic-maoi": (("6754", "meperidine"), ("8123", "phenelzine")),
    "onc-tca-maoi": (("5691", "imipramine"), ("6011", "isocarboxazid")),
    "onc-qt-qt": (("5093", "haloperidol"), ("6813", "methadone")),
    "onc-ramelteon-cyp1a2": (("596205", "ramelteon"), ("42355", "fluvoxamine")),
    "onc-pi-cyp3a4-inducer": (("460132", "darunavir"), ("9384", "rifampin")),
    "onc-statin-cyp3a4-inhibitor": (("36567", "simvastatin"), ("21212", "clarithromycin")),
    "onc-ergot-cyp3a4-inhibitor": (("4025", "ergotamine"), ("85762", "ritonavir")),
    "onc-tizanidine-cyp1a2": (("57258", "tizanidine"), ("2551", "ciprofloxacin")),
    "onc-tranylcypromine-procarbazine": (("10734", "tranylcypromine"), ("8702", "procarbazine")),
    "onc-triptan-maoi": (("37418", "sumatriptan"), ("9639", "selegiline")),
}


def single_product(kb: Knowledge, rxcui: str) -> tuple[str, str] | None:
    """A product code in the knowledge base whose only ingredient is `rxcui` (from the shared data)."""
    import csv

    with open(kb.directory / "products.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["ingredients"] == rxcui:
                return row["rxcui"], row["name"]
    return None


def coded(kb: Knowledge, drug: tuple[str, str], how: str) -> dict:
    """A medication concept for a drug: by product code (falling back to the ingredient code when no
    product of it is in the shared data), by ingredient code, or by text only."""
    rxcui, name = drug
    if how == "product":
        prod = single_product(kb, rxcui)
        return {"code": prod[0], "display": prod[1]} if prod else {"code": rxcui, "display": name}
    if how == "ingredient":
        return {"code": rxcui, "display": name}
    return {"text": f"{name.capitalize()} 10 MG Oral Tablet"}


def test_all_fifteen_onc_rules_are_in_the_knowledge_base(kb: Knowledge) -> None:
    onc = {r.id for r in kb.interactions if r.onc == "high-priority"}
    assert onc == set(ONC_HIGH_PRIORITY)
    for rule in kb.interactions:
        if rule.id in ONC_HIGH_PRIORITY:
            a, b = ONC_HIGH_PRIORITY[rule.id]
            assert a[0] in rule.a and b[0] in rule.b, rule.id
            assert "phansalkar2012" in rule.citation


def test_product_codes_cover_at_least_the_drugs_found_in_the_shared_data(kb: Knowledge) -> None:
    with_products = [
        r for r, (a, b) in ONC_HIGH_PRIORITY.items() if single_product(kb, a[0]) or single_product(kb, b[0])
    ]
    assert len(with_products) >= 6


@pytest.mark.parametrize("how", ["product", "ingredient", "text"])
@pytest.mark.parametrize("first", ["a", "b"])
@pytest.mark.parametrize("rule_id", sorted(ONC_HIGH_PRIORITY))
def test_onc_high_priority_fires_from_both_orders_of_arrival(service, kb, rule_id, first, how) -> None:
    a, b = ONC_HIGH_PRIORITY[rule_id]
    active_drug, draft_drug = (a, b) if first == "a" else (b, a)
    cards = run(
        service,
        drafts=[draft("d1", **coded(kb, draft_drug, how))],
        active=[med("m1", **coded(kb, active_drug, how))],
    )
    found = kinds(cards)
    assert f"ddi:{rule_id}" in found, (rule_id, found)
    assert found[f"ddi:{rule_id}"] in ("warning", "critical")


def test_onc_pair_between_two_drafts_is_reported_once(service) -> None:
    cards = run(service, drafts=[draft("d1", "36567", "simvastatin"), draft("d2", "21212", "clarithromycin")])
    assert [c.kind for c in cards].count("ddi:onc-statin-cyp3a4-inhibitor") == 1


# rule id -> a representative pair (RxCUI, name) from the ONC non-interruptive list.
NON_INTERRUPTIVE = {
    "ni-ace-salicylate": (("29046", "lisinopril"), ("1191", "aspirin")),
    "ni-ace-arb": (("29046", "lisinopril"), ("52175", "losartan")),
    "ni-ace-thiazide": (("29046", "lisinopril"), ("5487", "hydrochlorothiazide")),
    "ni-ace-nsaid": (("29046", "lisinopril"), ("5640", "ibuprofen")),
    "ni-thiazide-nsaid": (("5487", "hydrochlorothiazide"), ("7258", "naproxen")),
    "ni-bb-ssri": (("6918", "metoprolol"), ("36437", "sertraline")),
    "ni-bb-nsaid": (("6918", "metoprolol"), ("5640", "ibuprofen")),
    "ni-bb-dhp-ccb": (("6918", "metoprolol"), ("17767", "amlodipine")),
    "ni-bb-thyroid": (("6918", "metoprolol"), ("10582", "levothyroxine")),
    "ni-bb-calcium": (("6918", "metoprolol"), ("1897", "calcium carbonate")),
    "ni-anticoagulant-acetaminophen": (("11289", "warfarin"), ("161", "acetaminophen")),
    "ni-anticoagulant-statin": (("11289", "warfarin"), ("83367", "atorvastatin")),
    "ni-anticoagulant-ppi": (("11289", "warfarin"), ("7646", "omeprazole")),
    "ni-anticoagulant-corticosteroid": (("1364430", "apixaban"), ("8640", "prednisone")),
    "ni-niacin-statin": (("7393", "niacin"), ("83367", "atorvastatin")),
    "ni-thyroid-calcium": (("10582", "levothyroxine"), ("1897", "calcium carbonate")),
    "ni-thyroid-statin": (("10582", "levothyroxine"), ("36567", "simvastatin")),
    "ni-ppi-benzodiazepine": (("7646", "omeprazole"), ("6470", "lorazepam")),
    "ni-sulfonylurea-ace": (("4821", "glipizide"), ("29046", "lisinopril")),
    "ni-methotrexate-folic-acid": (("6851", "methotrexate"), ("4511", "folic acid")),
    "ni-dipyridamole-statin": (("3521", "dipyridamole"), ("42463", "pravastatin")),
}


def test_every_non_interruptive_rule_is_tested(kb: Knowledge) -> None:
    ni = {r.id for r in kb.interactions if r.onc == "non-interruptive"}
    assert ni == set(NON_INTERRUPTIVE)
    assert all(
        r.severity == "minor" and r.citation == ("phansalkar2013",) for r in kb.interactions if r.id in ni
    )


@pytest.mark.parametrize("first", ["a", "b"])
@pytest.mark.parametrize("rule_id", sorted(NON_INTERRUPTIVE))
def test_non_interruptive_pairs_stay_quiet(service, rule_id, first) -> None:
    a, b = NON_INTERRUPTIVE[rule_id]
    active_drug, draft_drug = (a, b) if first == "a" else (b, a)
    cards = run(service, drafts=[draft("d1", *draft_drug)], active=[med("m1", *active_drug)], age=50)
    assert not [c for c in cards if c.indicator in ("warning", "critical")], [
        (c.kind, c.indicator) for c in cards
    ]


@pytest.mark.parametrize("rule_id", sorted(NON_INTERRUPTIVE))
def test_non_interruptive_pairs_never_exceed_info_even_in_a_frail_patient(service, rule_id) -> None:
    a, b = NON_INTERRUPTIVE[rule_id]
    cards = run(service, drafts=[draft("d1", *b)], active=[med("m1", *a), egfr(18)], age=90)
    for c in cards:
        if c.kind.startswith("ddi:ni-"):
            assert c.indicator == "info"
