"""Training pipeline of the deterioration model: eICU -> FHIR -> features -> xgboost -> calibrated risk.

Steps: convert every stay to FHIR (`cds.training.eicu`), extract features with the service's own
extractor (`cds.services.deterioration.features`), cross-validate grouped by hospital (no hospital in both
train and test) with calibration fitted inside each training fold, compare with APACHE IVa and a
NEWS2 baseline on the same stays, then fit the final model on all stays and write the artefacts.
Seeded and single-threaded per fit, so the same data gives the same model and the same metrics.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from cds.fhir.record import PatientRecord
from cds.runtime import manifest
from cds.services.deterioration import calibration as cal
from cds.services.deterioration import linear
from cds.services.deterioration.features import (
    extract,
    feature_labels,
    feature_names,
    feature_units,
    knowledge,
    presence_features,
)
from cds.services.deterioration.model import filled
from cds.services.deterioration.news2 import news2
from cds.training import eicu, evaluation
from cds.training.modelcard import render_card

NAME = "deterioration"
VERSION = "2.1.0"
PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "max_depth": 2,
    "eta": 0.03,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5,
    "lambda": 5.0,
    "nthread": 1,
}
ROUNDS = 500
LINEAR_C = 0.01  # inverse L2 penalty of the linear part (grouped CV: flat between 0.005 and 0.02)
SIGNIFICANT = 8  # digits kept for fitted floats in metadata.json: stable across CPUs and BLAS kernels
FOLDS = 5
INNER_FOLDS = 4
MIN_COVERAGE = 0.01  # a feature charted for fewer stays than this cannot be learned: left out, and said so
FILL_COVERAGE = 0.99  # charted for at least this share: a missing value is filled with the training median
WARNING_ALERT_RATE = 0.15
CRITICAL_ALERT_RATE = 0.05
ARTEFACTS = (
    "model.ubj",
    "linear.json",
    "metadata.json",
    "card.md",
    "roc.png",
    "calibration.png",
    "importance.png",
)

Progress = Callable[[str], None]


@dataclass
class Dataset:
    X: np.ndarray  # every extractor feature, float32, NaN where missing
    y: np.ndarray
    groups: np.ndarray  # hospital id of each stay
    stay_ids: list[str]
    apache: np.ndarray  # APACHE IVa predicted hospital mortality, NaN where not computed
    news2_total: np.ndarray  # NEWS2 from the worst 24 h values
    names: tuple[str, ...]
    sex: np.ndarray  # "male", "female" or "unknown" (for the fairness table)
    age: np.ndarray


def build_dataset(data_dir: Path, progress: Progress) -> Dataset:
    """Every usable stay, through FHIR and the serving feature extractor."""
    names = feature_names()
    rows, ys, groups, ids, apache, n2 = [], [], [], [], [], []
    t = time.perf_counter()
    for stay in eicu.stays(data_dir):
        record = PatientRecord.from_resources(stay.resources, now=eicu.SCORING_TIME, patient_id=stay.stay_id)
        feats = extract(record, eicu.SCORING_TIME)
        rows.append(feats.vector(names)[0])
        ys.append(stay.died)
        groups.append(stay.hospital_id)
        ids.append(stay.stay_id)
        apache.append(math.nan if stay.apache_iva is None else stay.apache_iva)
        n2.append(news2(feats.worst_news2_inputs(), scale=1).total)
    progress(f"features: {len(rows)} stays, {len(names)} features ({time.perf_counter() - t:.1f} s)")
    X = np.vstack(rows).astype(np.float32)
    return Dataset(
        X=X,
        y=np.array(ys, dtype=np.int32),
        groups=np.array(groups),
        stay_ids=ids,
        apache=np.array(apache, dtype=np.float64),
        news2_total=np.array(n2, dtype=np.float64),
        names=names,
        sex=np.array(
            ["male" if m == 1 else "female" if m == 0 else "unknown" for m in X[:, names.index("male")]]
        ),
        age=X[:, names.index("age")].astype(np.float64),
    )


def model_groups() -> dict[str, dict[str, Any]]:
    """Feature groups of the model with each feature's monotone direction (knowledge data)."""
    return knowledge()["model"]["groups"]


def params_for(directions: list[int], seed: int) -> dict[str, Any]:
    """xgboost parameters with monotone constraints in the order of the model's features."""
    return {**PARAMS, "seed": seed, "monotone_constraints": "(" + ",".join(map(str, directions)) + ")"}


def sig(x: float, digits: int = SIGNIFICANT) -> float:
    """A float rounded to `digits` significant digits (what metadata.json stores)."""
    return float(f"{x:.{digits}g}")


