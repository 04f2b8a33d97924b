"""`lightning-nas bench`: one search config over many seeds in parallel processes, then a summary.

The config may be composed of several files (`--config` repeated, as for `search`). Each seed runs once
at the largest budget; the figures for smaller budgets are read off its trajectory (best-by-objective
after the first b queries). A finished seed (a `results.json` at least as long as needed) is reused
while its recipe, the resolved search config, is unchanged: an interrupted bench resumes where it
stopped, and config files restructured without changing what they resolve to keep their runs.
"""
from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lightning_nas.errors import ConfigError, MissingFileError
from lightning_nas.io import atomic_write, dumps
from lightning_nas.lightning_cli import run_search
from lightning_nas.search.statistics import best_after, mean_std, wall_time


#: beside each seed's results: what the run searched (its resolved config, see `recipe`)
RECIPE_FILE = "bench_recipe.json"
#: keys of a resolved search config that say where and how far a run goes, not what it searches
RUN_KEYS = ("run_dir", "budget", "progress")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit status 2 from the CLI, not usage + SystemExit
        raise ConfigError(f"{message}; see `lightning-nas bench --help`")


def run_one(configs: Sequence[str], seed: int, budget: int, run_dir: str, extra: list[str]) -> str:
    """Run one seed in this process (a worker of the pool) and return its run directory."""
    per_seed = seed_arguments(extra, seed)
    made = recipe(configs, seed, per_seed)
    run = Path(run_dir)
    if run.is_dir() and not _same_recipe(run, made):
        shutil.rmtree(run)  # searched with another config or arguments
    if _searched_to(run, budget):
        return run_dir
    atomic_write(run / RECIPE_FILE, made)
    import sys

    import torch

    torch.set_num_threads(1)
    sys.argv = sys.argv[:1]  # the worker inherits the parent's argv; LightningCLI must not read it
    run_search([*config_arguments(configs), "--seed_everything", str(seed), "--budget", str(budget),
                "--run_dir", run_dir, "--progress", "false", *per_seed])
    return run_dir


def seed_arguments(extra: list[str], seed: int) -> list[str]:
    return [arg.replace("{seed}", str(seed)) for arg in extra]  # e.g. --ckpt_path fits/seed_{seed}/x.ckpt


def config_arguments(configs: Sequence[str | Path]) -> list[str]:
    """`--config` before each file: jsonargparse merges them in order, later files overriding earlier."""
    return [arg for config in configs for arg in ("--config", str(config))]


def recipe(configs: Sequence[str | Path], seed: int, arguments: list[str]) -> str:
    """What a seed's run searches: the search config resolved from `configs` and `arguments` (every
    default filled in), `portable`, without `RUN_KEYS`."""
    config = portable(resolved_config(["search", *config_arguments(configs), "--seed_everything", str(seed),
                                       *arguments]))
    for key in RUN_KEYS:
        config.pop(key, None)
    return json.dumps(config, indent=1, sort_keys=True)


