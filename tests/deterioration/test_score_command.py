"""`cds score deterioration`: one JSON line per patient, exactly the hook's assessment."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from cds.cli import main
from cds.fhir.record import PatientRecord
from cds.runtime.settings import REPO_ROOT
from cds.services.deterioration.model import DeteriorationModel

from .fhir import NOW, sick_patient, well_patient


def test_bundles_and_folders_score_like_the_hook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sick = sick_patient()
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in sick]}
    with gzip.open(tmp_path / "sick.json.gz", "wt") as fh:
        json.dump(bundle, fh)
    folder = tmp_path / "well"
    folder.mkdir()
    for r in well_patient():
        r = dict(r, id=f"w-{r['id']}") if r["resourceType"] != "Patient" else dict(r, id="p2")
        if "subject" in r:
            r["subject"] = {"reference": "Patient/p2"}
        (folder / f"{r['id']}.json").write_text(json.dumps(r))

    assert (
        main(["score", "deterioration", str(tmp_path / "sick.json.gz"), str(folder), "--at", NOW.isoformat()])
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["id"], d["band"]) for d in lines] == [("p1", "critical"), ("p2", "low")]

    model = DeteriorationModel(REPO_ROOT / "models" / "deterioration")
    expected = model.assess(PatientRecord.from_resources(sick, now=NOW), explain=True).to_json()
    assert {k: v for k, v in lines[0].items() if k != "source"} == expected
    assert lines[0]["news2"]["total"] == 15 and lines[0]["top_contributions"]


def test_default_time_is_the_latest_observation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "b.json"
    path.write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": r} for r in sick_patient()],
            }
        )
    )
    assert main(["score", "deterioration", str(path)]) == 0
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["at"] == "2024-05-01T11:00:00+00:00"  # newest observation: one hour before NOW


def test_unreadable_and_missing_paths_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["score", "deterioration", str(tmp_path / "bad.json"), str(tmp_path / "nope.json")]) == 1
    err = capsys.readouterr().err
    assert "not readable FHIR JSON" in err and "not found" in err
