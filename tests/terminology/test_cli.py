"""`cds terminology map` from the command line: ConceptMap out, summary, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from cds.cli import main


def test_map_writes_a_concept_map_and_a_summary(tmp_path: Path, capsys) -> None:
    src = tmp_path / "local.csv"
    src.write_text(
        "Code,Display,Unit,Specimen\nC1,CREAT SER/PL,mg/dL,\nC2,Creatinine,mg/dL,urine\nC3,Ferritin,ng/mL,\n"
    )
    out = tmp_path / "map.json"
    assert (
        main(["terminology", "map", str(src), "--out", str(out), "--no-embeddings", "--system", "urn:x"]) == 0
    )
    doc = json.loads(out.read_text())
    (group,) = doc["group"]
    assert group["source"] == "urn:x"
    assert [e["target"][0]["equivalence"] for e in group["element"]] == ["equivalent", "inexact", "unmatched"]
    summary = capsys.readouterr().out
    assert "mapped" in summary and "review" in summary and "unmatched" in summary


def test_a_csv_without_code_or_display_is_refused(tmp_path: Path, capsys) -> None:
    src = tmp_path / "bad.csv"
    src.write_text("id,name\n1,x\n")
    assert main(["terminology", "map", str(src), "--no-embeddings"]) == 2
    assert "code, display" in capsys.readouterr().err


def test_threshold_out_of_range_is_refused(tmp_path: Path, capsys) -> None:
    src = tmp_path / "local.csv"
    src.write_text("code,display\nA,K+\n")
    assert main(["terminology", "map", str(src), "--threshold", "1.5", "--no-embeddings"]) == 2
