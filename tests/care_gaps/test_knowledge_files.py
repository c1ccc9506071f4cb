"""The care-gaps knowledge files fit their declarations (measures/spec.MeasureFile, the
point-of-care file), and a broken file is refused naming the file, entry and field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cds.hooks.service import ServiceLoadError
from cds.knowledge import KNOWLEDGE_DIR
from cds.runtime.settings import Settings
from cds.runtime.shapes import ShapeError, checked_json
from cds.services.care_gaps import knowledge_files as kf
from cds.services.care_gaps import point_of_care as poc
from cds.services.care_gaps.measures import common
from cds.services.care_gaps.measures.common import LIBRARIES_FILE
from cds.services.care_gaps.measures.spec import (
    MEASURES_DIR,
    LibrariesFile,
    MeasureFile,
    check_libraries,
    check_measure,
    load_spec,
)
from cds.services.care_gaps.service import CareGapsService

MEASURES = sorted(p.stem for p in MEASURES_DIR.glob("CMS*.json"))
POC = KNOWLEDGE_DIR / "care_gaps_point_of_care.json"


@pytest.mark.parametrize("measure_id", MEASURES)
def test_every_measure_file_fits_its_declaration(measure_id: str) -> None:
    spec = load_spec(measure_id)
    assert spec.id == measure_id and spec.data == json.loads(
        (MEASURES_DIR / f"{measure_id}.json").read_text()
    )


def _measure(tmp_path: Path, measure_id: str, edit: Any) -> None:
    doc = json.loads((MEASURES_DIR / f"{measure_id}.json").read_text())
    edit(doc)
    path = tmp_path / f"{measure_id}.json"
    path.write_text(json.dumps(doc))
    checked_json(path, MeasureFile, lambda m: check_measure(m, measure_id))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["valuesets"].update({"Office Visit": "2.16.840.x"}), "bad value set OID '2.16.840.x'"),
        (lambda d: d.update(improvement="better"), "improvement 'better' is not allowed"),
        (lambda d: d.update(id="CMS999"), "id 'CMS999' differs from the file name (CMS125)"),
        (lambda d: d["care_gap"].pop("due"), "missing required field `due`"),
        (lambda d: d["care_gap"]["guideline"].update(url="www.uspstf.org"), "bad absolute URL 'www.uspstf.org'"),
        (lambda d: d["care_gap"]["orders"][0]["resources"][0].update(resourceType="Task"), "resourceType 'Task'"),
        (lambda d: d["care_gap"].update(importance=101), "'importance': Expected `int` <= 100"),
        (lambda d: d["age"].update(max=40), "age.max is below age.min"),
        (lambda d: d["care_gap"].update(orderz=[]), "unknown field `orderz`"),
    ],
)  # fmt: skip
def test_a_broken_measure_file_is_refused_naming_the_field(tmp_path: Path, edit: Any, message: str) -> None:
    with pytest.raises(ShapeError) as e:
        _measure(tmp_path, "CMS125", edit)
    assert str(e.value).startswith("CMS125.json: ") and message in str(e.value), str(e.value)


def test_a_measure_file_may_hold_its_own_parameters(tmp_path: Path) -> None:
    _measure(tmp_path, "CMS125", lambda d: d.update(mammography_window={"years_before_period": 3}))


def test_order_groups_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ShapeError, match="names group 5, not one of 1-4"):
        _measure(tmp_path, "CMS347", lambda d: d["care_gap"]["orders"][0].update(groups=[1, 5]))


def test_the_point_of_care_file_fits_and_a_broken_one_stops_the_service(tmp_path: Path) -> None:
    assert kf.load(POC, kf.PointOfCareFile, kf.check_point_of_care) == json.loads(POC.read_text())
    doc = json.loads(POC.read_text())
    doc["visit_codes"]["preventive"]["cpt_by_age"].reverse()
    (tmp_path / POC.name).write_text(json.dumps(doc))
    with pytest.raises(
        ServiceLoadError, match=r"care_gaps_point_of_care\.json: cpt_by_age must be in increasing age"
    ):
        kf.load(tmp_path / POC.name, kf.PointOfCareFile, kf.check_point_of_care)
    doc = json.loads(POC.read_text())
    doc["egfr"].pop("as")
    (tmp_path / POC.name).write_text(json.dumps(doc))
    with pytest.raises(ServiceLoadError, match=r"missing required field `as` \(at \$\.egfr\)"):
        kf.load(tmp_path / POC.name, kf.PointOfCareFile)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["Hospice"]["valuesets"].update({"Hospice Encounter": "hospice"}), "bad value set OID 'hospice'"),
        (lambda d: d["AdvancedIllnessandFrailty"].pop("age_at_least"), "missing required field `age_at_least`"),
        (lambda d: d["AdvancedIllnessandFrailty"].update(age_at_least=90), "age_at_least must be below"),
        (lambda d: d.update(NewLibrary={}), "unknown field `NewLibrary`"),
    ],
)  # fmt: skip
def test_the_shared_libraries_file_is_checked(tmp_path: Path, edit: Any, message: str) -> None:
    assert checked_json(LIBRARIES_FILE, LibrariesFile, check_libraries) == json.loads(
        LIBRARIES_FILE.read_text()
    )
    doc = json.loads(LIBRARIES_FILE.read_text())
    edit(doc)
    (tmp_path / LIBRARIES_FILE.name).write_text(json.dumps(doc))
    with pytest.raises(ShapeError) as e:
        checked_json(tmp_path / LIBRARIES_FILE.name, LibrariesFile, check_libraries)
    assert str(e.value).startswith("ecqm-libraries.json: ") and message in str(e.value), str(e.value)


@pytest.mark.parametrize(
    ("module", "attr", "reader", "name"),
    [
        (poc, "KNOWLEDGE", poc.knowledge, POC.name),
        (common, "LIBRARIES_FILE", common.libraries, LIBRARIES_FILE.name),
    ],
)
def test_a_broken_file_stops_the_service_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: Any, attr: str, reader: Any, name: str
) -> None:
    """load() reads every knowledge file the service uses, so a broken one stops it at start-up
    (`/readyz` names the file), never on the first request."""
    broken = tmp_path / name
    broken.write_text(json.dumps({"unexpected": True}))
    monkeypatch.setattr(module, attr, broken)
    reader.cache_clear()
    try:
        with pytest.raises(ServiceLoadError, match=re.escape(f"{name}: ")):
            CareGapsService.from_settings(Settings()).load()
    finally:
        monkeypatch.undo()
        reader.cache_clear()  # the next reader reads the shipped file again
    assert CareGapsService.from_settings(Settings()).load().specs
