"""Training pipeline of the deterioration model: eICU -> FHIR -> features -> xgboost -> calibrated risk.

Steps: convert every stay to FHIR (`cds.training.eicu`), extract features with the service's own
extractor (`cds.features.deterioration`), cross-validate grouped by hospital (no hospital in both
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

from cds import manifest
from cds.features.deterioration import extract, feature_labels, feature_names, feature_units
from cds.record import PatientRecord
from cds.scores import calibration as cal
from cds.scores.news2 import news2
from cds.training import eicu, evaluation
from cds.training.modelcard import render_card

NAME = "deterioration"
VERSION = "1.0.0"
PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "max_depth": 3,
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 3,
    "lambda": 1.0,
    "nthread": 1,
}
ROUNDS = 250
FOLDS = 5
INNER_FOLDS = 4
MIN_COVERAGE = 0.01  # a feature charted for fewer stays than this cannot be learned: left out, and said so
WARNING_ALERT_RATE = 0.15
CRITICAL_ALERT_RATE = 0.05
ARTEFACTS = ("model.ubj", "metadata.json", "card.md", "roc.png", "calibration.png")

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
    return Dataset(
        X=np.vstack(rows).astype(np.float32),
        y=np.array(ys, dtype=np.int32),
        groups=np.array(groups),
        stay_ids=ids,
        apache=np.array(apache, dtype=np.float64),
        news2_total=np.array(n2, dtype=np.float64),
        names=names,
    )


class LocalEngine:
    """xgboost in this process."""

    name = "local"

    def fit(self, X: np.ndarray, y: np.ndarray, seed: int) -> xgb.Booster:
        return xgb.train({**PARAMS, "seed": seed}, xgb.DMatrix(X, label=y, missing=np.nan), ROUNDS)

    def close(self) -> None:
        pass


class DaskEngine:
    """xgboost.dask on a Dask cluster: a LocalCluster of `n_workers`, or the scheduler at `address`."""

    name = "dask"

    def __init__(self, address: str | None = None, n_workers: int = 2) -> None:
        from dask.distributed import Client, LocalCluster

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
        out = xgb.dask.train(self.client, {**PARAMS, "seed": seed}, dtrain, num_boost_round=ROUNDS)
        return out["booster"]

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _margin(booster: xgb.Booster, X: np.ndarray) -> np.ndarray:
    return booster.inplace_predict(X, predict_type="margin", missing=np.nan).astype(np.float64)


def fit_calibrated(
    engine: Any, X: np.ndarray, y: np.ndarray, groups: np.ndarray, method: cal.Method, seed: int
) -> tuple[xgb.Booster, cal.Calibration]:
    """A booster on all of X and a calibrator fitted on inner out-of-fold margins (grouped by hospital)."""
    from sklearn.model_selection import GroupKFold

    oof = np.zeros(len(y))
    for train, test in GroupKFold(n_splits=INNER_FOLDS).split(X, y, groups):
        oof[test] = _margin(engine.fit(X[train], y[train], seed), X[test])
    return engine.fit(X, y, seed), cal.fit(oof, y, method)


def _select_features(data: Dataset) -> tuple[list[int], list[dict[str, Any]]]:
    coverage = np.mean(~np.isnan(data.X), axis=0)
    keep = [i for i, c in enumerate(coverage) if c >= MIN_COVERAGE]
    dropped = [
        {
            "name": data.names[i],
            "label": feature_labels()[data.names[i]],
            "coverage": round(float(coverage[i]), 4),
            "reason": "not charted in the training data: extracted and shown, not used by the model",
        }
        for i, c in enumerate(coverage)
        if c < MIN_COVERAGE
    ]
    return keep, dropped


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
    keep, dropped = _select_features(data)
    X, y, groups = data.X[:, keep], data.y, data.groups
    names = [data.names[i] for i in keep]
    progress(
        f"model features: {len(names)} (left out, not in the data: {', '.join(d['name'] for d in dropped) or 'none'})"
    )

    runner = LocalEngine() if engine == "local" else DaskEngine(scheduler, n_workers)
    try:
        risk = np.zeros(len(y))
        news2_p = np.zeros(len(y))
        for k, (tr, te) in enumerate(GroupKFold(n_splits=FOLDS).split(X, y, groups), 1):
            booster, calib = fit_calibrated(runner, X[tr], y[tr], groups[tr], method, seed)
            risk[te] = calib.apply(_margin(booster, X[te]))
            a, b = cal.logistic_fit(data.news2_total[tr], y[tr])  # NEWS2 -> probability, same folds
            news2_p[te] = 1 / (1 + np.exp(-(a * data.news2_total[te] + b)))
            progress(
                f"fold {k}/{FOLDS}: {len(te)} stays from {len(set(groups[te]))} hospitals, "
                f"{int(y[te].sum())} deaths ({time.perf_counter() - started:.1f} s)"
            )
        final, calib = fit_calibrated(runner, X, y, groups, method, seed)
    finally:
        runner.close()
    progress(f"final model fitted ({time.perf_counter() - started:.1f} s)")

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
        "thresholds": {
            "model": [evaluation.at_threshold(ya, ra, t) for t in (warning, critical)],
            "apache_iva": [evaluation.at_threshold(ya, aa, t) for t in (warning, critical)],
            "news2": [evaluation.at_threshold(ya, n2a, t) for t in (5, 7)],
            "model_all_stays": [evaluation.at_threshold(y, risk, t) for t in (warning, critical)],
        },
    }
    progress("evaluation done")

    out_dir.mkdir(parents=True, exist_ok=True)
    final.save_model(out_dir / "model.ubj")
    curves = {"model": (ya, ra), "APACHE IVa": (ya, aa), "NEWS2 baseline": (ya, na)}
    evaluation.plot_roc(
        curves, out_dir / "roc.png", f"In-hospital death, {FOLDS}-fold CV grouped by hospital"
    )
    evaluation.plot_calibration(curves, out_dir / "calibration.png", "Calibration (out-of-fold, deciles)")

    units, labels = feature_units(), feature_labels()
    metadata: dict[str, Any] = {
        "name": NAME,
        "version": VERSION,
        "model_file": "model.ubj",
        "model_sha256": manifest.sha256_file(out_dir / "model.ubj"),
        "outcome": "in-hospital death (eICU hospitaldischargestatus = Expired), used as a proxy for deterioration",
        "scoring": {
            "window_hours": 24,
            "features": "worst value per feature in the 24 h before the scoring time",
        },
        "features": [{"name": n, "unit": units[n], "label": labels[n]} for n in names],
        "excluded_features": dropped,
        "xgboost": {
            "version": xgb.__version__,
            "params": {**PARAMS, "seed": seed},
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
        ("model", "xgboost model (calibrated)"),
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
