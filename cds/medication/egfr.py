"""Kidney function for dosing: a reported eGFR, or CKD-EPI 2021 computed from serum creatinine.

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
