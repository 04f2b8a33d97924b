"""The performance part: cost measurements, each beside a baseline measured in the same process and
interleaved with it, so that the ratio holds on a busy machine (absolute seconds do not).

- `archive_load`: a native archive against reading the CSV tables it came from (load + first lookup;
  peak memory of the load's allocations by `tracemalloc`, which sees numpy's arrays too).
- `nb101_enumeration`: building the NAS-Bench-101 cell table from scratch into an empty cache folder
  against reading it back from that cache.
- `training_throughput`: training items per second of a predictor over its epochs after the first.
- `ednag_generation`: one EDNAG generation run (predictor fitness) against scoring as many
  architectures with the same predictor in one call.
- `search_costs`: every method's search on NB201, NB101 and DARTS (no table: `search_cost.yaml`),
  each in a process of its own beside regularized evolution's: loop seconds per query, the
  process's CPU seconds and peak resident memory.
- `query_cost`: seconds per query of the search loop at 100, 1,000 and 10,000 queries (random search
  on the NB201 table), against the old way of writing the whole state after every round.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
from lightning.pytorch.loggers import Logger
import torch
import yaml

from benchmarks.report.common import CONFIGS, from_root, quiet
from benchmarks.report.fits import ensure_fitted
from benchmarks.report.protocols import Method, methods as every_method, protocol
from benchmarks.report.tau import PREDICTORS, TAU_SIZES, TAU_TABLE, TAU_TARGET, ensure_predictors_fitted
from lightning_nas.bench import config_arguments
from lightning_nas.io import atomic_write


def interleaved_medians(functions: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median wall seconds of each function, the functions taking turns in every repeat."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_allocated_mb(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


# --- the search loop ------------------------------------------------------------------------------
class _Stopwatch(Logger):
    """A logger that only notes when each query was recorded."""

    name, version = "stopwatch", 0

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if "score" in metrics:
            self.times.append(time.perf_counter())

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


def query_cost(table: Path, sizes: Sequence[int] = (100, 1000, 10000), old_sizes: Sequence[int] = (100, 1000),
               objective: str = "cifar10_valid_valid_acc", report: str = "cifar10_test_acc") -> dict[str, Any]:
    """Seconds per query at each of `sizes` queries: the mean over the second half of the queries up
    to there (wide enough to hold the occasional full checkpoint), and the mean over all of them; random search (`table_only`, so that no round
    is lost on a repeat) through the search loop, as `lightning-nas search` runs it (a CSV logger in
    the run directory). Beside it, in the same process: the loop writing its whole state after
    every round (the old way) up to `old_sizes`."""
    from lightning.pytorch.loggers import CSVLogger

    from lightning_nas.benchmarks.archive import Benchmark
    from lightning_nas.benchmarks.oracle import TabularOracle
    from lightning_nas.search.baselines import RandomSearch
    from lightning_nas.search.loop import CHECKPOINT_SHARE, SearchLoop

    bench = Benchmark.load(table)

    def query_times(budget: int, share: float) -> list[float]:
        with tempfile.TemporaryDirectory() as run_dir:
            watch = _Stopwatch()
            oracle = TabularOracle(bench, objective, [report], budget)
            loop = SearchLoop(RandomSearch(), oracle, run_dir, progress=False, table_only=True,
                              loggers=[CSVLogger(run_dir, name="logs"), watch])
            loop.checkpoint_share = share
            start = time.perf_counter()
            loop.run()
            return [start, *watch.times]

    def per_query(times: list[float], sizes: Sequence[int]) -> dict[str, dict[str, float]]:
        out = {}
        for n in sizes:
            out[str(n)] = {"second_half_s": (times[n] - times[n // 2]) / (n - n // 2), "mean_s": (times[n] - times[0]) / n}
        return out

    return {"table": table.name, "strategy": "RandomSearch, table_only", "checkpoint_share": CHECKPOINT_SHARE,
            "journal": per_query(query_times(max(sizes), CHECKPOINT_SHARE), sizes),
            "every_round": per_query(query_times(max(old_sizes), math.inf), old_sizes)}


# --- archives ------------------------------------------------------------------------------------
def archive_load(tables: Sequence[str], archive: Path, repeats: int = 3) -> dict[str, Any]:
    """Load + first lookup of the tables converted to one native archive (written to `archive`),
    and of the CSV tables."""
    from lightning_nas.benchmarks.archive import Benchmark
    from lightning_nas.benchmarks.converters.formats import convert

    tables = [str(t) for t in tables]
    archive = convert(tables, archive)
    source = tables if len(tables) > 1 else tables[0]

    def load_and_look_up(path) -> None:
        bench = Benchmark.load(path)
        bench.query(str(bench.keys[-1]), next(iter(bench.metrics)))  # the first lookup builds the index

    seconds = interleaved_medians({"native": lambda: load_and_look_up(archive), "csv": lambda: load_and_look_up(source)}, repeats)
    bench = Benchmark.load(archive)
    return {
        "tables": [Path(t).name for t in tables], "rows": len(bench), "columns": len(bench.metrics),
        "archive_mb": round(archive.stat().st_size / 2**20, 2), "repeats": repeats,
        "native_s": seconds["native"], "csv_s": seconds["csv"], "csv_over_native": seconds["csv"] / seconds["native"],
        "native_peak_mb": peak_allocated_mb(lambda: load_and_look_up(archive)),
        "csv_peak_mb": peak_allocated_mb(lambda: load_and_look_up(source)),
    }


# --- NB101 enumeration ---------------------------------------------------------------------------
def nb101_enumeration(max_vertices: int | None = None) -> dict[str, Any]:
    """Cold: enumerate every unique cell of up to `max_vertices` vertices (default: all 7) and write
    the cache file into an empty temporary folder; warm: read that file back."""
    from lightning_nas.spaces.nb101 import cells as nb101_cells

    max_vertices = max_vertices or nb101_cells.NUM_VERTICES
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / nb101_cells.CACHE_FILE
        start = time.perf_counter()
        table = nb101_cells.build_cell_table(max_vertices)
        nb101_cells._write_cache(path, table)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        warm_table = nb101_cells._read_cache(path, rows=len(table))
        warm = time.perf_counter() - start
        size_mb = path.stat().st_size / 2**20
    return {"max_vertices": max_vertices, "cells": len(table), "cold_s": cold, "warm_s": warm,
            "cold_over_warm": cold / warm, "cache_mb": round(size_mb, 2),
            "warm_equals_cold": bool(warm_table is not None and (warm_table.hashes == table.hashes).all())}


# --- predictor training --------------------------------------------------------------------------
class ThroughputTimer(L.Callback):
    """Training items (graphs, or pairs for pair datasets) and seconds over every epoch but the first."""

    def __init__(self):
        self.items, self.seconds, self._start = 0, 0.0, 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch > 0:
            self.items += int(batch.num_graphs)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch > 0:
            self.seconds += time.perf_counter() - self._start


def training_throughput(make_model: Callable[[], L.LightningModule], datamodule: L.LightningDataModule,
                        epochs: int = 2, seed: int = 0) -> dict[str, Any]:
    """Items per second of `epochs` training epochs, the first one (warm-up) not counted."""
    from lightning_nas.training import quiet_trainer

    if epochs < 2:
        raise ValueError("training_throughput needs at least 2 epochs (the first one is warm-up)")
    datamodule.setup()
    L.seed_everything(seed, verbose=False)
    timer = ThroughputTimer()
    quiet_trainer(epochs, callbacks=[timer]).fit(make_model(), datamodule=datamodule)
    return {"items_per_epoch": timer.items // (epochs - 1), "seconds": timer.seconds,
            "items_per_s": timer.items / timer.seconds}


# --- EDNAG ---------------------------------------------------------------------------------------
def ednag_generation(model: torch.nn.Module, space, steps: int = 100, population_size: int = 30,
                     repeats: int = 3, score_threads: int | None = 1) -> dict[str, Any]:
    """One EDNAG generation run (T = `steps` denoising steps, N = `population_size`, the predictor
    as fitness) against the predictor scoring as many random architectures in one call (the floor
    any predictor-guided generator pays), interleaved, `repeats` times each."""
    from lightning_nas.search.ednag import EDNAG
    from lightning_nas.search.surrogates import PredictorSurrogate

    surrogate = PredictorSurrogate(model, space, finetune_epochs=0)
    scored: list[int] = []

    def generate() -> None:
        strategy = EDNAG(fitness="predictor", steps=steps, population_size=population_size, finetune=False,
                         score_threads=score_threads)
        strategy.setup(space, np.random.default_rng(len(scored)), surrogate)
        strategy.generate()
        scored.append(len(strategy.scored))

    generate()  # warm-up, and the number of architectures one run scores
    rng = np.random.default_rng(0)
    sample = [space.sample(rng) for _ in range(scored[0])]
    seconds = interleaved_medians({"generation": generate, "scoring": lambda: surrogate.score(sample)}, repeats)
    return {"steps": steps, "population_size": population_size, "repeats": repeats, "score_threads": score_threads,
            "architectures_scored": float(np.mean(scored)), "generation_s": seconds["generation"],
            "scoring_s": seconds["scoring"], "generation_over_scoring": seconds["generation"] / seconds["scoring"]}


# --- search cost ---------------------------------------------------------------------------------
#: what a method's search adds on DARTS, where no table exists (a proxy oracle, models for the space)
SEARCH_COST_DARTS = Path(__file__).with_name("search_cost.yaml")
#: the spaces whose search cost is measured: a protocol of the report, or DARTS without a table
SEARCH_COST_SPACES = {"NB201": "nb201-cifar10", "NB101": "nb101", "DARTS": None}
BASELINE = "RE"


#: runs the CLI (argv[2:]) and at exit writes the process's peak resident memory (VmHWM, kB) to argv[1].
#: Linux counts the RSS of the process that forked a child in the child's getrusage maxrss, so a child
#: of the report (gigabytes after the NB101 enumeration) would show the report's peak; VmHWM belongs to
#: the child's own address space, which exec made new.
PEAK_WRAPPER = """
import atexit, sys
def peak():
    with open('/proc/self/status') as status:
        kb = next(line.split()[1] for line in status if line.startswith('VmHWM'))
    with open(sys.argv[1], 'w') as out:
        out.write(kb)
