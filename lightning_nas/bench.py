"""`lightning-nas bench`: one search config over many seeds, in local processes or SLURM job arrays,
then a summary.

The config may be composed of several files (`--config` repeated, as for `search`). Each seed runs once
at the largest budget; the figures for smaller budgets are read off its trajectory (best-by-objective
after the first b queries). A finished seed (a `results.json` at least as long as needed) is reused
while its recipe, the resolved search config, is unchanged: an interrupted bench resumes where it
stopped, and config files restructured without changing what they resolve to keep their runs. Where
the seeds run is `lightning_nas.executors`' business; only the unfinished ones are handed to it, and the
summary is written once all of them are in.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lightning_nas.errors import ConfigError, MissingFileError
from lightning_nas.executors import Executor, RunsFailed, add_executor_arguments, executor_from_arguments
from lightning_nas.io import atomic_write, dumps
from lightning_nas.lightning_cli import run_search
from lightning_nas.search.loop import STATE_FILE
from lightning_nas.search.statistics import best_after, mean_std, wall_time


#: beside each seed's results: what the run searched (its resolved config, see `recipe`)
RECIPE_FILE = "bench_recipe.json"
#: keys of a resolved search config that say where and how far a run goes, not what it searches
RUN_KEYS = ("run_dir", "budget", "progress")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit status 2 from the CLI, not usage + SystemExit
        raise ConfigError(f"{message}; see `lightning-nas bench --help`")


def run_one(configs: Sequence[str], seed: int, budget: int, run_dir: str, extra: list[str]) -> str:
    """Run one seed in this process (a worker of an executor) and return its run directory: reused when
    finished with the same recipe, resumed from its checkpoint when interrupted, else searched afresh."""
    per_seed = seed_arguments(extra, seed)
    made = recipe(configs, seed, per_seed)
    run = Path(run_dir)
    if run.is_dir() and not _same_recipe(run, made):
        shutil.rmtree(run)  # searched with another config or arguments
    if _searched_to(run, budget):
        return run_dir
    if (run / STATE_FILE).is_file():
        print(f"{run_dir}: resuming from its {STATE_FILE}", flush=True)
    atomic_write(run / RECIPE_FILE, made)
    import torch

    torch.set_num_threads(1)
    sys.argv = sys.argv[:1]  # the worker inherits the parent's argv; LightningCLI must not read it
    run_search([*config_arguments(configs), "--seed_everything", str(seed), "--budget", str(budget),
                "--run_dir", run_dir, "--progress", "false", *per_seed])
    return run_dir


@dataclass(frozen=True)
class SearchRun:
    """One seed's search as a task of an executor (picklable: a SLURM job runs it, and runs it again
    after a requeue, when it resumes)."""

    name: str
    configs: tuple[str, ...]
    seed: int
    budget: int
    run_dir: str
    extra: tuple[str, ...] = ()

    def __call__(self) -> None:
        run_one(self.configs, self.seed, self.budget, self.run_dir, list(self.extra))

    def finished(self) -> bool:
        return finished(self.configs, self.seed, self.budget, self.run_dir, list(self.extra))


def run_missing(runs: Sequence[SearchRun], executor: Executor, title: str) -> None:
    """Run those of `runs` that are not finished (with their recipe, to their budget) on `executor`;
    `RunsFailed` names the failures once all have ended."""
    pending = [run for run in runs if not run.finished()]
    if len(pending) < len(runs):
        print(f"{title}: {len(runs) - len(pending)} of {len(runs)} runs finished before, reused", flush=True)
    failures = executor.run(pending, title)
    if failures:
        raise RunsFailed(failures, len(pending))


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
    architecture (`values`: each run's, in the order of `run_dirs`, None where it found none), and the
    fraction of seeds whose best is `optimum` (the table's best, when known)."""
    runs = [json.loads((Path(d) / "results.json").read_text()) for d in run_dirs]
    summary: dict[str, Any] = {"config": [str(c) for c in configs], "seeds": len(runs), "budgets": {}}
    for b in budgets:
        each = [best_after(r, b) for r in runs]
        bests = [x for x in each if x is not None]
        report_names = sorted(bests[0]["report"]) if bests else []
        entry: dict[str, Any] = {"count": len(bests)}
        for name in ["score", *report_names]:
            values = [None if x is None else x["score"] if name == "score" else x["report"][name] for x in each]
            mean, std = mean_std([v for v in values if v is not None])
            entry[name] = {"mean": mean, "std": std, "values": values}
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


