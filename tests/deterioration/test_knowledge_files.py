"""The deterioration knowledge files (NEWS2 chart, sepsis rules, RCP responses) are checked against
their declarations when read: a broken file stops the service naming the file, entry and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cds.hooks.service import ServiceLoadError
from cds.knowledge import KNOWLEDGE_DIR
from cds.runtime.settings import Settings
from cds.services.deterioration import features, news2, sepsis, service
from cds.services.deterioration import knowledge_files as kf
from cds.services.deterioration.service import DeteriorationService

FILES = {
    "news2.json": (kf.News2Chart, kf.check_news2),
    "deterioration_sepsis.json": (kf.SepsisRules, kf.check_sepsis),
    "deterioration_response.json": (kf.ResponseFile, None),
    "deterioration_features.json": (kf.FeaturesFile, kf.check_features),
    "deterioration_conditions.json": (kf.ConditionsFile, kf.check_conditions),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_shipped_files_fit_their_declarations(name: str) -> None:
    shape, check = FILES[name]
    assert kf.load(KNOWLEDGE_DIR / name, shape, check) == json.loads((KNOWLEDGE_DIR / name).read_text())


def _load_edited(tmp_path: Path, name: str, edit: Any) -> None:
    doc = json.loads((KNOWLEDGE_DIR / name).read_text())
    edit(doc)
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    kf.load(path, *FILES[name])


def _swap_bands(d: dict[str, Any]) -> None:
    bands = d["parameters"]["pulse"]["bands"]
    bands[0], bands[1] = bands[1], bands[0]


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("news2.json", lambda d: d["parameters"]["pulse"]["bands"][0].update(points=4), "'points': Expected `int` <= 3"),
        ("news2.json", _swap_bands, "pulse: band maxima must increase"),
        ("news2.json", lambda d: d["parameters"]["pulse"]["bands"][-1].update(max=500), "pulse: only the last band"),
        ("news2.json", lambda d: d["parameters"].pop("pulse"), "missing required field `pulse`"),
        ("news2.json", lambda d: d["consciousness"]["points"].pop("C"), "A, C, V, P and U"),
        ("news2.json", lambda d: d["consciousness"]["points"].update(X=3), "'X' is not allowed"),
        ("news2.json", lambda d: d["bands"].update(medium_min=9), "0 < medium_min < high_min"),
        ("deterioration_sepsis.json", lambda d: d.update(lactate_high_above=1.0), "lactate_suspect_above <"),
        ("deterioration_sepsis.json", lambda d: d["bundle"]["lactate"]["code"].pop("code"), "field `code`"),
        ("deterioration_sepsis.json", lambda d: d["qsofa"].update(systolic_max="100"), "'systolic_max'"),
        ("deterioration_response.json", lambda d: d["responses"]["urgent"].update(priority="soon"), "priority 'soon'"),
        ("deterioration_response.json", lambda d: d["responses"].pop("urgent-ward"), "field `urgent-ward`"),
        ("deterioration_response.json", lambda d: d["responses"]["ward"].update(lable="x"), "unknown field `lable`"),
        ("deterioration_features.json", lambda d: d["features"][0].update(worst="median"), "heart_rate: worst 'median'"),
        ("deterioration_features.json", lambda d: d["features"][0].update(codes=["8867-44"]), "bad LOINC code '8867-44'"),
        ("deterioration_features.json", lambda d: d["features"][0].update(plausible=[350, 1]), "heart_rate: plausible must be"),
        ("deterioration_features.json", lambda d: d["features"][0].pop("reference"), "heart_rate: worst 'furthest' needs"),
        ("deterioration_features.json", lambda d: d["features"].append(d["features"][0]), "names must be unique"),
        ("deterioration_features.json", lambda d: d["model"]["groups"]["trend"]["features"].update(systolic_trend=2), "must be -1, 0 or 1"),
        ("deterioration_conditions.json", lambda d: d["categories"]["cirrhosis"].update(group="chronic"), "cirrhosis: group 'chronic'"),
        ("deterioration_conditions.json", lambda d: d["vasoactive"]["rxnorm"].update({"x7": "y"}), "bad RxCUI 'x7'"),
        ("deterioration_conditions.json", lambda d: d["categories"]["cirrhosis"].update(icd10=[], snomed=[]), "cirrhosis: a category needs"),
    ],
)  # fmt: skip
def test_a_broken_file_is_refused_naming_the_field(
    tmp_path: Path, name: str, edit: Any, message: str
) -> None:
    with pytest.raises(ServiceLoadError) as e:
        _load_edited(tmp_path, name, edit)
    assert str(e.value).startswith(f"{name}: ") and message in str(e.value), str(e.value)


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "news2.json").write_text("{")
    with pytest.raises(ServiceLoadError, match=r"^news2\.json: cannot be read"):
        kf.load(tmp_path / "news2.json", kf.News2Chart)


# Each knowledge file the service reads: the module constant naming it and the cached reader.
READERS = {
    "news2.json": (news2, "KNOWLEDGE", news2.chart),
    "deterioration_sepsis.json": (sepsis, "KNOWLEDGE", sepsis.rules),
    "deterioration_response.json": (service, "RESPONSE", service._response),
    "deterioration_features.json": (features, "KNOWLEDGE", features.knowledge),
    "deterioration_conditions.json": (features, "CONDITIONS", features.conditions_knowledge),
}


def test_every_file_the_service_reads_is_covered() -> None:
    assert set(READERS) == set(FILES)


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_broken_file_stops_the_service_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """load() reads every knowledge file, so a broken one stops the service at start-up (and
    `/readyz` names the file), never on the first request."""
    module, attr, reader = READERS[name]
    broken = tmp_path / name
    broken.write_text(json.dumps({"unexpected": True}))
    monkeypatch.setattr(module, attr, broken)
    reader.cache_clear()
    try:
        with pytest.raises(ServiceLoadError) as e:
            DeteriorationService.from_settings(Settings()).load()
        assert str(e.value).startswith(f"{name}: "), str(e.value)
    finally:
        monkeypatch.undo()
        reader.cache_clear()  # the next reader reads the shipped file again
    assert DeteriorationService.from_settings(Settings()).load().model is not None
