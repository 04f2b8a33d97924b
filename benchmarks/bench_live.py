"""The seven searches on the embedded live task (configs/live/): every candidate a real NAS-Bench-201
network trained on Animal-Shape MNIST (configs/live/task.yaml), budget 50, seed by seed.

    nice python -m benchmarks.bench_live                       # seeds 0..9, resumable
    python -m benchmarks.bench_live --seeds 2 --summarise-only # tables from the runs there are

Each search composes configs/methods/<m>.yaml, configs/live/task.yaml and configs/live/<m>.yaml, as
the README shows, and runs through `lightning-nas bench` (finished seeds are reused), seed-major: every
method's seed 0, then every method's seed 1, ..., so a cut-off run still compares all methods. The
seven searches share the task's SQLite store (a cell is trained once, whichever search asks first).
Per method and budget: the best validation accuracy found (mean ± std over seeds), the test accuracy
of that cell, and the wall time per run; throughput: cells trained per minute on one core.
Results: benchmarks/results/live_comparison.{json,md}; runs: benchmarks/runs/live/.
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report.common import at_root
from lightning_nas.bench import bench_main, config_arguments
from lightning_nas.io import atomic_write

METHODS = {"RS": "rs", "RE": "re", "DCL-ENAS": "dcl_enas", "CTNAS": "ctnas", "CR-LSO": "crlso", "EDNAG": "ednag",
           "Delta-NAS": "delta_nas"}
BUDGETS = (10, 30, 50)


def configs(method: str) -> list[str]:
    return [f"configs/methods/{method}.yaml", "configs/live/task.yaml", f"configs/live/{method}.yaml"]


def run_seed(name: str, seed: int, runs: Path, store: Path) -> None:
    out = runs / METHODS[name]
    args = [*config_arguments(configs(METHODS[name])), "--seeds", "1", "--first-seed", str(seed), "--budgets",
            str(max(BUDGETS)), "--workers", "1", "--out", str(out), "--", "--oracle.init_args.store", str(store)]
    if bench_main(args) != 0:
        raise RuntimeError(f"the live search of {name}, seed {seed}, failed (logs in {out / 'logs'})")


def best_at(queries: list[dict[str, Any]], budget: int) -> tuple[float, float]:
    """The best validation accuracy among the first `budget` queries and its cell's test accuracy."""
    answered = [q for q in queries[:budget] if q.get("score") is not None]
    best = max(answered, key=lambda q: q["score"])
    return best["score"], best["report"]["test_acc"]


def summarise(runs: Path, store: Path, seeds: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"task": "configs/live/task.yaml", "budgets": list(BUDGETS), "methods": {}}
    for name, method in METHODS.items():
        done = [s for s in seeds if (runs / method / f"seed_{s}" / "results.json").is_file()]
        if not done:
            continue
        entry: dict[str, Any] = {"config": configs(method), "seeds": done, "budgets": {}}
        results = [json.loads((runs / method / f"seed_{s}" / "results.json").read_text()) for s in done]
        for b in BUDGETS:
            val, test = zip(*(best_at(r["queries"], b) for r in results))
            entry["budgets"][str(b)] = {"val": [float(np.mean(val)), float(np.std(val))],
                                        "test": [float(np.mean(test)), float(np.std(test))], "values": list(val)}
        walls = [json.loads((runs / method / f"seed_{s}" / "timing.json").read_text())["wall_time_s"] for s in done]
        entry["wall_s_per_run"] = float(np.mean(walls))
        out["methods"][name] = entry
    with sqlite3.connect(store) as db:
        seconds = [r[0] for r in db.execute("SELECT train_time_s FROM evaluations")]
    out["trained_cells"] = len(seconds)
    out["seconds_per_cell"] = float(np.mean(seconds)) if seconds else None
    out["cells_per_minute"] = 60.0 / out["seconds_per_cell"] if seconds else None
    return out


def markdown(summary: dict[str, Any]) -> str:
    b = str(max(BUDGETS))
    rows = ["| method | seeds | " + " | ".join(f"best val @ {x}" for x in BUDGETS) + f" | test of best @ {b} | s per run |",
            "|---|---|" + "---|" * len(BUDGETS) + "---|---|"]
    for name, e in summary["methods"].items():
        cells = " | ".join(f"{e['budgets'][str(x)]['val'][0]:.2f} ± {e['budgets'][str(x)]['val'][1]:.2f}" for x in BUDGETS)
        test = e["budgets"][b]["test"]
        rows.append(f"| {name} | {len(e['seeds'])} | {cells} | {test[0]:.2f} ± {test[1]:.2f} | {e['wall_s_per_run']:.0f} |")
    re = summary["methods"].get("RE")
    verdict = []
    if re:
        for name, e in summary["methods"].items():
            if name in ("RS", "RE"):
                continue
            delta = e["budgets"][b]["val"][0] - re["budgets"][b]["val"][0]
            verdict.append(f"{name} {delta:+.2f}")
    return "\n".join([
        "# The seven searches on the embedded live task",
        "",
        "Every candidate is a real NAS-Bench-201 network (C = 8, one cell per stage) trained for 5 epochs on "
        "Animal-Shape MNIST at 12x12 (configs/live/task.yaml); the score is its validation accuracy (%), the test "
        "accuracy is of the same cell. Mean ± std over the seeds listed; each search composes "
        "configs/methods/<m>.yaml + configs/live/task.yaml + configs/live/<m>.yaml.",
        "",
        *rows,
        "",
        f"Best validation accuracy at budget {b} minus RE's: {', '.join(verdict) or 'n/a'}.",
        "",
        f"Live training: {summary['trained_cells']} cells trained, {summary['seconds_per_cell']:.1f} s each on one "
        f"core ({summary['cells_per_minute']:.1f} cells per minute; the searches share one store, so a cell two "
        "searches ask for is trained once).",
        "",
        "Run: `nice python -m benchmarks.bench_live --seeds N` (resumable; seed-major).",
        "",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--runs", default="benchmarks/runs/live")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--summarise-only", action="store_true")
    args = parser.parse_args(argv)
    with at_root():
        runs, results = Path(args.runs), Path(args.results)
        store = runs / "evaluations.sqlite"
        runs.mkdir(parents=True, exist_ok=True)
        seeds = list(range(args.first_seed, args.first_seed + args.seeds))
        start = time.perf_counter()
        if not args.summarise_only:
            for seed in seeds:
                for name in METHODS:
                    run_seed(name, seed, runs, store)
                    print(f"{name} seed {seed} done ({time.perf_counter() - start:.0f} s)", flush=True)
        summary = summarise(runs, store, seeds)
        atomic_write(results / "live_comparison.json", json.dumps(summary, indent=1))
        atomic_write(results / "live_comparison.md", markdown(summary))
        print(markdown(summary))


if __name__ == "__main__":
    main()
