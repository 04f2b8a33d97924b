"""The picture of a finished multi-objective search: every query and the final Pareto front in the
plane of the first two objectives, and the front's hypervolume per query."""
from __future__ import annotations

import io
from typing import Any


def front_png(results: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    queries, declared = results["queries"], results["objectives"]
    x_name, y_name = (o["name"] for o in declared["objectives"][:2])
    fig, (ax, hv) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    feasible = [q for q in queries if q.get("feasible", True)]
    ax.scatter([q["values"][x_name] for q in feasible], [q["values"][y_name] for q in feasible], s=10, c="0.7",
               label="queried")
    infeasible = [q for q in queries if not q.get("feasible", True)]
    if infeasible:
        ax.scatter([q["values"][x_name] for q in infeasible], [q["values"][y_name] for q in infeasible], s=10,
                   marker="x", c="0.7", label="queried, infeasible")
    front = sorted(declared["front"], key=lambda p: p["values"][x_name])
    # the attainment line: between two front points, the best y of the points at least as good in x
    where = "pre" if declared["objectives"][0]["direction"] == "max" else "post"
    ax.step([p["values"][x_name] for p in front], [p["values"][y_name] for p in front], where=where, c="C0",
            marker="o", ms=4, label="front")
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.set_title(f"{results['strategy']} seed {results['seed']}: {len(front)} on the front")
    ax.legend(fontsize=8)
    hv.plot([q["query"] for q in queries], [q["hypervolume"] for q in queries])
    hv.set_xlabel("oracle queries")
    hv.set_ylabel("hypervolume (normalised)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
