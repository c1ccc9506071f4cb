"""Kidney function for dosing: eGFR (reported, or CKD-EPI 2021 from serum creatinine) and the
Cockcroft-Gault creatinine clearance most drug labels use.

CKD-EPI 2021 (race-free): Inker LA et al., N Engl J Med 2021;385:1737-49.
eGFR = 142 x min(Scr/k, 1)^a x max(Scr/k, 1)^-1.200 x 0.9938^age [x 1.012 if female],
k = 0.7 (female) / 0.9 (male), a = -0.241 (female) / -0.302 (male), Scr in mg/dL.
"""

from __future__ import annotations


def ckd_epi_2021(creatinine_mg_dl: float, age: float, female: bool) -> float:
    """eGFR in mL/min/1.73 m2 from serum creatinine (mg/dL), age (years, adults) and sex."""
    if creatinine_mg_dl <= 0:
        raise ValueError("creatinine must be positive")
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine_mg_dl / kappa
    egfr = 142.0 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200 * 0.9938**age
    return egfr * 1.012 if female else egfr


def cockcroft_gault(creatinine_mg_dl: float, age: float, weight_kg: float, female: bool) -> float:
    """Creatinine clearance in mL/min (not normalised to body surface area), as drug labels use it.

    Cockcroft DW, Gault MH. Nephron 1976;16:31-41:
    CrCl = (140 - age) x weight (kg) / (72 x Scr mg/dL), x 0.85 if female.
    """
    if creatinine_mg_dl <= 0 or weight_kg <= 0:
        raise ValueError("creatinine and weight must be positive")
    crcl = (140.0 - age) * weight_kg / (72.0 * creatinine_mg_dl)
    return crcl * 0.85 if female else crcl


def ideal_body_weight(height_cm: float, female: bool) -> float:
    """Devine ideal body weight in kg: 50 (men) or 45.5 (women) + 2.3 kg per inch over 5 feet."""
    inches_over_5ft = max(0.0, height_cm / 2.54 - 60.0)
    return (45.5 if female else 50.0) + 2.3 * inches_over_5ft


def adjusted_body_weight(actual_kg: float, ideal_kg: float) -> float:
    """Adjusted body weight: IBW + 0.4 x (actual - IBW), used by some references in obesity."""
    return ideal_kg + 0.4 * (actual_kg - ideal_kg)
