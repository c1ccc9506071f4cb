"""NEWS2, the Royal College of Physicians' National Early Warning Score 2 (2017).

The chart lives in `cds/knowledge/news2.json` (with its citation); this module only applies it.
Parameters that are missing are named, never scored as normal: a partial NEWS2 is flagged as such.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from cds.knowledge import KNOWLEDGE_DIR
from cds.services.deterioration import knowledge_files

KNOWLEDGE = KNOWLEDGE_DIR / "news2.json"

Band = Literal["low", "low-medium", "medium", "high"]
# Parameter order of the RCP chart, used for display.
PARAMETERS = ("respiratory_rate", "spo2", "oxygen", "systolic_bp", "pulse", "consciousness", "temperature")
CONSCIOUSNESS_LEVELS = ("A", "C", "V", "P", "U")


@lru_cache(maxsize=1)
def chart() -> dict[str, Any]:
    """The NEWS2 chart as data (bands, oxygen, consciousness, thresholds) with its source."""
    return knowledge_files.load(KNOWLEDGE, knowledge_files.News2Chart, knowledge_files.check_news2)


@dataclass(frozen=True)
class News2Inputs:
    """One set of observations. None means not measured (scored as missing, not as normal)."""

    respiratory_rate: float | None = None
    spo2: float | None = None
    on_oxygen: bool | None = None
    systolic_bp: float | None = None
    pulse: float | None = None
    consciousness: str | None = None  # A, C (new confusion), V, P or U
    temperature: float | None = None


@dataclass(frozen=True)
class News2:
    """A NEWS2 score: points per parameter, total, clinical risk band, what was missing."""

    parts: Mapping[str, int]
    total: int
    band: Band
    scale: int
    missing: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def any_single_three(self) -> bool:
        return any(p >= chart()["bands"]["single_parameter"] for p in self.parts.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "band": self.band,
            "scale": self.scale,
            "parts": dict(self.parts),
            "missing": list(self.missing),
        }


def band_points(parameter: str, value: float) -> int:
    """Points for a value of one banded parameter of the chart (`respiratory_rate`, `spo2_scale1`...)."""
    for band in chart()["parameters"][parameter]["bands"]:
        if band["max"] is None or value <= band["max"]:
            return int(band["points"])
    raise AssertionError("the last band of every parameter is open-ended")


def _finite(v: float | None) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


def risk_band(total: int, any_single_three: bool) -> Band:
    """The RCP clinical risk band of an aggregate score (Chart 2)."""
    b = chart()["bands"]
    if total >= b["high_min"]:
        return "high"
    if total >= b["medium_min"]:
        return "medium"
    if any_single_three:
        return "low-medium"
    return "low"


def news2(inputs: News2Inputs, scale: int = 1) -> News2:
    """Score one set of observations on SpO2 scale 1 or 2 (scale 2 only for hypercapnic failure)."""
    if scale not in (1, 2):
        raise ValueError("NEWS2 SpO2 scale must be 1 or 2")
    c = chart()
    parts: dict[str, int] = {}
    missing: list[str] = []

    def banded(name: str, table: str, value: float | None) -> None:
        if _finite(value):
            parts[name] = band_points(table, float(value))  # type: ignore[arg-type]
        else:
            missing.append(name)

    banded("respiratory_rate", "respiratory_rate", inputs.respiratory_rate)
    if scale == 1:
        banded("spo2", "spo2_scale1", inputs.spo2)
    elif inputs.on_oxygen is None and _finite(inputs.spo2):
        # Scale 2 above 92% depends on oxygen; unknown oxygen is scored as air (the lower score)
        # and oxygen is named missing below.
        banded("spo2", "spo2_scale2_air", inputs.spo2)
    else:
        banded("spo2", "spo2_scale2_oxygen" if inputs.on_oxygen else "spo2_scale2_air", inputs.spo2)
    if inputs.on_oxygen is None:
        missing.append("oxygen")
    else:
        parts["oxygen"] = int(c["oxygen"]["oxygen" if inputs.on_oxygen else "air"])
    banded("systolic_bp", "systolic_bp", inputs.systolic_bp)
    banded("pulse", "pulse", inputs.pulse)
    level = (inputs.consciousness or "").upper()[:1]
    if level in c["consciousness"]["points"]:
        parts["consciousness"] = int(c["consciousness"]["points"][level])
    else:
        missing.append("consciousness")
    banded("temperature", "temperature", inputs.temperature)

    ordered = {p: parts[p] for p in PARAMETERS if p in parts}
    total = sum(ordered.values())
    single = any(v >= c["bands"]["single_parameter"] for v in ordered.values())
    return News2(
        parts=ordered,
        total=total,
        band=risk_band(total, single),
        scale=scale,
        missing=tuple(p for p in PARAMETERS if p in missing),
    )