atexit.register(peak)
from lightning_nas.cli import main
sys.exit(main(sys.argv[2:]))
"""


def search_process(configs: list[Path], extra: list[str], budget: int, run_dir: Path) -> dict[str, Any]:
    """One search (seed 0) in a child process with one torch thread: loop seconds per query (the
    run's timing.json), the process's CPU seconds (start-up included) and its own peak resident memory
    (`PEAK_WRAPPER`; where /proc is missing, getrusage's maxrss)."""
    peak_file = run_dir.parent / f"{run_dir.name}.peak_kb"
    peak_file.parent.mkdir(parents=True, exist_ok=True)
    launcher = ["-c", PEAK_WRAPPER, str(peak_file)] if Path("/proc/self/status").is_file() else ["-m", "lightning_nas"]
    command = [sys.executable, *launcher, "search", *config_arguments(configs), "--seed_everything", "0",
               "--budget", str(budget), "--run_dir", str(run_dir), "--progress", "false", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"search of {', '.join(map(str, configs))} failed: {' / '.join(tail)}")
    queries = len(json.loads((run_dir / "results.json").read_text())["queries"])
    loop_s = json.loads((run_dir / "timing.json").read_text())["wall_time_s"]
    return {"queries": queries, "loop_s": loop_s, "s_per_query": loop_s / max(queries, 1),
            "process_cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_mb": int(peak_file.read_text()) / 1024 if peak_file.is_file() else usage.ru_maxrss / 1024}


def darts_config(method: Method, folder: Path) -> Path:
    """The file that puts `method`'s search on DARTS with the proxy oracle (`search_cost.yaml`)."""
    spec = yaml.safe_load(SEARCH_COST_DARTS.read_text())
    path = folder / f"darts-{method.config}.yaml"
    atomic_write(path, yaml.safe_dump({"data": None, "oracle": spec["oracle"], **spec["methods"].get(method.config, {})}))
    return path


def search_parts(method: Method, space: str | None, shared: Path, folder: Path) -> tuple[list[Path], list[str]]:
    """The config files and arguments of `method`'s search on a protocol (`space`), or on DARTS (None)."""
    if space is None:
        return [from_root(CONFIGS / "methods" / f"{method.config}.yaml"), darts_config(method, folder)], []
    table = protocol(space)
    return [from_root(c) for c in table.configs(method)], table.overrides(shared)


def search_costs(methods: list[Method], budget: int, shared: Path, producers: dict[str, Path], log: list[str],
                 spaces: dict[str, str | None] = SEARCH_COST_SPACES) -> dict[str, dict[str, Any]]:
    """Per space, every method's `search_process` between two of the baseline's (B, A, B, C, B, ...):
    its ratio is to their mean, so that a change of the machine's load shows in neither. Predictors a
    search loads are fitted first where missing (CR-LSO's: the fit on the space's default path)."""
    baseline = next(m for m in every_method() if m.name == BASELINE)
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, space in spaces.items():
            runs: list[dict[str, Any]] = []

            def run(method: Method) -> dict[str, Any]:
                configs, extra = search_parts(method, space, shared, folder)
                ensure_fitted("search", configs, producers, log)
                return search_process(configs, extra, budget, folder / label / f"{method.name}-{len(runs)}")

            runs.append(run(baseline))
            measured: dict[str, Any] = {}
            for method in [m for m in methods if m.name != BASELINE]:
                measured[method.name] = run(method)
                runs.append(run(baseline))
                beside = (runs[-2]["s_per_query"] + runs[-1]["s_per_query"]) / 2
                measured[method.name].update(re_s_per_query=beside, over_re=measured[method.name]["s_per_query"] / beside)
            typical = {key: float(np.median([r[key] for r in runs])) for key in runs[0]}
            out[label] = {"protocol": space or "no table, proxy oracle (params)", "budget": budget,
                          BASELINE: {**typical, "runs": len(runs)}, **measured}
    log.append(f"performance: search cost on {', '.join(spaces)} at {budget} queries, one process per search")
    return out


# --- the report's section ------------------------------------------------------------------------
def predictor_parts(name: str, size: int, shared: Path):
    """(datamodule, model factory) of a predictor with a training set of about `size` items."""
    from lightning_nas.predictors.evaluate import difference_parts, instantiate

    spec, table = PREDICTORS[name], str(shared / TAU_TABLE)
    if spec.config() is None:
        return difference_parts(table, TAU_TARGET, size, seed=0)
    config = yaml.safe_load(spec.config().read_text())
    data = instantiate(config["data"], benchmark=table, target=TAU_TARGET, seed=0, **{spec.sized_by: size})
    return data, lambda: instantiate(config["model"], **spec.throughput_model)


def throughput_at(names: list[str], size: int, min_items: int, shared: Path) -> dict[str, dict[str, Any]]:
    """Training throughput of each predictor at one training-set size, each measured between two runs
    of the GIN baseline (G, A, G, B, G, ...): its ratio is to the mean of the two, so that a change
    of the machine's load between predictors does not show as a difference between them."""

    def measure(name: str) -> dict[str, Any]:
        data, make_model = predictor_parts(name, size, shared)
        return training_throughput(make_model, data, epochs=1 + math.ceil(min_items / size))  # >= min_items timed

    gin_runs, out = [measure("GIN")], {}
    for name in [n for n in names if n != "GIN"]:
        out[name] = measure(name)
        gin_runs.append(measure("GIN"))
        out[name]["gin_items_per_s"] = (gin_runs[-2]["items_per_s"] + gin_runs[-1]["items_per_s"]) / 2
        out[name]["over_gin"] = out[name]["items_per_s"] / out[name]["gin_items_per_s"]
    gin = {"items_per_epoch": gin_runs[0]["items_per_epoch"], "runs": len(gin_runs),
           "items_per_s": float(np.median([g["items_per_s"] for g in gin_runs]))}
    return {"GIN": gin, **out}  # the baseline is always measured


def measure_performance(names: list[str], quick: bool, producers: dict[str, Path], log: list[str],
                        shared: Path, methods: list[Method] = ()) -> dict[str, Any]:
    """`names`: the predictors of the throughput measurement; `methods`: those whose search cost is
    measured (at 150 queries on NB201, NB101 and DARTS; under --quick at 20, on DARTS only)."""
    from lightning_nas.spaces.base import get_space
    from lightning_nas.training import quiet_trainer

    ensure_predictors_fitted(names, producers, log)
    torch.set_num_threads(1)
    quiet()
    out: dict[str, Any] = {"archives": {}, "throughput": {}}
    tables = {"NB201 (200 + 12 epochs)": ["nb201_200ep.csv.gz", "nb201_12ep.csv.gz"],
              "NB101 (30k hashed)": ["nb101_hashed_30k.csv.gz"]}
    with tempfile.TemporaryDirectory() as tmp:
        for label, files in ({"TNB101 micro": ["tnb101_micro.csv.gz"]} if quick else tables).items():
            archive = Path(tmp) / f"{len(out['archives'])}.npz"
            out["archives"][label] = archive_load([shared / f for f in files], archive, repeats=1 if quick else 3)
    out["nb101_enumeration"] = nb101_enumeration(max_vertices=5 if quick else None)
    for size in [50, 200] if quick else [100, 1000, 10000]:
        for name, measured in throughput_at(names, size, 200 if quick else 2000, shared).items():
            out["throughput"].setdefault(name, {})[str(size)] = measured
    # a fitted predictor: how many distinct architectures a generation scores depends on its fitness landscape
    data, make_gin = predictor_parts("GIN", TAU_SIZES[0], shared)
    gin = make_gin()
    quiet_trainer(2 if quick else PREDICTORS["GIN"].epochs[TAU_SIZES[0]]).fit(gin, datamodule=data)
    out["ednag"] = ednag_generation(gin, get_space("nb201"), steps=10 if quick else 100, repeats=1 if quick else 3)
    out["ednag"]["predictor_labels"] = TAU_SIZES[0]
    if methods:
        spaces = {"DARTS": None} if quick else SEARCH_COST_SPACES
        out["search_cost"] = search_costs(list(methods), 20 if quick else 150, shared, producers, log, spaces)
    out["query_cost"] = query_cost(shared / TAU_TABLE, *([(20, 60), (20,)] if quick else [(100, 1000, 10000), (100, 1000)]))
    log.append("performance: measured in this run, one torch thread, in the report's own process")
    return out
