"""The model card of the deterioration model, written from its metadata so the numbers cannot drift."""

from __future__ import annotations

from typing import Any


def _ci(m: dict[str, Any], key: str) -> str:
    lo, hi = m[f"{key}_ci"]
    return f"{m[key]:.3f} ({lo:.3f}–{hi:.3f})"


def _pct(x: float) -> str:
    return "–" if x != x else f"{x:.0%}"  # NaN when nothing alerts


def _linear_summary(md: dict[str, Any]) -> str:
    lin = md.get("linear")
    if not lin:
        return "none shipped"
    logs = ", ".join(lin["log_features"]) or "none"
    return f"L2-penalised, C = {lin['penalty_c']:g}, {lin['terms']} inputs, log1p of {logs}; `{md['linear_file']}`"


def _fills(md: dict[str, Any]) -> str:
    fills = md.get("filled_when_missing") or {}
    if not fills:
        return ""
    labels = ", ".join(f"{n} {v:g}" for n, v in fills.items())
    return (
        f"Inputs charted for at least 99% of training stays are filled with the training median when "
        f"missing ({labels}), in both parts, and the card says so: what either part would learn for "
        "'missing' there comes from under 1% of stays."
    )


def _components(md: dict[str, Any]) -> str:
    comp = md["evaluation"].get("components")
    if not comp:
        return ""
    parts = []
    for key, label in (("xgboost_alone", "xgboost alone"), ("linear_alone", "the linear part alone")):
        g = comp[key]["apache_stays"]
        parts.append(
            f"{label} {g['auroc_without']:.3f} (blend {g['gain']:+.3f}, 95% CI {g['gain_ci'][0]:+.3f} to "
            f"{g['gain_ci'][1]:+.3f})"
        )
    return "Out-of-fold AUROC on the APACHE stays, same folds: " + "; ".join(parts) + "."


