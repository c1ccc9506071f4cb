"""Sepsis prompt: NICE NG51 risk stratification by NEWS2 when sepsis is suspected, qSOFA alongside.

The rules and their sources are data (`cds/knowledge/deterioration_sepsis.json`). Lactate drives
these explicit rules, not the deterioration model (the training data has no lactate).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from cds.knowledge import KNOWLEDGE_DIR
from cds.services.deterioration import knowledge_files
from cds.services.deterioration.features import DeteriorationFeatures, Finding
from cds.services.deterioration.news2 import News2

KNOWLEDGE = KNOWLEDGE_DIR / "deterioration_sepsis.json"
Risk = Literal["low", "moderate", "high"]


@lru_cache(maxsize=1)
def rules() -> dict[str, Any]:
    return knowledge_files.load(KNOWLEDGE, knowledge_files.SepsisRules, knowledge_files.check_sepsis)


@dataclass(frozen=True)
class SepsisPrompt:
    risk: Risk
    reasons: tuple[str, ...]  # why sepsis is suspected and why this risk
    lactate: Finding | None
    infection: str | None
    qsofa: int
    qsofa_missing: tuple[str, ...]


def qsofa(f: DeteriorationFeatures) -> tuple[int, tuple[str, ...]]:
    """qSOFA points from the newest values, and the criteria that could not be checked."""
    q = rules()["qsofa"]
    points, missing = 0, []
    rr, sbp = f.latest.get("respiratory_rate"), f.latest.get("systolic_bp")
    if rr is None:
        missing.append("respiratory rate")
    elif rr.value >= q["respiratory_rate_min"]:
        points += 1
    if sbp is None:
        missing.append("systolic blood pressure")
    elif sbp.value <= q["systolic_max"]:
        points += 1
    if f.consciousness is None:
        missing.append("mentation")
    elif f.consciousness[0] != "A":
        points += 1
    return points, tuple(missing)


def assess(f: DeteriorationFeatures, score: News2) -> SepsisPrompt | None:
    """A prompt when sepsis is suspected and the NG51 risk is moderate or high; None otherwise."""
    r = rules()
    lactate = f.latest.get("lactate")
    high_lactate = lactate is not None and lactate.value > r["lactate_suspect_above"]
    if f.infection is None and not high_lactate:
        return None
    reasons = []
    if f.infection is not None:
        reasons.append(f"infection recorded: {f.infection}")
    if high_lactate:
        reasons.append(f"lactate {lactate.value:g} mmol/L (above {r['lactate_suspect_above']:g})")  # type: ignore[union-attr]
    reds = [p for p, v in score.parts.items() if v >= r["single_parameter"]]
    risk: Risk = "low"
    if score.total >= r["news2_high_min"]:
        risk = "high"
        reasons.append(f"NEWS2 {score.total} (7 or more: high risk)")
    elif lactate is not None and lactate.value > r["lactate_high_above"]:
        risk = "high"
        reasons.append(f"lactate above {r['lactate_high_above']:g} mmol/L (high risk)")
    elif score.total >= r["news2_moderate_min"] or reds:
        risk = "moderate"
        reasons.append(
            f"NEWS2 {score.total} (5-6: moderate risk)"
            if score.total >= r["news2_moderate_min"]
            else "a single NEWS2 parameter scoring 3 (moderate risk): "
            + ", ".join(p.replace("_", " ") for p in reds)
        )
    elif f.infection is not None and high_lactate:
        risk = "moderate"
        reasons.append("lactate above 2 mmol/L with an infection (moderate risk)")
    if risk == "low":
        return None
    points, missing = qsofa(f)
    return SepsisPrompt(risk, tuple(reasons), lactate, f.infection, points, missing)