def write_summary(configs: Sequence[str], extra: list[str], first_seed: int, run_dirs: list[str],
                  budgets: list[int], out: Path, start: float | None = None) -> dict[str, Any]:
    """Summarise finished runs into `out`/summary.json (`bench_wall_time_s`: since `start`) and print it."""
    resolved = resolved_config(["search", *config_arguments(configs), *seed_arguments(extra, first_seed)])
    summary = summarize(run_dirs, sorted(budgets), configs, table_optimum(resolved))
    if start is not None:
        summary["bench_wall_time_s"] = round(time.perf_counter() - start, 2)
    atomic_write(out / "summary.json", dumps(summary, indent=1))  # strict: a mean of nothing (NaN) -> null
    for b, entry in summary["budgets"].items():
        figures = "  ".join(f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in entry.items() if isinstance(v, dict))
        print(f"budget {b}: {figures}  (n={entry['count']})")
    print(f"summary: {out / 'summary.json'}")
    return summary


def bench_main(argv: list[str]) -> int:
    parser = _Parser(prog="lightning-nas bench", description=__doc__.split("\n\n")[0].replace("\n", " "),
                     epilog="Finished seeds are reused: rerun the same command to resume an interrupted bench "
                            "(also one cut off by the cluster's queue: only what is missing is submitted).")
    parser.add_argument("--config", action="append", required=True,
                        help="a search config; repeat to compose several, e.g. a method and a protocol "
                             "(--config configs/methods/re.yaml --config configs/protocols/nb201-cifar10.yaml)")
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds to run (default: 20)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the first seed; the seeds are first-seed .. first-seed + seeds - 1 (default: 0)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 150],
                        help="query budgets to summarise; each seed searches to the largest (default: 50 100 150)")
    parser.add_argument("--out", default=None,
                        help="the folder of the seeds' runs, their logs (logs/) and summary.json "
                             "(default: checkpoints/bench/<config names>)")
    add_executor_arguments(parser, workers_default=os.cpu_count() or 1)
    parser.add_argument("extra", nargs="*", metavar="-- SEARCH_ARGS",
                        help="further search arguments after --, e.g. -- --ckpt_path fits/seed_{seed}/x.ckpt; "
                             "{seed} is replaced by each seed")
    args = parser.parse_args(argv)
    missing = [config for config in args.config if not Path(config).is_file()]
    if missing:
        raise MissingFileError(f"config file {missing[0]} does not exist")
    for name, value in (("--seeds", args.seeds), ("--budgets", min(args.budgets))):
        if value < 1:
            raise ConfigError(f"{name} must be positive, got {value}")
    out = Path(args.out or Path("checkpoints/bench") / "+".join(Path(c).stem for c in args.config))
    executor = executor_from_arguments(args, out / "logs")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    runs = [SearchRun(f"seed_{s}", tuple(args.config), s, max(args.budgets), str(out / f"seed_{s}"), tuple(args.extra))
            for s in seeds]
    start = time.perf_counter()
    try:
        run_missing(runs, executor, f"bench {'+'.join(Path(c).name for c in args.config)}")
    except RunsFailed as e:
        print(f"lightning-nas bench: {e}", file=sys.stderr)
        return 1
    write_summary(args.config, args.extra, args.first_seed, [run.run_dir for run in runs], args.budgets, out, start)
    return 0
