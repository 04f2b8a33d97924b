"""The picture of a finished search: the best objective (and the reported metrics of the best) per query."""
from __future__ import annotations

import io
import math
from typing import Any

from lightning_nas.search.front_plot import front_png


def trajectory_png(results: dict[str, Any], report_names: list[str]) -> bytes:
    if "front" in results.get("objectives", {}):  # a multi-objective search: its front
        return front_png(results)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    queries = results["queries"]
    x = [q["query"] for q in queries]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(x, [q["best"]["score"] if q["best"] else math.nan for q in queries], label="best objective (search metric)")
    for name in report_names:
        ax.plot(x, [q["best"]["report"][name] if q["best"] else math.nan for q in queries], label=f"{name} of best",
                linestyle="--")
    ax.set_xlabel("oracle queries")
    ax.set_ylabel("metric")
    ax.set_title(f"{results['strategy']} seed {results['seed']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