def _rounded(obj: Any) -> Any:
    """Every float of a JSON value at `SIGNIFICANT` digits (files stable across CPUs and BLAS kernels)."""
    if isinstance(obj, float):
        return sig(obj)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_rounded(v) for v in obj]
    return obj


class LocalEngine:
    """xgboost in this process."""

    name = "local"

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.params = params or PARAMS

    def fit(self, X: np.ndarray, y: np.ndarray, seed: int) -> xgb.Booster:
        return xgb.train({**self.params, "seed": seed}, xgb.DMatrix(X, label=y, missing=np.nan), ROUNDS)

    def close(self) -> None:
        pass


class DaskEngine:
    """xgboost.dask on a Dask cluster: a LocalCluster of `n_workers`, or the scheduler at `address`."""

    name = "dask"

    def __init__(
        self, address: str | None = None, n_workers: int = 2, params: dict[str, Any] | None = None
    ) -> None:
        from dask.distributed import Client, LocalCluster

        self.params = params or PARAMS
        self.cluster = None
        if address:
            self.client = Client(address)
        else:
            self.cluster = LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
            self.client = Client(self.cluster)
        self.partitions = max(2, len(self.client.scheduler_info()["workers"]))

    def fit(self, X: np.ndarray, y: np.ndarray, seed: int) -> xgb.Booster:
        import dask.array as da
        import xgboost.dask  # noqa: F401 - registers xgb.dask

        chunk = math.ceil(len(X) / self.partitions)
        dX = da.from_array(X, chunks=(chunk, X.shape[1]))
        dy = da.from_array(y.astype(np.float32), chunks=(chunk,))
        dtrain = xgb.dask.DaskDMatrix(self.client, dX, dy, missing=np.nan)
        out = xgb.dask.train(self.client, {**self.params, "seed": seed}, dtrain, num_boost_round=ROUNDS)
        return out["booster"]

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _margin(booster: xgb.Booster, X: np.ndarray) -> np.ndarray:
    return booster.inplace_predict(X, predict_type="margin", missing=np.nan).astype(np.float64)


@dataclass(frozen=True)
class Fitted:
    """The two parts of the model, fitted on the same stays; `margin` is their blend."""

    booster: xgb.Booster
    linear: linear.LinearModel
    fills: dict[int, float]  # column -> value standing in for a missing one (both parts)

    def margin(self, X: np.ndarray) -> np.ndarray:
        X = filled(X, self.fills)
        return linear.blend(_margin(self.booster, X), self.linear.margins(X))


def fills_for(X: np.ndarray, names: list[str]) -> dict[int, float]:
    """Training medians of the measured inputs charted for at least FILL_COVERAGE of the stays
    (presence features are never missing in the model's row: not charted is 0)."""
    coverage = np.mean(~np.isnan(X), axis=0)
    return {
        int(j): sig(float(np.nanmedian(X[:, j])))
        for j in np.flatnonzero(coverage >= FILL_COVERAGE)
        if names[j] not in presence_features()
    }


def fit_model(
    engine: Any, X: np.ndarray, y: np.ndarray, names: list[str], directions: list[int], seed: int
) -> Fitted:
    """xgboost on the engine (local or Dask) and the sign-constrained linear part in this process,
    on rows whose near-always-charted inputs are filled where missing."""
    fills = fills_for(X, names)
    X = filled(X, fills)
    return Fitted(engine.fit(X, y, seed), linear.fit(X, y, names, directions, LINEAR_C), fills)


def fit_calibrated(
    engine: Any,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    names: list[str],
    directions: list[int],
    method: cal.Method,
    seed: int,
) -> tuple[Fitted, cal.Calibration]:
    """The model on all of X and a calibrator fitted on inner out-of-fold margins (grouped by hospital)."""
    oof = _oof_margin(engine, X, y, groups, names, directions, seed, folds=INNER_FOLDS)
    return fit_model(engine, X, y, names, directions, seed), cal.fit(oof, y, method)


def _select_features(data: Dataset, groups: list[str]) -> tuple[list[int], list[int], list[dict[str, Any]]]:
    """Model columns of the given groups (with directions), leaving out those the data lacks."""
    coverage = np.mean(~np.isnan(data.X), axis=0)
    keep, directions, dropped = [], [], []
    for g in groups:
        for name, direction in model_groups()[g]["features"].items():
            i = data.names.index(name)
            if coverage[i] >= MIN_COVERAGE:
                keep.append(i)
                directions.append(int(direction))
            else:
                dropped.append(
                    {
                        "name": name,
                        "label": feature_labels()[name],
                        "coverage": round(float(coverage[i]), 4),
                        "reason": "not charted in the training data: extracted and shown (and used by explicit "
                        "rules), not used by the model",
                    }
                )
    return keep, directions, dropped


