"""Scenario results for people (a readable diff) and for CI (JUnit XML)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from cds.sandbox.runner import Result
from cds.sandbox.scenarios import describe_card


def text_report(results: Sequence[Result], verbose: bool = False) -> str:
    """One line per scenario; the differences of failures indented below it; a summary line."""
    lines = []
    for r in results:
        s = r.scenario
        head = f"{s.id}  [{s.patient} → {s.service}, {r.seconds * 1000:.0f} ms]"
        if r.passed:
            lines.append(f"PASS  {head}")
            if verbose and isinstance(r.response, dict):
                for card in r.response.get("cards") or []:
                    lines.append(f"        card {describe_card(card)}")
            continue
        lines.append(f"FAIL  {head}")
        if r.error:
            lines.append(f"        error: {r.error}")
        for d in r.differences:
            lines.append(f"        - {d}")
        if isinstance(r.response, dict) and isinstance(r.response.get("cards"), list):
            got = r.response["cards"]
            lines.append(f"        got {len(got)} card(s):" if got else "        got no cards")
            lines += [f"          {describe_card(c)}" for c in got]
    failed = sum(not r.passed for r in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed, {len(results)} scenarios")
    return "\n".join(lines)


def write_junit(results: Sequence[Result], path: Path, suite: str = "cds sandbox scenarios") -> None:
    """JUnit XML, one testcase per scenario (classname: the scenario file), for QA's CI."""
    failures = sum(bool(r.differences) and r.error is None for r in results)
    errors = sum(r.error is not None for r in results)
    root = ET.Element("testsuites")
    ts = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(failures),
        errors=str(errors),
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    for r in results:
        tc = ET.SubElement(
            ts, "testcase", classname=r.scenario.file.stem, name=r.scenario.name, time=f"{r.seconds:.3f}"
        )
        if r.error:
            ET.SubElement(tc, "error", message=r.error).text = r.error
        elif r.differences:
            body = "\n".join(r.differences)
            ET.SubElement(tc, "failure", message=r.differences[0]).text = body
        ET.SubElement(tc, "system-out").text = f"POST {r.url} -> HTTP {r.status}"
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
