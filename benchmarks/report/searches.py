"""The search part: every method on every protocol through `lightning-nas bench`, the predictors a
search needs fitted first where a seed is still to search; finished runs are reused."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.report.common import from_root
from benchmarks.report.fits import ensure_fitted, fit_per_seed, seed_fit_arguments
from benchmarks.report.protocols import Method, Protocol
from benchmarks.report.records import restore_record, save_record
from lightning_nas.errors import one_line
from lightning_nas.bench import bench_main, config_arguments, finished


def run_bench(configs: Sequence[Path], out: Path, seeds: int, budgets: list[int], workers: int,
              extra: list[str]) -> dict[str, Any]:
    args = [*config_arguments(configs), "--seeds", str(seeds), "--budgets", *map(str, budgets), "--workers",
            str(workers), "--out", str(out), "--", *extra]
    if bench_main(args) != 0:
        raise RuntimeError(f"bench of {', '.join(map(str, configs))} in {out} failed")
    summary = json.loads((out / "summary.json").read_text())
    summary["curves"] = curves(out, seeds, max(budgets))
    return summary


def curves(out: Path, seeds: int, budget: int) -> dict[str, list[float]]:
    """Mean and std of the reported metric of the running best, per query count."""
    rows = []
    for s in range(seeds):
        queries = json.loads((out / f"seed_{s}" / "results.json").read_text())["queries"][:budget]
        values = [next(iter(q["best"]["report"].values()), q["best"]["score"]) for q in queries]
        rows.append(values + [values[-1]] * (budget - len(values)))
    data = np.array(rows)
    return {"mean": data.mean(0).tolist(), "std": data.std(0).tolist()}


def run_searches(chosen: list[Protocol], methods: list[Method], shared: Path, seeds: int, budgets: list[int],
                 workers: int, runs: Path, records: Path, producers: dict[str, Path], quick: bool, log: list[str],
                 not_completed: list[dict[str, str]]) -> list[dict[str, Any]]:
    results = []
    more = {m.name: [30] if quick else list(m.extra_budgets) for m in methods if m.extra_budgets}
    for protocol in chosen:
        todo = [m for m in methods if m.name not in protocol.skipped]
        not_completed += [{"protocol": protocol.name, "method": m.name, "reason": f"not run: {why}"}
                          for m in methods if (why := protocol.skipped.get(m.name))]
        baseline_budgets = {b for m in todo for b in more.get(m.name, [])}  # RS and RE as far as any method
        for method in todo:
            own = sorted({*budgets, *(baseline_budgets if method.baseline else more.get(method.name, []))})
            record = records / protocol.name / f"{method.name}.tar.gz"
            try:
                results.append(run_method(protocol, method, shared, runs / protocol.name / method.name, seeds, own,
                                          workers, producers, quick, log, record))
            except RuntimeError as e:
                if not protocol.partial:
                    raise
                not_completed.append({"protocol": protocol.name, "method": method.name, "reason": one_line(str(e))})
    return results


def run_method(protocol: Protocol, method: Method, shared: Path, run_dir: Path, seeds: int, budgets: list[int],
               workers: int, producers: dict[str, Path], quick: bool, log: list[str],
               record: Path | None = None) -> dict[str, Any]:
    """Every seed of one method on one protocol (fitting what it needs first), summarised; `record`
    keeps the finished runs (restored first where `run_dir` lacks them)."""
    if record:
        restore_record(record, run_dir)
    configs = [from_root(c) for c in protocol.configs(method)]  # as the working directory (the root) names them
    extra = protocol.overrides(shared) + (seed_fit_arguments(configs, run_dir) if method.per_seed_fit else [])
    # only the seeds still to search need what a search loads (runs may be reused from another machine)
    pending = [s for s in range(seeds) if not finished(configs, s, max(budgets), run_dir / f"seed_{s}", extra)]
    if pending and method.per_seed_fit:
        fit_per_seed(configs, protocol, shared, method.name, run_dir, pending, workers, producers, quick, log)
    elif pending:
        ensure_fitted("search", configs, producers, log)
    entry = {"protocol": protocol.name, "method": method.name, "config": list(map(str, configs)),
             "budgets": budgets, "summary": run_bench(configs, run_dir, seeds, budgets, workers, extra),
             "searched_here": len(pending)}
    if record:
        save_record(run_dir, record)
    if method.per_seed_fit:
        fits = [run_dir / "fits" / f"seed_{s}" / "fit_time.json" for s in range(seeds)]
        entry["fit_s"] = float(np.mean([json.loads(f.read_text())["fit_s"] for f in fits if f.is_file()] or [np.nan]))
    return entry
