"""PNG plot of the override rate over time for the busiest card kinds (matplotlib, Agg backend)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

BUSIEST = 6


def plot_override_rate(report: dict[str, Any], path: str | Path, busiest: int = BUSIEST) -> Path:
    """Write the plot for a `build_report` result; returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    kinds = sorted(report["kinds"], key=lambda k: -k["issued"])[:busiest]
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=120)
    try:
        for k in kinds:
            points = [
                (datetime.fromisoformat(p["start"].replace("Z", "+00:00")), p["override_rate"])
                for p in k["series"]
            ]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, [y * 100 for y in ys], marker="o", markersize=3, linewidth=1.5,
                    label=f"{k['service']} / {k['kind']} (n={k['issued']})")  # fmt: skip
        ax.set_title(f"Override rate per {report['bucket']}, {report['since']} to {report['until']}")
        ax.set_ylabel("cards overridden (% of issued)")
        ax.set_ylim(-2, 102)
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
        if kinds:
            ax.legend(loc="upper left", fontsize=8, frameon=False)
        else:
            ax.text(
                0.5, 0.5, "no cards issued in this range", ha="center", va="center", transform=ax.transAxes
            )
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
    return out
