"""The files a finished search leaves in its run directory: results.json (the record, byte-identical
for the same config and seed), timing.json (wall-clock figures), queries.csv and trajectory.png."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from lightning_nas.io import atomic_write, dumps
from lightning_nas.search.trajectory import trajectory_png

RESULTS_FILE = "results.json"
TIMING_FILE = "timing.json"  # wall-clock figures live apart, so a resumed run's results.json is byte-identical
QUERIES_FILE = "queries.csv"
TRAJECTORY_FILE = "trajectory.png"


def write_outputs(run_dir: Path, results: dict[str, Any], timing: dict[str, Any]) -> None:
    atomic_write(run_dir / TIMING_FILE, dumps(timing, indent=1))
    atomic_write(run_dir / RESULTS_FILE, dumps(results, indent=1, default=float))  # strict: NaN -> null
    report_names = sorted(results["queries"][0]["report"]) if results["queries"] else []
    atomic_write(run_dir / QUERIES_FILE, queries_csv(results["queries"], report_names))
    atomic_write(run_dir / TRAJECTORY_FILE, trajectory_png(results, report_names))


def queries_csv(queries: list[dict[str, Any]], report_names: list[str]) -> str:
    """One row per query: the architecture asked, its score and reported metrics, its objective values
    (a multi-objective or constrained search), and the best so far (empty while none is feasible); a
    metric the table lacks for that architecture (NaN) is an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out)
    value_names = list(queries[0].get("values", {})) if queries else []
    writer.writerow(["query", "arch", "score", *report_names, *value_names, "best_arch", "best_score",
                     *[f"best_{n}" for n in report_names]])
    for q in queries:
        best = q["best"] or {"arch": "", "score": "", "report": dict.fromkeys(report_names, "")}
        writer.writerow(
            [q["query"], q["arch"], q["score"], *[_cell(q["report"][n]) for n in report_names],
             *[q["values"][n] for n in value_names],
             best["arch"], best["score"], *[_cell(best["report"][n]) for n in report_names]]
        )
    return out.getvalue()


def _cell(value: float | None) -> float | str:
    return "" if value is None or not math.isfinite(value) else value