def render_card(md: dict[str, Any]) -> str:
    """card.md: intended use, population, outcome, performance with CIs, thresholds, limitations, licence."""
    ev = md["evaluation"]
    same = ev["apache_stays"]
    td = md["training_data"]
    th = md["thresholds"]
    rows = []
    for key, label in (
        ("model", "This model (calibrated xgboost + linear blend)"),
        ("apache_iva", "APACHE IVa predicted mortality"),
        ("news2_baseline", "NEWS2 baseline (worst 24 h values)"),
    ):
        m = same[key]
        rows.append(
            f"| {label} | {_ci(m, 'auroc')} | {_ci(m, 'auprc')} | {m['brier']:.4f} | "
            f"{m['calibration_slope']:.2f} | {m['calibration_intercept']:.2f} |"
        )
    alert_rows = []
    for key, label in (("model", "This model"), ("apache_iva", "APACHE IVa"), ("news2", "NEWS2 (≥5 / ≥7)")):
        for t in ev["thresholds"][key]:
            alert_rows.append(
                f"| {label} | {t['threshold']:g} | {_pct(t['alert_rate'])} | {_pct(t['sensitivity'])} | "
                f"{_pct(t['ppv'])} | {_pct(t['specificity'])} |"
            )
    features = ", ".join(f"{f['label']} ({f['unit']})" for f in md["features"])
    excluded = ", ".join(f["label"] if "label" in f else f["name"] for f in md["excluded_features"]) or "none"
    allm = ev["all_stays"]["model"]
    group_rows = []
    for g in ev.get("feature_groups", []):
        a, b = g["apache_stays"], g["all_stays"]
        group_rows.append(
            f"| {g['label']} | {b['auroc_without']:.3f} → {b['auroc_with']:.3f} | {b['gain']:+.3f} "
            f"({b['gain_ci'][0]:+.3f} to {b['gain_ci'][1]:+.3f}) | {a['auroc_without']:.3f} → {a['auroc_with']:.3f} | "
            f"{a['gain']:+.3f} ({a['gain_ci'][0]:+.3f} to {a['gain_ci'][1]:+.3f}) |"
        )
    fair_rows = []
    for r in ev.get("fairness", []):
        if "auroc" in r:
            fair_rows.append(
                f"| {r['group']} | {r['n']} | {r['events']} | {r['auroc']:.3f} ({r['auroc_ci'][0]:.3f}–"
                f"{r['auroc_ci'][1]:.3f}) | {r['observed']:.1%} | {r['predicted']:.1%} | {r['calibration_slope']:.2f} |"
            )
        else:
            fair_rows.append(f"| {r['group']} | {r['n']} | – | {r['note']} | – | – | – |")
    direction = {1: "never falls as it rises", -1: "never rises as it rises", 0: "free"}
    mono = "; ".join(
        f"{f['label']}: {direction[f['monotone']]}" for f in md["features"] if f.get("monotone", 0) != 0
    )
    return f"""# Model card: deterioration risk (version {md["version"]})

Written to the TRIPOD+AI items (Collins GS et al. BMJ 2024;385:e078378): intended use, data and
participants, outcome, predictors, development (incl. constraints), grouped validation,
calibration, fairness by sex and age band, limitations.

## Intended use
Decision support for clinicians: a calibrated estimate, shown beside NEWS2 on the patient-view hook,
of how ill an adult hospital patient is, from the worst vital signs and laboratory values charted in
the last 24 hours. **For research and development. It must be validated locally before any clinical
use. It is never a diagnosis** and never replaces clinical judgement or the local escalation policy.
It is not for children, pregnancy, or patients on end-of-life care pathways.

On the card the model's figure is shown in the detail as "similar patients in the ICU database: N%
in-hospital mortality", with its validation AUROC; the summary and the suggested response follow
NEWS2 and the RCP 2017 response bands only. The figure never escalates the response.

## Outcome — said plainly
The model predicts **in-hospital death** (eICU `hospitaldischargestatus = Expired`) from the first
24 hours of an ICU stay. Death is used as a *proxy* for clinical deterioration because it is the
outcome the training data records reliably; the model was not trained on rapid-response calls,
ICU transfers or cardiac arrests, and its "risk" is a risk of dying in hospital, not of deteriorating
within a given number of hours.

## Population and data
- {td["name"]} ({td["stays"]} ICU stays with first-day APACHE values and a known outcome,
  {td["deaths"]} deaths, {td["hospitals"]} US hospitals, 2014–2015). Adults admitted to ICUs,
  not ward patients: on a ward the risks will be lower and the alert rates different.
- Each stay was converted to FHIR Observations (LOINC, UCUM) and Procedures (SNOMED CT) and read
  through the service's own feature extractor ({td["fhir_conversion"]}).
- Training data SHA-256: `{td["sha256"]}`.
- Licence: {td["licence"]}. A model trained on it is a produced work. Citation: {td["citation"]}

## Inputs
Worst value in the 24 hours before scoring (APACHE rules: furthest from normal, lowest, highest, or
24 h total for urine): {features}. Missing measurements stay missing (xgboost learns a direction for
them; the linear part uses the training median and a missing-value term); nothing measured is filled
with zero. Presence features (coded condition categories, ventilation/intubation/dialysis, number of
vasoactive agents) enter as 0 when not charted, so their monotone direction covers coded vs not coded
(xgboost's constraints never cover a missing value's branch). {_fills(md)} Sex is not an input (it added
nothing over hospital partitions, and an other/unknown sex fell on a branch learned from one stay);
results by sex are in the fairness table.
Extracted and shown to the clinician but **not used by the model** (absent from the training data):
{excluded}.

Feature groups (each through the same FHIR feature path in training and serving): physiology (APACHE
first-day worst values, U-shaped ones as distance from the APACHE reference value), chronic health
(Conditions grouped into Quan/Elixhauser-Charlson categories: metastatic cancer, lymphoma/leukaemia,
cirrhosis, immunosuppression, heart failure, chronic kidney disease, chronic lung disease), coded
acute problems (sepsis, cardiac arrest, shock, respiratory failure, stroke/haemorrhage, overdose),
vasopressors/inotropes (MedicationAdministration, RxNorm) and the 24 h trend of non-invasive systolic
pressure. Code lists and sources: `cds/knowledge/deterioration_conditions.json`.

## Method
xgboost {md["xgboost"]["version"]} (gradient-boosted trees, depth {md["xgboost"]["params"]["max_depth"]},
{md["xgboost"]["rounds"]} rounds, eta {md["xgboost"]["params"]["eta"]}, L2 penalty {md["xgboost"]["params"]["lambda"]},
min child weight {md["xgboost"]["params"]["min_child_weight"]}, seed {md["xgboost"]["params"]["seed"]}), blended
with a logistic model over the same inputs ({_linear_summary(md)}): {md.get("blend", "xgboost alone")}.
Why a blend: with about {td["deaths"]} deaths, trees alone learn step functions that move between
hospitals; together with the smoother linear part they rank unseen hospitals' stays better than
either alone. {_components(md)} The blend is calibrated with
{md["calibration"]["method"]} scaling fitted on out-of-fold predictions (monotone in the margin, so it
keeps the constraints). Per-patient explanations are the blend of xgboost feature contributions
(SHAP values, `pred_contribs`) and the linear terms, on the log-odds scale.

**Monotone constraints** (xgboost `monotone_constraints`, and the linear coefficients bounded to the
same sign; the property tests `tests/deterioration/test_monotonicity.py` sweep each one on real
patients and `tests/deterioration/test_linear.py` on random cohorts): {mono}.

## Performance
{ev["design"]}. All {allm["n"]} stays: AUROC {_ci(allm, "auroc")}, AUPRC {_ci(allm, "auprc")},
Brier {allm["brier"]:.4f}.

On the {same["model"]["n"]} stays with an APACHE IVa prediction ({same["model"]["events"]} deaths), same folds:

| score | AUROC (95% CI) | AUPRC (95% CI) | Brier | calibration slope | calibration intercept |
|---|---|---|---|---|---|
{chr(10).join(rows)}

APACHE IVa uses the admission diagnosis, chronic health and the full first-day APACHE physiology;
this model uses only what a FHIR chart gives. NEWS2 was not designed to predict death in ICU patients;
its probabilities here come from a logistic fit on the training folds.

![ROC curves](roc.png)
![Calibration](calibration.png)

### Gain of each feature group (grouped CV, model without the group vs the shipped model)
Out-of-fold AUROC on the same folds; gain with a paired stay-level bootstrap 95% CI.

| group | AUROC all stays | gain (95% CI) | AUROC APACHE stays | gain (95% CI) |
|---|---|---|---|---|
{chr(10).join(group_rows)}

### Fairness: by sex and age band (all stays, out-of-fold)

| subgroup | stays | deaths | AUROC (95% CI) | observed | predicted | calibration slope |
|---|---|---|---|---|---|---|
{chr(10).join(fair_rows)}

![Feature importance](importance.png)

## How the card uses the model
- The **summary and the suggested response follow NEWS2 only** (RCP 2017 Chart 4): 0–4 ward-based
  response; a single parameter of 3 an urgent ward-based review; 5–6 an urgent response; 7 or more
  an emergency response. The model's figure never raises the response above the NEWS2 band.
- Card level: **critical** for NEWS2 ≥ 7; **warning** for NEWS2 5–6, a single parameter of 3, or
  model risk ≥ {th["critical"]:g}; **info** for model risk ≥ {th["warning"]:g} alone (only when at least
  4 NEWS2 parameters are charted); nothing otherwise (few cards is the point).
- A separate sepsis card follows NICE NG51 (suspected or coded infection, or lactate above 2 mmol/L,
  with NEWS2 risk bands); lactate drives that rule, not this model.

The card scores NEWS2 on the newest set of observations of the last 24 hours, as the RCP chart
intends; the NEWS2 baseline above uses the worst values of the ICU day (all eICU gives), which is
why it alerts on most ICU stays.

Risk thresholds: {th["rule"]}. At these thresholds, on the stays above:

| score | threshold | alert rate | sensitivity | PPV | specificity |
|---|---|---|---|---|---|
{chr(10).join(alert_rows)}

## Limitations
- Small training set (about {td["deaths"]} deaths); wide confidence intervals; the demo's hospitals
  are not a sample of any one health system. Expect the model to be less accurate elsewhere and
  recalibrate locally before use.
- ICU first-day physiology, not ward observations; timing within the day is synthetic (APACHE
  worst values carry no time); the only trend is that of non-invasive blood pressure.
- SpO2 is charted for few training stays (from respiratory charting): the model uses it weakly
  (NEWS2 still scores SpO2).
- In ICU patients NEWS2 triggers on most stays (see the alert table): the NEWS2 rules of the card
  are meant for ward patients. Where the service runs in an ICU, expect many NEWS2-driven cards.
- Death is a proxy: patients with treatment limitations die without "deteriorating" in the sense
  of a missed rescue, and rescued patients count as survivors.
- Not validated for children or pregnancy; subgroup results above have wide intervals, and
  ethnicity was not assessed (few stays per group in the demo).
- Lactate and potassium have no training data in this copy of eICU (no `lab` table): they are shown
  on the card with their time and drive explicit rules (the NICE NG51 sepsis prompt), not the model.
- Admission source and acuity (Encounter) and urine-output trends are not used: the demo's urine
  output is an APACHE 24 h total without times.

## Sources
Model: Chen T, Guestrin C. XGBoost. KDD 2016; bounded L2 logistic regression fitted with L-BFGS-B
(Byrd RH et al. SIAM J Sci Comput 1995;16:1190–208).
NEWS2: Royal College of Physicians. National Early Warning Score (NEWS) 2. London: RCP, 2017.
APACHE IV: Zimmerman JE et al. Crit Care Med 2006;34:1297–310.
Comorbidity coding: Quan H et al. Med Care 2005;43:1130–9.
Sepsis: NICE NG51 (2016, updated 2024); Evans L et al. Intensive Care Med 2021;47:1181–247.
Reporting: Collins GS et al. TRIPOD+AI. BMJ 2024;385:e078378.
"""