def portable(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config without what depends on where files are or on the version that parsed it:
    the config files it was read from are dropped, tables are named by their file name (a run is the
    same run wherever the repository and the tables are kept), and arguments left at None are
    dropped (an option a later version adds with a None default does not make another run)."""
    config = without_nulls({key: value for key, value in config.items() if key != "config"})
    data = (config.get("data") or {}).get("init_args") or {}
    if data.get("benchmark"):
        tables = data["benchmark"] if isinstance(data["benchmark"], list) else [data["benchmark"]]
        data["benchmark"] = [Path(table).name for table in tables]
    return config


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def resolved_config(args: list[str]) -> dict[str, Any]:
    """The config of a subcommand as `lightning-nas` parses `args` (the subcommand first; config files
    merged, overrides applied, defaults filled in), as plain data; nothing is instantiated, loaded or run."""
    subcommand, rest = args[0], list(args[1:])
    if subcommand == "search":
        return _plain(_parser("search").parse_args(rest).as_dict())
    parsed = _parser("lightning").parse_args([subcommand, *rest])
    return _plain(parsed[subcommand].as_dict())


class _ParserBuilt(Exception):
    """Carries the CLI's parser out of its constructor, which would go on to instantiate and run."""


@functools.cache
def _parser(kind: str):
    """The parser of `lightning-nas search` (kind "search") or of the Lightning subcommands."""
    from lightning_nas.lightning_cli import NASCLI, NASTrainer, SearchCLI, import_search_plugins

    base = SearchCLI if kind == "search" else NASCLI

    class ParserOnly(base):
        def parse_arguments(self, parser, args) -> None:
            raise _ParserBuilt(parser)

    if kind == "search":
        import_search_plugins()
        kwargs = dict(trainer_class=NASTrainer, run=False, auto_configure_optimizers=False,
                      load_from_checkpoint_support=False)
    else:
        kwargs = dict(subclass_mode_model=True)
    try:
        ParserOnly(datamodule_class=None, args=[], parser_kwargs={"exit_on_error": False}, **kwargs)
    except _ParserBuilt as built:
        return built.args[0]
    raise AssertionError("LightningCLI no longer calls parse_arguments")


def _plain(obj: Any) -> Any:
    """Parsed values as JSON data; `__path__` (where jsonargparse read a nested file) is not part of it."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items() if k != "__path__"}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def finished(configs: Sequence[str], seed: int, budget: int, run_dir: str | Path, extra: list[str]) -> bool:
    """Whether `run_dir` holds this seed's search with this recipe, to at least `budget` queries."""
    run = Path(run_dir)
    return _searched_to(run, budget) and _same_recipe(run, recipe(configs, seed, seed_arguments(extra, seed)))


def _searched_to(run: Path, budget: int) -> bool:
    """Whether the run has spent `budget` queries (recorded, or charged without an objective), or
    stopped early because nothing more could be queried."""
    path = run / "results.json"
    if not path.is_file():
        return False
    results = json.loads(path.read_text())
    spent = len(results["queries"]) + results.get("skipped_without_objective", 0)
    return spent >= budget or bool(results.get("stopped_early"))


def _same_recipe(run: Path, recipe: str) -> bool:
    """A run directory may be continued or reused only for the recipe it was started with."""
    written = run / RECIPE_FILE
    if not written.is_file():  # empty, or made by a version without recipes (whose checkpoints cannot resume)
        return not any(run.iterdir())
    try:
        return without_nulls(json.loads(written.read_text())) == without_nulls(json.loads(recipe))
    except json.JSONDecodeError:  # not a recipe this version writes
        return False


def summarize(run_dirs: list[str], budgets: list[int], configs: Sequence[str], optimum: str | None) -> dict[str, Any]:
    """Per budget, mean and std over seeds of the objective and of each reported metric of the best
    architecture, and the fraction of seeds whose best is `optimum` (the table's best, when known)."""
    runs = [json.loads((Path(d) / "results.json").read_text()) for d in run_dirs]
    summary: dict[str, Any] = {"config": [str(c) for c in configs], "seeds": len(runs), "budgets": {}}
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


def table_optimum(config: dict[str, Any]) -> str | None:
    """The best-by-objective architecture of the whole table, when a resolved search config searches one."""
    data = (config.get("data") or {}).get("init_args") or {}
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
    parser.add_argument("--config", action="append", required=True,
                        help="a search config; repeat to compose several, e.g. a method and a protocol "
                             "(--config configs/methods/re.yaml --config configs/protocols/nb201-cifar10.yaml)")
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds to run (default: 20)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the first seed; the seeds are first-seed .. first-seed + seeds - 1 (default: 0)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 150],
                        help="query budgets to summarise; each seed searches to the largest (default: 50 100 150)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="seeds searched in parallel, one process each (default: the number of CPUs)")
    parser.add_argument("--out", default=None,
                        help="the folder of the seeds' runs and summary.json (default: checkpoints/bench/<config names>)")
    parser.add_argument("extra", nargs="*", metavar="-- SEARCH_ARGS",
                        help="further search arguments after --, e.g. -- --ckpt_path fits/seed_{seed}/x.ckpt; "
                             "{seed} is replaced by each seed")
    args = parser.parse_args(argv)
    missing = [config for config in args.config if not Path(config).is_file()]
    if missing:
        raise MissingFileError(f"config file {missing[0]} does not exist")
    for name, value in (("--seeds", args.seeds), ("--budgets", min(args.budgets)), ("--workers", args.workers)):
        if value < 1:
            raise ConfigError(f"{name} must be positive, got {value}")
    out = Path(args.out or Path("checkpoints/bench") / "+".join(Path(c).stem for c in args.config))
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    run_dirs = [str(out / f"seed_{s}") for s in seeds]
    start = time.perf_counter()
    from rich.progress import Progress

    with Progress() as progress, ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
        task = progress.add_task(f"bench {'+'.join(Path(c).name for c in args.config)}", total=len(run_dirs))
        futures = [pool.submit(run_one, args.config, s, max(args.budgets), d, args.extra) for s, d in zip(seeds, run_dirs)]
        for future in as_completed(futures):
            future.result()
            progress.advance(task)
    resolved = resolved_config(["search", *config_arguments(args.config), *seed_arguments(args.extra, args.first_seed)])
    summary = summarize(run_dirs, sorted(args.budgets), args.config, table_optimum(resolved))
    summary["bench_wall_time_s"] = round(time.perf_counter() - start, 2)
    atomic_write(out / "summary.json", dumps(summary, indent=1))  # strict: a mean of nothing (NaN) -> null
    for b, entry in summary["budgets"].items():
        figures = "  ".join(f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in entry.items() if isinstance(v, dict))
        print(f"budget {b}: {figures}  (n={entry['count']})")
    print(f"summary: {out / 'summary.json'}")
    return 0
