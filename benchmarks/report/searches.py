"""The search part: every method on every protocol, the predictors a search needs fitted first where a
seed is still to search; finished runs are reused. All cells' fits go to the executor together, then
all their searches (one SLURM job array each with `--executor slurm`); a cell is summarised once its
runs are in, and a failed run fails its cell only."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report.common import from_root
from benchmarks.report.fits import SeedFit, ensure_fitted, seed_fit_arguments, seed_fits
from benchmarks.report.protocols import Method, Protocol
from benchmarks.report.records import restore_record, save_record
from lightning_nas.bench import SearchRun, write_summary
from lightning_nas.errors import one_line
from lightning_nas.executors import Executor, Failure, RunsFailed


@dataclass
class Cell:
    """One method on one protocol: its seeds' runs, and the fits of those still to search."""

    protocol: Protocol
    method: Method
    configs: list[Path]
    run_dir: Path
    seeds: int
    budgets: list[int]
    extra: list[str]
    record: Path | None
    runs: list[SearchRun]
    pending: list[SearchRun]
    fits: list[SeedFit]
    failures: list[Failure] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.protocol.name}/{self.method.name}"


def prepare(protocol: Protocol, method: Method, shared: Path, run_dir: Path, seeds: int, budgets: list[int],
            producers: dict[str, Path], quick: bool, log: list[str], record: Path | None = None) -> Cell:
    """A cell's runs; `record` keeps its finished runs (restored first where `run_dir` lacks them). The
    checkpoints its searches share are fitted here; each seed's own fit is returned as a task."""
    if record:
        restore_record(record, run_dir)
    configs = [from_root(c) for c in protocol.configs(method)]  # as the working directory (the root) names them
    extra = protocol.overrides(shared) + (seed_fit_arguments(configs, run_dir) if method.per_seed_fit else [])
    name = f"{protocol.name}/{method.name}"
    runs = [SearchRun(f"{name}/seed_{s}", tuple(map(str, configs)), s, max(budgets), str(run_dir / f"seed_{s}"),
                      tuple(extra)) for s in range(seeds)]
    # only the seeds still to search need what a search loads (runs may be reused from another machine)
    pending = [run for run in runs if not run.finished()]
    fits = []
    if pending and method.per_seed_fit:
        fits = seed_fits(configs, protocol, shared, name, run_dir, [run.seed for run in pending], producers, quick)
    elif pending:
        ensure_fitted("search", configs, producers, log)
    return Cell(protocol, method, configs, run_dir, seeds, budgets, extra, record, runs, pending, fits)


def run_cells(cells: list[Cell], executor: Executor, log: list[str]) -> list[dict[str, Any]]:
    """Fit and search what the cells miss; the entries of the cells whose runs all finished (the
    others keep their failures in `Cell.failures`)."""
    failed = {f.task: f for f in executor.run([fit for cell in cells for fit in cell.fits], "per-seed fits")}
    for cell in cells:
        cell.failures += [failed[fit.name] for fit in cell.fits if fit.name in failed]
        times = [json.loads((Path(fit.fit_config).parent / "fit_time.json").read_text())["fit_s"]
                 for fit in cell.fits if fit.name not in failed]
        if times:
            log.append(f"fit {cell.method.name} on {cell.protocol.name}, {len(times)} seeds: {np.mean(times):.0f} s per fit")
    # a seed whose fit failed is not searched; the cell's other seeds are
    searches = [run for cell in cells for run in cell.pending if f"{cell.name}/fit_seed_{run.seed}" not in failed]
    failed = {f.task: f for f in executor.run(searches, "searches")}
    entries = []
    for cell in cells:
        cell.failures += [failed[run.name] for run in cell.pending if run.name in failed]
        if not cell.failures:
            entries.append(summarise(cell))
    return entries


def summarise(cell: Cell) -> dict[str, Any]:
    summary = write_summary([str(c) for c in cell.configs], cell.extra, 0, [run.run_dir for run in cell.runs],
                            cell.budgets, cell.run_dir)
    summary["curves"] = curves(cell.run_dir, cell.seeds, max(cell.budgets))
    entry = {"protocol": cell.protocol.name, "method": cell.method.name, "config": list(map(str, cell.configs)),
             "budgets": cell.budgets, "summary": summary, "searched_here": len(cell.pending)}
    if cell.record:
        save_record(cell.run_dir, cell.record)
    if cell.method.per_seed_fit:
        fits = [cell.run_dir / "fits" / f"seed_{s}" / "fit_time.json" for s in range(cell.seeds)]
        entry["fit_s"] = float(np.mean([json.loads(f.read_text())["fit_s"] for f in fits if f.is_file()] or [np.nan]))
    return entry


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
                 executor: Executor, runs: Path, records: Path, producers: dict[str, Path], quick: bool,
                 log: list[str], not_completed: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Every chosen method on every chosen protocol. A cell of a partial protocol that fails is listed
    in `not_completed`; failures elsewhere raise `RunsFailed` once every cell has run."""
    cells = []
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
                cells.append(prepare(protocol, method, shared, runs / protocol.name / method.name, seeds, own,
                                     producers, quick, log, record))
            except RuntimeError as e:  # a shared checkpoint's fit failed
                if not protocol.partial:
                    raise
                not_completed.append({"protocol": protocol.name, "method": method.name, "reason": one_line(str(e))})
    results = run_cells(cells, executor, log)
    failures = []
    for cell in cells:
        if cell.failures and cell.protocol.partial:
            reason = f"{len(cell.failures)} of {len(cell.pending) + len(cell.fits)} runs failed, e.g. {cell.failures[0]}"
            not_completed.append({"protocol": cell.protocol.name, "method": cell.method.name, "reason": reason})
        elif cell.failures:
            failures += cell.failures
    if failures:
        raise RunsFailed(failures, sum(len(cell.pending) + len(cell.fits) for cell in cells))
    return results


def run_method(protocol: Protocol, method: Method, shared: Path, run_dir: Path, seeds: int, budgets: list[int],
               executor: Executor, producers: dict[str, Path], quick: bool, log: list[str],
               record: Path | None = None) -> dict[str, Any]:
    """Every seed of one method on one protocol (fitting what it needs first), summarised."""
    cell = prepare(protocol, method, shared, run_dir, seeds, budgets, producers, quick, log, record)
    entries = run_cells([cell], executor, log)
    if cell.failures:
        raise RunsFailed(cell.failures, len(cell.pending) + len(cell.fits))
    return entries[0]
