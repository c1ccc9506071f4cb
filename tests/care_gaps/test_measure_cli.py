"""`cds measure evaluate`: folders and Bundles in, one JSON line per patient and measure out."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from cds.cli import main
from tests.care_gaps.conftest import COLONOSCOPY, encounter, patient, procedure


def _write(folder: Path, *resources: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for r in resources:
        (folder / f"{r['resourceType']}-{r['id']}.json").write_text(json.dumps(r))


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict]]:
    rc = main(["measure", "evaluate", *argv])
    out = capsys.readouterr().out
    return rc, [json.loads(line) for line in out.splitlines()]


def test_folder_one_line_per_patient_and_measure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path / "a", patient("1965-01-01"), encounter(), procedure(COLONOSCOPY, "2020-01-01"))
    rc, lines = _run(capsys, "--period", "2025-01-01", "2025-12-31", str(tmp_path), "--measure", "CMS130")
    assert rc == 0
    assert lines == [
        {
            "patient": "p1",
            "measure": "CMS130",
            "period": {"start": "2025-01-01", "end": "2025-12-31"},
            "populations": {
                "initial-population": 1,
                "denominator": 1,
                "denominator-exclusion": 0,
                "numerator": 1,
            },
        }
    ]


def test_bundle_and_measure_report_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = {**patient("1990-01-01", "male"), "id": "p2"}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (patient("1965-01-01"), encounter(), other)],
    }
    path = tmp_path / "b.json.gz"
    path.write_bytes(gzip.compress(json.dumps(bundle).encode()))
    rc, lines = _run(capsys, "--period", "2025-01-01", "2025-12-31", str(path), "--format", "measurereport")
    assert rc == 0 and len(lines) == 16  # two patients x eight measures
    report = lines[0]
    assert report["resourceType"] == "MeasureReport" and report["type"] == "individual"
    assert report["subject"] == {"reference": "Patient/p1"}
    assert report["measure"].endswith("ColonCancerScreeningFHIR")
    codes = [p["code"]["coding"][0]["code"] for p in report["group"][0]["population"]]
    assert codes == ["initial-population", "denominator", "denominator-exclusion", "numerator"]
    statin = next(r for r in lines if r["measure"].endswith("DiseaseFHIR"))
    assert len(statin["group"]) == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--period", "2025-01-01", "2025-12-31", "/nonexistent/x"], "no such file"),
        (["--period", "2025-13-01", "2025-12-31", "."], "--period"),
        (["--period", "2025-01-01", "2025-12-31", ".", "--measure", "CMS999"], "unknown measure"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["measure", "evaluate", *argv]) == 2
    assert message in capsys.readouterr().err


def test_folder_without_patients(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, encounter())
    assert main(["measure", "evaluate", "--period", "2025-01-01", "2025-12-31", str(tmp_path)]) == 2
    assert "no Patient" in capsys.readouterr().err


def test_ecqm_case_folder(ecqm_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = ecqm_dir / "tests" / "KidneyHealthEvaluationFHIR"
    rc, lines = _run(capsys, "--period", "2025-01-01", "2025-12-31", str(folder), "--measure", "CMS951")
    assert rc == 0 and len(lines) == sum(1 for p in folder.iterdir() if p.is_dir())


def test_bundle_with_urn_uuid_references_splits_patients(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Synthea-style Bundles reference by `urn:uuid:` fullUrl: each patient keeps only its own data."""
    a, b = patient("1965-01-01"), {**patient("1965-01-01"), "id": "p2"}
    visit = {**encounter(), "subject": {"reference": "urn:uuid:p1"}}
    colonoscopy = {**procedure(COLONOSCOPY, "2020-01-01"), "subject": {"reference": "urn:uuid:p1"}}
    entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in (a, b, visit, colonoscopy)]
    path = tmp_path / "synthea.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    rc, lines = _run(capsys, "--period", "2025-01-01", "2025-12-31", str(path), "--measure", "130")
    assert rc == 0
    assert {line["patient"]: line["populations"]["numerator"] for line in lines} == {"p1": 1, "p2": 0}
    assert {line["patient"]: line["populations"]["initial-population"] for line in lines} == {
        "p1": 1,
        "p2": 0,
    }


def test_shipped_value_sets_match_a_fresh_extraction(ecqm_dir: Path, tmp_path: Path) -> None:
    """scripts/extract_valuesets.py is re-runnable and the package ships its current output."""
    import importlib.util

    from cds.services.care_gaps.measures.valuesets import VALUESETS_FILE

    script = Path(__file__).resolve().parents[2] / "scripts" / "extract_valuesets.py"
    spec = importlib.util.spec_from_file_location("extract_valuesets", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "vs.json.gz"
    assert module.main(["--ecqm-dir", str(ecqm_dir), "--out", str(out)]) == 0
    assert out.read_bytes() == VALUESETS_FILE.read_bytes()
