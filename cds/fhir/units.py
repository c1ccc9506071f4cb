"""Unit conversion for FHIR Quantities, with UCUM parsed by ucumvert (plain pint misreads UCUM).

Each (from, to) pair is parsed once and cached as a linear map `y = a*x + b`, so converting on
the hook path costs a dict lookup and a multiply.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

# Non-UCUM spellings EHRs send, mapped to UCUM.
_ALIASES = {
    "mmHg": "mm[Hg]",
    "mm Hg": "mm[Hg]",
    "°C": "Cel",
    "ºC": "Cel",  # masculine ordinal sign, often typed for the degree sign
    "C": "Cel",
    "degC": "Cel",
    "°F": "[degF]",
    "F": "[degF]",
    "degF": "[degF]",
    "bpm": "/min",
    "beats/min": "/min",
    "breaths/min": "/min",
    "mEq/L": "meq/L",
    "mEq/l": "meq/L",
    "mmol/l": "mmol/L",
    "mg/dl": "mg/dL",
    "g/dl": "g/dL",
    "umol/l": "umol/L",
    "µmol/L": "umol/L",
    "μmol/L": "umol/L",
    "µmol/l": "umol/L",
    "μmol/l": "umol/L",
    "kpa": "kPa",
    "KPa": "kPa",
    "Torr": "mm[Hg]",  # 1 Torr = 1 mm Hg within 2e-7
    "torr": "mm[Hg]",
    "K/uL": "10*3/uL",
    "K/µL": "10*3/uL",
    "K/μL": "10*3/uL",
    "x10^3/uL": "10*3/uL",
    "10^3/uL": "10*3/uL",
    "10^3/µL": "10*3/uL",
    "10^3/μL": "10*3/uL",
    "x10E3/uL": "10*3/uL",
    "10E3/uL": "10*3/uL",
    "x10*3/uL": "10*3/uL",
    "Tsd/µl": "10*3/uL",  # German lab reports: Tausend pro Mikroliter
    "Tsd/µL": "10*3/uL",
    "10*9/L": "10*9/L",
    "x10E9/L": "10*9/L",
    "10E9/L": "10*9/L",
    "x10^9/L": "10*9/L",
    "x10*9/L": "10*9/L",
    "Gpt/L": "10*9/L",  # German lab reports: Gigapartikel pro Liter (not UCUM G/L, which is gauss)
    "Gpt/l": "10*9/L",
    "cells/uL": "/uL",
    "percent": "%",
    "mL/min/1.73m2": "mL/min/{1.73_m2}",
    "mL/min/1.73 m2": "mL/min/{1.73_m2}",
    "ml/min/1.73m2": "mL/min/{1.73_m2}",
    "ml": "mL",
    "L/min": "L/min",
    "l/min": "L/min",
    "ms": "ms",
    "msec": "ms",
}


@lru_cache(maxsize=1)
def _registry() -> Any:
    from ucumvert import PintUcumRegistry

    return PintUcumRegistry()


def normalize_unit(unit: str | None) -> str | None:
    if unit is None:
        return None
    u = unit.strip()
    return _ALIASES.get(u, u)


@lru_cache(maxsize=4096)
def _linear(from_unit: str, to_unit: str, molar_mass: float | None) -> tuple[float, float] | None:
    """(a, b) with to = a*from + b, or None when the units are not convertible."""
    if from_unit == to_unit:
        return (1.0, 0.0)
    ureg = _registry()
    try:
        src = ureg.from_ucum(from_unit)
        dst = ureg.from_ucum(to_unit)
    except Exception:
        return None

    def conv(x: float) -> float:
        q = ureg.Quantity(x * src.magnitude, src.units)
        try:
            return float(q.to(dst.units).magnitude / dst.magnitude)
        except Exception:
            if molar_mass is None:
                raise
            # mass concentration <-> substance concentration through the molar mass (g/mol)
            mm = ureg.Quantity(molar_mass, "g/mol")
            for q2 in (q * mm, q / mm):
                try:
                    return float(q2.to(dst.units).magnitude / dst.magnitude)
                except Exception:
                    continue
            raise

    try:
        b = conv(0.0)
        a = conv(1.0) - b
    except Exception:
        return None
    if not (math.isfinite(a) and math.isfinite(b)):
        return None
    return (a, b)


def convert(
    value: float, from_unit: str | None, to_unit: str, molar_mass: float | None = None
) -> float | None:
    """`value` in `from_unit` expressed in `to_unit`; None when the units don't convert.

    A missing unit is never guessed: None. `molar_mass` (g/mol) allows mg/dL <-> umol/L.
    """
    src = normalize_unit(from_unit)
    if not src:
        return None
    lin = _linear(src, normalize_unit(to_unit) or to_unit, molar_mass)
    if lin is None:
        return None
    return lin[0] * value + lin[1]


def quantity_in(
    quantity: Mapping[str, Any] | None, to_unit: str, molar_mass: float | None = None
) -> float | None:
    """The value of a FHIR Quantity in `to_unit` (UCUM), using its `code` else its `unit`."""
    if not isinstance(quantity, dict):
        return None
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    unit = quantity.get("code") or quantity.get("unit")
    if not isinstance(unit, str):
        return None
    return convert(float(value), unit, to_unit, molar_mass)
