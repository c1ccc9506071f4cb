"""Each knowledge-base file's declared shape: the shipped files fit it, and a misfit is refused
with a message that names the file, the entry (rule id or key) and the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cds.runtime.shapes import decode_json
from cds.services.medication_risk import knowledge_files as kf
from cds.services.medication_risk.knowledge import KB_DIR, KnowledgeError, load_knowledge

FILES = {
    "manifest.json": kf.ManifestFile,
    "classes.json": kf.ClassesFile,
    "interactions.json": kf.InteractionsFile,
    "renal.json": kf.RenalFile,
    "beers.json": kf.BeersFile,
    "labs.json": kf.LabsFile,
    "allergy_cross.json": kf.AllergyFile,
    "scoring.json": kf.ScoringFile,
    "dosing.json": kf.DosingFile,
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_shipped_file_fits_its_shape_and_round_trips(name: str) -> None:
    raw = (KB_DIR / name).read_bytes()
    doc = decode_json(raw, FILES[name])
    # Nothing is lost: encoding the decoded shape gives back every key the file holds.
    again = json.loads(msgspec.json.encode(doc))
    original = json.loads(raw)

    def contained(a: Any, b: Any) -> bool:
        if isinstance(a, dict):
            return isinstance(b, dict) and all(k in b and contained(v, b[k]) for k, v in a.items())
        if isinstance(a, list):
            return isinstance(b, list) and len(a) == len(b) and all(map(contained, a, b))
        return bool(a == b)

    assert contained(original, again)


def _broken(tmp_path: Path, name: str, edit: Any) -> Path:
    d = tmp_path / "kb"
    shutil.copytree(KB_DIR, d)
    doc = json.loads((d / name).read_text())
    edit(doc)
    (d / name).write_text(json.dumps(doc))
    return d


def _rules(name: str) -> list[tuple[int, str]]:
    rules = json.loads((KB_DIR / name).read_text())["rules"]
    n = len(rules)
    return [(i, rules[i]["id"]) for i in sorted({0, n // 2, n - 1})]


@pytest.mark.parametrize("name", ["interactions.json", "renal.json", "beers.json", "labs.json"])
def test_a_misspelt_key_in_a_rule_is_refused_naming_the_rule(tmp_path: Path, name: str) -> None:
    for i, rid in _rules(name):
        d = _broken(tmp_path / str(i), name, lambda doc, i=i: doc["rules"][i].__setitem__("citaton", ["x"]))
        with pytest.raises(KnowledgeError) as e:
            load_knowledge(d)
        assert str(e.value) == f"{name}: {rid}: object contains unknown field `citaton` (at $.rules[{i}])"


@pytest.mark.parametrize("name", ["interactions.json", "beers.json"])
def test_a_bad_severity_lists_the_allowed_ones(tmp_path: Path, name: str) -> None:
    i, rid = _rules(name)[-1]
    d = _broken(tmp_path, name, lambda doc: doc["rules"][i].__setitem__("severity", "severe"))
    with pytest.raises(KnowledgeError) as e:
        load_knowledge(d)
    assert str(e.value) == (
        f"{name}: {rid}: severity 'severe' is not allowed; severity must be contraindicated, major, minor or moderate "
        f"(at $.rules[{i}].severity)"
    )


def test_an_entry_keyed_by_id_is_named_by_its_key(tmp_path: Path) -> None:
    keys = list(json.loads((KB_DIR / "classes.json").read_text())["classes"])
    for key in (keys[0], keys[len(keys) // 2], keys[-1]):
        d = _broken(
            tmp_path / key, "classes.json", lambda doc, k=key: doc["classes"][k].__setitem__("name", 7)
        )
        with pytest.raises(
            KnowledgeError, match=rf"^classes\.json: {key}: 'name': Expected `str`, got `int`"
        ):
            load_knowledge(d)


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        (
            "renal.json",
            lambda d: d["rules"][0]["bands"][0].update(action="stop"),
            "action 'stop' is not allowed; action must be avoid, monitor or reduce",
        ),
        (
            "renal.json",
            lambda d: d["rules"][0].update(measure="bsa"),
            "measure 'bsa' is not allowed; measure must be crcl or egfr",
        ),
        ("renal.json", lambda d: d["rules"][0].update(bands=[]), "Expected `array` of length >= 1"),
        ("interactions.json", lambda d: d["rules"][0].update(onc="urgent"), "onc 'urgent' is not allowed"),
        (
            "interactions.json",
            lambda d: d["rules"][0].update(factors=["bmi"]),
            "factors[0] 'bmi' is not allowed; factors[0] must be age, count or renal",
        ),
        ("interactions.json", lambda d: d["rules"][0].update(a=[]), "'a': Expected `array` of length >= 1"),
        ("interactions.json", lambda d: d["rules"][0].update(problem=" "), "missing problem"),
        ("labs.json", lambda d: d["labs"]["inr"]["bands"][0].update(op="=>"), "inr: op '=>' is not allowed"),
        ("manifest.json", lambda d: d.update(date="29/11/2026"), "bad date (YYYY-MM-DD) '29/11/2026'"),
        (
            "manifest.json",
            lambda d: d["sources"]["beers2023"].update(url="doi:x"),
            "beers2023: bad absolute URL",
        ),
        (
            "scoring.json",
            lambda d: d.update(max_cards_per_order=0),
            "'max_cards_per_order': Expected `int` >= 1",
        ),
        ("scoring.json", lambda d: d["thresholds"].pop("info"), "missing required field `info`"),
        (
            "allergy_cross.json",
            lambda d: d.update(ingredient_severity="bad"),
            "ingredient_severity 'bad' is not allowed",
        ),
        (
            "scoring.json",
            lambda d: d["escalations"]["rules"][1].update(indicator="urgent"),
            "qt-drug-at-qtc-500: indicator 'urgent' is not allowed; indicator must be critical, info or warning",
        ),
        ("scoring.json", lambda d: d["escalations"]["rules"][0].update(op="=="), "op '==' is not allowed"),
        ("scoring.json", lambda d: d["documentation"]["levels"][0].update(prefixes=[]), "'prefixes'"),
        ("scoring.json", lambda d: d["change_first"].update(ordr=[]), "unknown field `ordr`"),
    ],
)
def test_shape_errors_name_the_field(tmp_path: Path, name: str, edit: Any, message: str) -> None:
    d = _broken(tmp_path, name, edit)
    with pytest.raises(KnowledgeError) as e:
        load_knowledge(d)
    assert str(e.value).startswith(f"{name}: ") and message in str(e.value)


def test_a_bad_cell_in_a_csv_names_the_line(tmp_path: Path) -> None:
    d = tmp_path / "kb"
    shutil.copytree(KB_DIR, d)
    lines = (d / "products.csv").read_text().splitlines()
    lines[5] = lines[5].replace(",SCD,", ",XYZ,").replace(",SBD,", ",XYZ,")
    (d / "products.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        KnowledgeError,
        match=r"^products\.csv line 6: tty 'XYZ' is not allowed; tty must be BPCK, GPCK, SBD or SCD",
    ):
        load_knowledge(d)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["change_first"]["order"].append("nsaids"), "change_first names unknown class 'nsaids'"),
        (
            lambda d: d["change_first"]["cautions"][0].update({"class": "salicylates"}),
            "change_first caution names unknown class 'salicylates'",
        ),
        (lambda d: d["escalations"]["rules"][0].update(lab="sodium"), "unknown lab or operator"),
        (
            lambda d: d["escalations"]["rules"][0]["drugs"].append("nope"),
            "unknown class or ingredient 'nope'",
        ),
    ],
)
def test_scoring_cross_references_are_checked_at_service_start(
    tmp_path: Path, edit: Any, message: str
) -> None:
    from cds.hooks.service import ServiceLoadError
    from cds.runtime.settings import Settings
    from cds.services.medication_risk.service import MedicationRiskService

    d = _broken(tmp_path, "scoring.json", edit)
    with pytest.raises(ServiceLoadError, match=f"scoring.json: .*{message}"):
        MedicationRiskService.from_settings(
            Settings(services={"medication-risk": {"knowledge_dir": str(d)}})
        ).load()
