"""`lightning-nas bench`: one search config over many seeds in parallel processes, then a summary.

Each seed runs once at the largest budget; the figures for smaller budgets are read off its
trajectory (best-by-objective after the first b queries). Finished seeds (a `results.json` at
least as long as needed) are reused, so an interrupted bench resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from lightning_nas.errors import ConfigError, MissingFileError
from lightning_nas.io import atomic_write
from lightning_nas.lightning_cli import run_search
from lightning_nas.search.statistics import best_after, mean_std, wall_time


#: beside each seed's results: what the run was asked to search (config text and arguments)
RECIPE_FILE = "bench_recipe.json"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit status 2 from the CLI, not usage + SystemExit
        raise ConfigError(f"{message}; see `lightning-nas bench --help`")


def run_one(config: str, seed: int, budget: int, run_dir: str, extra: list[str]) -> str:
    """Run one seed in this process (a worker of the pool) and return its run directory."""
    per_seed = seed_arguments(extra, seed)
    recipe = _recipe(config, per_seed)
    run = Path(run_dir)
    if run.is_dir() and not _same_recipe(run, recipe):
        shutil.rmtree(run)  # searched with another config or arguments
    if _searched_to(run, budget):
        return run_dir
    atomic_write(run / RECIPE_FILE, recipe)
    import sys

    import torch

    torch.set_num_threads(1)
    sys.argv = sys.argv[:1]  # the worker inherits the parent's argv; LightningCLI must not read it
    run_search(["--config", config, "--seed_everything", str(seed), "--budget", str(budget),
                "--run_dir", run_dir, "--progress", "false", *per_seed])
    return run_dir


def seed_arguments(extra: list[str], seed: int) -> list[str]:
    return [arg.replace("{seed}", str(seed)) for arg in extra]  # e.g. --ckpt_path fits/seed_{seed}/x.ckpt


def _recipe(config: str, per_seed: list[str]) -> str:
    return json.dumps({"config": Path(config).read_text(), "arguments": per_seed}, indent=1)


def finished(config: str, seed: int, budget: int, run_dir: str | Path, extra: list[str]) -> bool:
    """Whether `run_dir` holds this seed's search with this recipe, to at least `budget` queries."""
    run = Path(run_dir)
    return _searched_to(run, budget) and _same_recipe(run, _recipe(config, seed_arguments(extra, seed)))


def _searched_to(run: Path, budget: int) -> bool:
    results = run / "results.json"
    return results.is_file() and len(json.loads(results.read_text())["queries"]) >= budget


def _same_recipe(run: Path, recipe: str) -> bool:
    """A run directory may be continued or reused only for the recipe it was started with."""
    written = run / RECIPE_FILE
    if not written.is_file():  # empty, or made by a version without recipes (whose checkpoints cannot resume)
        return not any(run.iterdir())
    return written.read_text() == recipe


def summarize(run_dirs: list[str], budgets: list[int], config: str) -> dict[str, Any]:
    runs = [json.loads((Path(d) / "results.json").read_text()) for d in run_dirs]
    optimum = table_optimum(runs[0]["config"]) if runs else None
    summary: dict[str, Any] = {"config": config, "seeds": len(runs), "budgets": {}}
    for b in budgets:
        bests = [best_after(r, b) for r in runs]
        bests = [x for x in bests if x is not None]
        report_names = sorted(bests[0]["report"]) if bests else []
        entry: dict[str, Any] = {"count": len(bests)}
        for name in ["score", *report_names]:
            values = [x["score"] if name == "score" else x["report"][name] for x in bests]
            mean, std = mean_std(values)
            entry[name] = {"mean": mean, "std": std}
        if optimum is not None:
            entry["found_optimum_fraction"] = float(np.mean([x["arch"] == optimum for x in bests])) if bests else 0.0
        summary["budgets"][str(b)] = entry
    summary["optimum_by_objective"] = optimum
    summary["wall_time_s"] = {"mean": float(np.mean([wall_time(d) for d in run_dirs])) if runs else 0.0}
    return summary


def table_optimum(run_config: dict[str, Any]) -> str | None:
    """The best-by-objective architecture of the whole table, when the run searched a table."""
    data = (run_config.get("data") or {}).get("init_args") or {}
    if not data.get("benchmark"):
        return None
    from lightning_nas.benchmarks.archive import Benchmark

    bench = Benchmark.load(data["benchmark"])
    key, _ = bench.best(data["target"])
    space = bench.space
    from_key = getattr(space, "from_key", space.from_string)
    return str(from_key(key))


def bench_main(argv: list[str]) -> int:
    parser = _Parser(prog="lightning-nas bench", description=__doc__.split("\n\n")[0].replace("\n", " "),
                     epilog="Finished seeds are reused: rerun the same command to resume an interrupted bench.")
    parser.add_argument("--config", required=True, help="the search config (e.g. configs/nb201/re.yaml)")
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds to run (default: 20)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the first seed; the seeds are first-seed .. first-seed + seeds - 1 (default: 0)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 150],
                        help="query budgets to summarise; each seed searches to the largest (default: 50 100 150)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="seeds searched in parallel, one process each (default: the number of CPUs)")
    parser.add_argument("--out", default=None,
                        help="the folder of the seeds' runs and summary.json (default: checkpoints/bench/<config path>)")
    parser.add_argument("extra", nargs="*", metavar="-- SEARCH_ARGS",
                        help="further search arguments after --, e.g. -- --ckpt_path fits/seed_{seed}/x.ckpt; "
                             "{seed} is replaced by each seed")
    args = parser.parse_args(argv)
    if not Path(args.config).is_file():
        raise MissingFileError(f"config file {args.config} does not exist")
    for name, value in (("--seeds", args.seeds), ("--budgets", min(args.budgets)), ("--workers", args.workers)):
        if value < 1:
            raise ConfigError(f"{name} must be positive, got {value}")
    out = Path(args.out or Path("checkpoints/bench") / Path(args.config).with_suffix("").as_posix().replace("/", "_"))
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    run_dirs = [str(out / f"seed_{s}") for s in seeds]
    start = time.perf_counter()
    from rich.progress import Progress

    with Progress() as progress, ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
        task = progress.add_task(f"bench {Path(args.config).name}", total=len(run_dirs))
        futures = [pool.submit(run_one, args.config, s, max(args.budgets), d, args.extra) for s, d in zip(seeds, run_dirs)]
        for future in as_completed(futures):
            future.result()
            progress.advance(task)
    summary = summarize(run_dirs, sorted(args.budgets), args.config)
    summary["bench_wall_time_s"] = round(time.perf_counter() - start, 2)
    atomic_write(out / "summary.json", json.dumps(summary, indent=1))
    for b, entry in summary["budgets"].items():
        figures = "  ".join(f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in entry.items() if isinstance(v, dict))
        print(f"budget {b}: {figures}  (n={entry['count']})")
    print(f"summary: {out / 'summary.json'}")
    return 0
