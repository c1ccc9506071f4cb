"""Evaluation of risk predictions: discrimination with bootstrap CIs, calibration, alert thresholds, plots.

Kept apart from model code (as in scikit-learn) so the model, APACHE IVa and the NEWS2 baseline
are measured by the same functions on the same stays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cds.services.deterioration.calibration import logistic_fit


def _auroc(y: np.ndarray, p: np.ndarray) -> float:
    """AUROC as the Mann-Whitney statistic on average ranks (ties count half), as sklearn's
    roc_auc_score; written out because the bootstrap calls it tens of thousands of times."""
    from scipy.stats import rankdata

    y = np.asarray(y) == 1
    n1 = int(y.sum())
    n0 = len(y) - n1
    ranks = rankdata(p)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _auprc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (step-wise area under the precision-recall curve), as sklearn's
    average_precision_score: one point per distinct score, highest first."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p)
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ps)), len(ps) - 1]
    tps = np.cumsum(ys)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def calibration_slope_intercept(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Slope of y on logit(p) (ideal 1) and calibration-in-the-large intercept (ideal 0)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    lp = np.log(p / (1 - p))
    slope, _ = logistic_fit(lp, y)
    _, intercept = logistic_fit(lp, y, offset=lp, slope=False)
    return slope, intercept


def bootstrap_ci(y: np.ndarray, p: np.ndarray, n: int, seed: int) -> dict[str, list[float]]:
    """Percentile 95% CIs of AUROC and AUPRC over `n` stay-level bootstrap resamples (seeded)."""
    rng = np.random.default_rng(seed)
    aurocs, auprcs = [], []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        yb = y[idx]
        if yb.min() == yb.max():
            continue
        aurocs.append(_auroc(yb, p[idx]))
        auprcs.append(_auprc(yb, p[idx]))
    q = lambda xs: [round(float(np.percentile(xs, 2.5)), 4), round(float(np.percentile(xs, 97.5)), 4)]  # noqa: E731
    return {"auroc_ci": q(aurocs), "auprc_ci": q(auprcs)}


def metrics(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """AUROC and AUPRC (with 95% CIs), Brier score and calibration of probabilities `p`."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    slope, intercept = calibration_slope_intercept(y, p)
    out: dict[str, Any] = {
        "n": len(y),
        "events": int(y.sum()),
        "auroc": round(_auroc(y, p), 4),
        "auprc": round(_auprc(y, p), 4),
        "brier": round(float(np.mean((p - y) ** 2)), 4),
        "calibration_slope": round(slope, 3),
        "calibration_intercept": round(intercept, 3),
    }
    out.update(bootstrap_ci(y, p, n_boot, seed))
    return out


def at_threshold(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Alert rate, sensitivity, PPV and specificity when alerting at score >= threshold."""
    y = np.asarray(y, dtype=bool)
    alert = np.asarray(score) >= threshold
    tp = int(np.sum(alert & y))
    return {
        "threshold": threshold,
        "alert_rate": round(float(alert.mean()), 4),
        "sensitivity": round(tp / max(int(y.sum()), 1), 4),
        "ppv": round(tp / max(int(alert.sum()), 1), 4) if alert.any() else float("nan"),
        "specificity": round(float(np.sum(~alert & ~y)) / max(int((~y).sum()), 1), 4),
        "alerts": int(alert.sum()),
    }


def round_threshold(x: float) -> float:
    """Two significant digits: thresholds people can read and repeat."""
    return float(f"{x:.2g}")


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=100)
    for name, (y, p) in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def plot_calibration(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str, bins: int = 10
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=100)
    hi = 0.0
    for name, (y, p) in curves.items():
        order = np.argsort(p, kind="stable")
        groups = np.array_split(order, bins)  # equal-size groups by predicted risk
        xs, ys = [p[g].mean() for g in groups], [y[g].mean() for g in groups]
        ax.plot(xs, ys, marker="o", label=name)
        hi = max(hi, *xs, *ys)
    hi = min(1.0, hi * 1.1)
    ax.plot([0, hi], [0, hi], ls=":", c="grey", label="perfect calibration")
    ax.set(xlabel="predicted risk (decile mean)", ylabel="observed in-hospital death rate", title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def paired_gain(
    y: np.ndarray, with_group: np.ndarray, without: np.ndarray, n_boot: int, seed: int
) -> dict[str, Any]:
    """AUROC with and without a feature group on the same stays, and the gain with a paired bootstrap 95% CI."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue
        gains.append(_auroc(y[idx], with_group[idx]) - _auroc(y[idx], without[idx]))
    full, less = _auroc(y, with_group), _auroc(y, without)
    return {
        "n": len(y),
        "auroc_with": round(full, 4),
        "auroc_without": round(less, 4),
        "gain": round(full - less, 4),
        "gain_ci": [round(float(np.percentile(gains, 2.5)), 4), round(float(np.percentile(gains, 97.5)), 4)],
    }


def subgroups(
    y: np.ndarray, p: np.ndarray, sex: np.ndarray, age: np.ndarray, n_boot: int, seed: int
) -> list[dict[str, Any]]:
    """Discrimination and calibration by sex and age band (TRIPOD+AI item on fairness)."""
    bands = (("18-49", 0, 50), ("50-64", 50, 65), ("65-79", 65, 80), ("80+", 80, 200))
    out = []
    masks = [(f"sex: {s}", sex == s) for s in ("female", "male")]
    masks += [(f"age: {name}", (age >= lo) & (age < hi)) for name, lo, hi in bands]
    for name, mask in masks:
        ys, ps = np.asarray(y)[mask], np.asarray(p)[mask]
        if len(ys) < 20 or ys.min() == ys.max():
            out.append({"group": name, "n": int(mask.sum()), "note": "too few stays or events to measure"})
            continue
        m = metrics(ys, ps, n_boot, seed)
        out.append(
            {
                "group": name,
                "n": m["n"],
                "events": m["events"],
                "auroc": m["auroc"],
                "auroc_ci": m["auroc_ci"],
                "observed": round(float(ys.mean()), 4),
                "predicted": round(float(ps.mean()), 4),
                "calibration_slope": m["calibration_slope"],
            }
        )
    return out


def plot_importance(
    booster: Any, names: list[str], labels: dict[str, str], path: Path, top: int = 15
) -> None:
    """Total gain of each feature in the final model (a global view; per-patient reasons use SHAP)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gain = booster.get_score(importance_type="total_gain")
    pairs = sorted(((gain.get(f"f{i}", 0.0), labels.get(n, n)) for i, n in enumerate(names)), reverse=True)[
        :top
    ]
    fig, ax = plt.subplots(figsize=(6.5, 5), dpi=100)
    ax.barh([n for _, n in pairs][::-1], [g for g, _ in pairs][::-1])
    ax.set(xlabel="total gain (final model)", title="Feature importance")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