def _oof_margin(
    engine: Any,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    names: list[str],
    directions: list[int],
    seed: int,
    folds: int = FOLDS,
) -> np.ndarray:
    """Out-of-fold margins by grouped CV (AUROC, and the calibrator's inner folds)."""
    from sklearn.model_selection import GroupKFold

    oof = np.zeros(len(y))
    for tr, te in GroupKFold(n_splits=folds).split(X, y, groups):
        oof[te] = fit_model(engine, X[tr], y[tr], names, directions, seed).margin(X[te])
    return oof


def ablation(
    data: Dataset,
    full_margin: np.ndarray,
    engine_factory: Callable[[dict[str, Any]], Any],
    n_boot: int,
    seed: int,
) -> list[dict[str, Any]]:
    """AUROC of the model without each added group, and the group's paired-bootstrap gain with 95% CI."""
    out = []
    has_apache = ~np.isnan(data.apache)
    names = list(model_groups())
    for g in names[1:]:
        keep, directions, _ = _select_features(data, [n for n in names if n != g])
        engine = engine_factory(params_for(directions, seed))
        cols = [data.names[i] for i in keep]
        without = _oof_margin(engine, data.X[:, keep], data.y, data.groups, cols, directions, seed)
        row: dict[str, Any] = {"group": g, "label": model_groups()[g]["label"]}
        for key, mask in (("all_stays", np.ones(len(data.y), bool)), ("apache_stays", has_apache)):
            row[key] = evaluation.paired_gain(data.y[mask], full_margin[mask], without[mask], n_boot, seed)
        out.append(row)
    return out


def train(
    data_dir: Path | str,
    out_dir: Path | str,
    engine: str = "local",
    scheduler: str | None = None,
    n_workers: int = 2,
    seed: int = 0,
    n_boot: int = 1000,
    method: cal.Method = "platt",
    progress: Progress = print,
) -> dict[str, Any]:
    """Train, evaluate and write the deterioration model; returns its metadata."""
    from sklearn.model_selection import GroupKFold

    started = time.perf_counter()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    data = build_dataset(data_dir, progress)
    keep, directions, dropped = _select_features(data, list(model_groups()))
    X, y, groups = data.X[:, keep], data.y, data.groups
    names = [data.names[i] for i in keep]
    params = params_for(directions, seed)
    progress(
        f"model features: {len(names)} (left out, not in the data: {', '.join(d['name'] for d in dropped) or 'none'})"
    )

    dask = engine != "local"
    runner = DaskEngine(scheduler, n_workers, params) if dask else LocalEngine(params)
    try:
        risk = np.zeros(len(y))
        margin = np.zeros(len(y))
        tree_margin = np.zeros(len(y))  # the two parts alone, same folds: what the blend adds
        linear_margin = np.zeros(len(y))
        news2_p = np.zeros(len(y))
        for k, (tr, te) in enumerate(GroupKFold(n_splits=FOLDS).split(X, y, groups), 1):
            fitted, calib = fit_calibrated(runner, X[tr], y[tr], groups[tr], names, directions, method, seed)
            margin[te] = fitted.margin(X[te])
            tree_margin[te] = _margin(fitted.booster, filled(X[te], fitted.fills))
            linear_margin[te] = fitted.linear.margins(filled(X[te], fitted.fills))
            risk[te] = calib.apply(margin[te])
            a, b = cal.logistic_fit(data.news2_total[tr], y[tr])  # NEWS2 -> probability, same folds
            news2_p[te] = 1 / (1 + np.exp(-(a * data.news2_total[te] + b)))
            progress(
                f"fold {k}/{FOLDS}: {len(te)} stays from {len(set(groups[te]))} hospitals, "
                f"{int(y[te].sum())} deaths ({time.perf_counter() - started:.1f} s)"
            )
        final, calib = fit_calibrated(runner, X, y, groups, names, directions, method, seed)
        progress(f"final model fitted ({time.perf_counter() - started:.1f} s)")

        def same_engine(p: dict[str, Any]) -> Any:
            runner.params = p  # reuse the engine (and its Dask cluster) with other columns
            return runner

        gains = ablation(data, margin, same_engine, n_boot, seed)
        progress(f"ablation of {len(gains)} feature groups done ({time.perf_counter() - started:.1f} s)")
    finally:
        runner.close()
    calib = cal.Calibration(
        calib.method, a=sig(calib.a), b=sig(calib.b), x=tuple(map(sig, calib.x)), y=tuple(map(sig, calib.y))
    )

    warning = evaluation.round_threshold(float(np.quantile(risk, 1 - WARNING_ALERT_RATE)))
    critical = evaluation.round_threshold(float(np.quantile(risk, 1 - CRITICAL_ALERT_RATE)))
    has_apache = ~np.isnan(data.apache)
    ya, ra, aa, na = y[has_apache], risk[has_apache], data.apache[has_apache], news2_p[has_apache]
    n2a = data.news2_total[has_apache]
    evaluation_result = {
        "design": f"{FOLDS}-fold cross-validation grouped by hospital (GroupKFold); calibration fitted inside "
        f"each training fold on {INNER_FOLDS}-fold inner out-of-fold margins; {n_boot} stay-level "
        f"bootstrap resamples for 95% CIs (seed {seed})",
        "bootstrap": n_boot,
        "seed": seed,
        "all_stays": {"model": evaluation.metrics(y, risk, n_boot, seed)},
        "apache_stays": {
            "note": "the stays with an APACHE IVa prediction; the three scores on the same stays and folds",
            "model": evaluation.metrics(ya, ra, n_boot, seed),
            "apache_iva": evaluation.metrics(ya, aa, n_boot, seed),
            "news2_baseline": evaluation.metrics(ya, na, n_boot, seed),
        },
        "feature_groups": gains,
        "components": {
            "note": "the blend against each of its parts alone, same folds (paired bootstrap gain)",
            "xgboost_alone": {
                "all_stays": evaluation.paired_gain(y, margin, tree_margin, n_boot, seed),
                "apache_stays": evaluation.paired_gain(
                    ya, margin[has_apache], tree_margin[has_apache], n_boot, seed
                ),
            },
            "linear_alone": {
                "all_stays": evaluation.paired_gain(y, margin, linear_margin, n_boot, seed),
                "apache_stays": evaluation.paired_gain(
                    ya, margin[has_apache], linear_margin[has_apache], n_boot, seed
                ),
            },
        },
        "fairness": evaluation.subgroups(y, risk, data.sex, data.age, n_boot, seed),
        "thresholds": {
            "model": [evaluation.at_threshold(ya, ra, t) for t in (warning, critical)],
            "apache_iva": [evaluation.at_threshold(ya, aa, t) for t in (warning, critical)],
            "news2": [evaluation.at_threshold(ya, n2a, t) for t in (5, 7)],
            "model_all_stays": [evaluation.at_threshold(y, risk, t) for t in (warning, critical)],
        },
    }
    progress("evaluation done")

    out_dir.mkdir(parents=True, exist_ok=True)
    final.booster.save_model(out_dir / "model.ubj")
    (out_dir / "linear.json").write_text(json.dumps(_rounded(final.linear.to_json()), indent=2) + "\n")
    curves = {"model": (ya, ra), "APACHE IVa": (ya, aa), "NEWS2 baseline": (ya, na)}
    evaluation.plot_roc(
        curves, out_dir / "roc.png", f"In-hospital death, {FOLDS}-fold CV grouped by hospital"
    )
    evaluation.plot_calibration(curves, out_dir / "calibration.png", "Calibration (out-of-fold, deciles)")
    units, labels = feature_units(), feature_labels()
    evaluation.plot_importance(final.booster, names, labels, out_dir / "importance.png")
    metadata: dict[str, Any] = {
        "name": NAME,
        "version": VERSION,
        "model_file": "model.ubj",
        "linear_file": "linear.json",
        "filled_when_missing": {names[j]: v for j, v in sorted(final.fills.items())},
        "filled_when_missing_rule": f"inputs charted for at least {FILL_COVERAGE:.0%} of training stays: a missing "
        "value is filled with the training median before both parts (what either part would learn for "
        "'missing' there comes from under 1% of stays); the card says so",
        "linear_sha256": manifest.sha256_file(out_dir / "linear.json"),
        "linear": {
            "penalty_c": LINEAR_C,
            "terms": len(final.linear.terms),
            "log_features": sorted(n for n in names if n in linear.LOG_FEATURES),
            "clip_quantiles": list(linear.CLIP_QUANTILES),
        },
        "blend": "risk = calibration(margin); margin = mean of the xgboost log-odds (model.ubj) and the "
        "log-odds of a sign-constrained L2 logistic model over the same features (linear.json), "
        f"C = {LINEAR_C}; every coefficient bounded to its feature's monotone direction",
        "model_sha256": manifest.sha256_file(out_dir / "model.ubj"),
        "outcome": "in-hospital death (eICU hospitaldischargestatus = Expired), used as a proxy for deterioration",
        "scoring": {
            "window_hours": 24,
            "features": "worst value per feature in the 24 h before the scoring time",
        },
        "features": [
            {"name": n, "unit": units[n], "label": labels[n], "monotone": d}
            for n, d in zip(names, directions, strict=True)
        ],
        "feature_groups": {g: list(v["features"]) for g, v in model_groups().items()},
        "excluded_features": dropped,
        "xgboost": {
            "version": xgb.__version__,
            "params": params,
            "rounds": ROUNDS,
            "engine": runner.name,
        },
        "calibration": calib.to_json(),
        "thresholds": {
            "warning": warning,
            "critical": critical,
            "rule": f"calibrated risk at the {int((1 - WARNING_ALERT_RATE) * 100)}th (warning) and "
            f"{int((1 - CRITICAL_ALERT_RATE) * 100)}th (critical) percentile of out-of-fold risk in the "
            f"training cohort, i.e. alerting on about {WARNING_ALERT_RATE:.0%} and {CRITICAL_ALERT_RATE:.0%} "
            "of ICU stays, rounded to two significant digits",
        },
        "training_data": {
            "name": "eICU Collaborative Research Database demo v2.0",
            "tables": [f"{t}.tsv.gz" for t in eicu.TABLES],
            "sha256": eicu.data_sha256(data_dir),
            "stays": len(y),
            "deaths": int(y.sum()),
            "hospitals": len(set(groups)),
            "apache_iva_stays": int(has_apache.sum()),
            "licence": "Open Data Commons Open Database License (ODbL) v1.0",
            "citation": "Pollard TJ, Johnson AEW, Raffa JD, Celi LA, Mark RG, Badawi O. The eICU Collaborative "
            "Research Database, a freely available multi-center database for critical care research. "
            "Sci Data 2018;5:180178. Goldberger AL et al. PhysioBank, PhysioToolkit, and PhysioNet. "
            "Circulation 2000;101(23):e215-e220.",
            "fhir_conversion": "cds/training/eicu.py: stays start at a synthetic T0, scored at T0 + 24 h",
        },
        "evaluation": evaluation_result,
        "environment": {"python": platform.python_version(), "numpy": np.__version__},
    }
    (out_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    (out_dir / "card.md").write_text(render_card(metadata))
    manifest.update(out_dir.parent, out_dir.name, ARTEFACTS)
    progress(
        f"wrote {', '.join(ARTEFACTS)} to {out_dir} and updated {out_dir.parent / 'manifest.json'} "
        f"({time.perf_counter() - started:.1f} s)"
    )
    return metadata


def metrics_table(metadata: dict[str, Any]) -> str:
    """The comparison table (Markdown) of model, APACHE IVa and NEWS2 baseline."""
    ev = metadata["evaluation"]["apache_stays"]
    lines = [
        "| score | AUROC (95% CI) | AUPRC (95% CI) | Brier | calibration slope | calibration intercept |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (
        ("model", "model: xgboost + linear blend (calibrated)"),
        ("apache_iva", "APACHE IVa predicted mortality"),
        ("news2_baseline", "NEWS2 baseline (worst 24 h values)"),
    ):
        m = ev[key]
        lines.append(
            f"| {label} | {m['auroc']:.3f} ({m['auroc_ci'][0]:.3f}-{m['auroc_ci'][1]:.3f}) | "
            f"{m['auprc']:.3f} ({m['auprc_ci'][0]:.3f}-{m['auprc_ci'][1]:.3f}) | {m['brier']:.4f} | "
            f"{m['calibration_slope']:.2f} | {m['calibration_intercept']:.2f} |"
        )
    return "\n".join(lines)


def groups_table(metadata: dict[str, Any]) -> str:
    """Markdown: out-of-fold AUROC without each feature group and the group's gain (paired bootstrap CI)."""
    lines = [
        "| feature group | AUROC all stays: without -> with | gain (95% CI) | APACHE stays: without -> with | gain (95% CI) |",
        "|---|---|---|---|---|",
    ]
    for g in metadata["evaluation"]["feature_groups"]:
        a, b = g["all_stays"], g["apache_stays"]
        lines.append(
            f"| {g['group']} | {a['auroc_without']:.3f} -> {a['auroc_with']:.3f} | {a['gain']:+.3f} "
            f"({a['gain_ci'][0]:+.3f} to {a['gain_ci'][1]:+.3f}) | {b['auroc_without']:.3f} -> {b['auroc_with']:.3f} | "
            f"{b['gain']:+.3f} ({b['gain_ci'][0]:+.3f} to {b['gain_ci'][1]:+.3f}) |"
        )
    return "\n".join(lines)
