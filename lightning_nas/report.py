"""`lightning-nas report`: every search method on every protocol, the predictors' Kendall tau, the costs.

Search runs go through `lightning-nas bench` (finished seeds are reused from their results.json, so
an interrupted report resumes); predictors a search needs are fitted first when their checkpoint is
missing and a seed is still to search, CR-LSO's once per seed. Each (predictor, labels, seed) result
of the Kendall-tau study is saved as it ends and reused. What a finished run needs to be reused is
also kept in `--records` (one .tar.gz per protocol and method, committed), so that a report begun on
one machine resumes on another. The performance section is measured afresh by every invocation.
Everything is written under `--out` (default `benchmarks/`): `REPORT.md`, `report_data.json` and
`plots/*.png`.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import math
import multiprocessing as mp
import shutil
import tarfile
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from lightning_nas.errors import ConfigError, MissingFileError, one_line
from lightning_nas.io import atomic_write

SHARED = "../shared/benchmarks"
NB201_12 = f"{SHARED}/nb201_12ep.csv.gz"
NB201_200 = f"{SHARED}/nb201_200ep.csv.gz"
NB101 = f"{SHARED}/nb101_hashed_30k.csv.gz"
TNB = f"{SHARED}/tnb101_micro.csv.gz"
TNB_TASKS = ["class_scene", "class_object", "jigsaw", "segmentsemantic", "normal", "autoencoder", "room_layout"]
PARTS = ("search", "tau", "performance")


@dataclass
class Protocol:
    name: str
    benchmark: list[str]
    target: str
    report: str
    configs: dict[str, str] = field(default_factory=dict)  # method -> search config
    # the table holds a sample of the space: a search may stall (only known or unanswerable proposals);
    # such a method is listed as not completed instead of ending the report
    partial: bool = False
    skipped: dict[str, str] = field(default_factory=dict)  # method -> why the report does not run it here

    def overrides(self) -> list[str]:
        """Search arguments that put any config on this protocol (configs written for another task too)."""
        return ["--data.init_args.benchmark", json.dumps(self.benchmark), "--data.init_args.target", self.target,
                "--report", json.dumps([self.report])]


def _nb201(dataset: str, suffix: str) -> Protocol:
    if dataset == "cifar10":
        p = Protocol("nb201-cifar10", [NB201_200], "cifar10_valid_valid_acc", "cifar10_test_acc")
    else:
        p = Protocol(f"nb201-{dataset}", [NB201_200, NB201_12], f"{dataset}_valid_acc@nb201_12ep", f"{dataset}_test_acc")
    methods = {"DCL-ENAS": "dcl_enas", "CTNAS": "ctnas", "CR-LSO": "crlso", "EDNAG": "ednag", "Delta-NAS": "delta_nas"}
    p.configs = {m: f"configs/nb201/{stem}{suffix}.yaml" for m, stem in methods.items()}
    return p


def _tnb101(task: str) -> Protocol:
    column = f"{task}_valid"
    p = Protocol(f"tnb101-{task}", [TNB], column, column)
    p.configs = {"DCL-ENAS": f"configs/tnb101_micro/dcl_enas_{task}.yaml", "CTNAS": "configs/tnb101_micro/ctnas.yaml",
                 "CR-LSO": "configs/tnb101_micro/crlso.yaml", "EDNAG": f"configs/tnb101_micro/ednag_{task}.yaml",
                 "Delta-NAS": f"configs/tnb101_micro/delta_nas_{task}.yaml"}
    return p


def _nb101() -> Protocol:
    # the shared NB101 table has no test column: the 108-epoch validation accuracy is searched and reported
    p = Protocol("nb101", [NB101], "valid_acc_108ep", "valid_acc_108ep", partial=True)
    p.configs = {m: f"configs/nb101/{stem}.yaml" for m, stem in
                 {"RE": "re", "DCL-ENAS": "dcl_enas", "CTNAS": "ctnas", "CR-LSO": "crlso", "EDNAG": "ednag",
                  "Delta-NAS": "delta_nas"}.items()}  # RE: table_only walks to a cell the table holds
    # measured on this 2-core machine, one seed: CR-LSO's NB101 fit also labels 300 architectures, more
    # than the smallest budget here (it would need 50)
    p.skipped = {
        "CTNAS": "with table_only, about 13 s per answered query (46 queries in 890 s, beside two other runs on "
                 "2 cores): about 30 min per seed at 150 queries",
        "CR-LSO": "its fit takes about 20 min per seed on the 30k-row pool, then about 18 s per answered query "
                  "(10 answered of 90 proposals in 179 s)",
    }
    return p


def protocols() -> list[Protocol]:
    return [_nb201("cifar10", ""), _nb201("cifar100", "_cifar100"), _nb201("imagenet16", "_imagenet16"),
            *map(_tnb101, TNB_TASKS), _nb101()]


BASELINES = {"RS": "configs/nb201/rs.yaml", "RE": "configs/nb201/re.yaml"}
#: methods whose fit learns from benchmark labels drawn by the seed: one fit per seed, or every seed
#: would start from the same labelled set (and the spread over seeds would miss that variance)
PER_SEED_FIT = {"CR-LSO"}
#: budgets run beyond --budgets (the issue: CR-LSO also at 300); RS and RE run as far, as a baseline
EXTRA_BUDGETS = {"CR-LSO": [300]}

#: test accuracy (%) that a method's paper publishes for a protocol, with where it says so
PAPER = {
    ("CR-LSO", "nb201-cifar10"): (94.35, "CR-LSO Table II, 32 runs"),
    ("CR-LSO", "nb201-cifar100"): (73.47, "CR-LSO Table II"),
    ("CR-LSO", "nb201-imagenet16"): (46.98, "CR-LSO Table II"),
    ("EDNAG", "nb201-cifar10"): (94.37, "EDNAG Table 1, test-accuracy fitness"),
    ("EDNAG", "nb201-cifar100"): (73.51, "EDNAG Table 1"),
    ("RS", "nb201-cifar10"): (93.70, "CR-LSO Table II"),
    ("RS", "nb201-cifar100"): (71.04, "CR-LSO Table II"),
    ("RS", "nb201-imagenet16"): (44.57, "CR-LSO Table II"),
}


# --- the predictor study -----------------------------------------------------------------------
TAU_BENCHMARK, TAU_TARGET = NB201_200, "cifar10_valid_valid_acc"
TAU_SIZES, TAU_SEEDS = [156, 1562], 5  # 1% and 10% of NB201


@dataclass
class PredictorSpec:
    """A predictor that learns from labels: the model and data of a fit config (None: Delta-NAS's
    difference predictor on labelled pairs, paper Table 1)."""

    config: str | None
    epochs: dict[int, int]  # training epochs per labelled count, as measured by the method's bench script
    sized_by: str = "num_labelled"  # the data argument that sets the training-set size of a throughput run
    throughput_model: dict[str, Any] = field(default_factory=dict)


PREDICTORS = {
    "GIN": PredictorSpec("configs/nb201/gin_fit.yaml", {156: 100, 1562: 100}),
    # at 10%, genotype inputs: 30 epochs -> tau 0.877 +- 0.003, 60 -> 0.881 +- 0.003 (5 seeds; 100 would cost
    # 10x the steps of 1%); canonical inputs: 30 -> 0.900 +- 0.001 (bench_dcl_enas.py, 3 seeds),
    # 60 -> 0.902 +- 0.002 (5 seeds); + messages both ways and K = 100: 60 -> 0.905 +- 0.003 (this report)
    "DCL-ENAS": PredictorSpec("configs/nb201/dcl_enas_finetune.yaml", {156: 100, 1562: 60}),
    "CTNAS": PredictorSpec("configs/nb201/ctnas_fit.yaml", {156: 200, 1562: 60}),  # bench_ctnas.py
    # tau of the ICNN trained with the G-VAE on the semi-supervised pseudo-labels; a throughput epoch
    # runs over the G-VAE's pool (its size is the pool's), after a 1-epoch semi-supervised stage
    "CR-LSO": PredictorSpec("configs/nb201/crlso_fit.yaml", {156: 4, 1562: 4}, "pool_size", {"semi_epochs": 1}),
    # optimiser steps, not epochs (bench_delta_nas.py --table1-steps); throughput items: labelled pairs
    "Delta-NAS": PredictorSpec(None, {156: 1500, 1562: 1500}),
}
#: Kendall tau a method's paper publishes for this study's setting
PAPER_TAU = {
    ("Delta-NAS", 156): (0.759, "Delta-NAS Table 1, DoA, NB201 1%"),
    ("Delta-NAS", 1562): (0.832, "Delta-NAS Table 1, DoA, NB201 10%"),
}


def tau_job(name: str, size: int, seed: int, epochs: int, recipe: str, path: str) -> dict[str, Any]:
    """One (predictor, labels, seed) measurement in a worker; saved to `path` when it ends."""
    import torch

    torch.set_num_threads(1)
    quiet()
    from lightning_nas.predictors.evaluate import config_tau, difference_tau

    spec = PREDICTORS[name]
    start = time.perf_counter()
    if spec.config is None:
        result = difference_tau(TAU_BENCHMARK, TAU_TARGET, size, seed, steps=epochs)
    else:
        result = config_tau(spec.config, size, seed, epochs, {"benchmark": TAU_BENCHMARK, "target": TAU_TARGET})
    result.update(predictor=name, size=size, seed=seed, recipe=recipe, wall_s=round(time.perf_counter() - start, 2))
    atomic_write(Path(path), json.dumps(result, indent=1))
    return result


def tau_recipe(name: str, length: int, producers: dict[str, Path]) -> str:
    """What a tau fit was made from: its training length (epochs; Delta-NAS: steps) and the text of the
    predictor's fit config and of every config that writes a checkpoint it loads (DCL-ENAS: stage 1)."""
    config = PREDICTORS[name].config
    texts, pending = [], [config] if config else []
    while pending:
        text = Path(pending.pop()).read_text()
        texts.append(text)
        pending += [str(producers[c]) for c in needed_checkpoints(yaml.safe_load(text)) if c in producers]
    return hashlib.sha256(json.dumps({"length": length, "configs": texts}).encode()).hexdigest()


def ensure_predictors_fitted(names: list[str], producers: dict[str, Path], log: list[str]) -> None:
    for name in names:
        if PREDICTORS[name].config:
            ensure_fitted(Path(PREDICTORS[name].config), producers, log)  # DCL-ENAS: the stage-1 checkpoint


def run_tau_study(names: list[str], sizes: list[int], seeds: int, quick: bool, runs: Path, workers: int,
                  producers: dict[str, Path], log: list[str], record: Path | None = None) -> list[dict[str, Any]]:
    if record:
        restore_record(record, runs / "tau")
    ensure_predictors_fitted(names, producers, log)
    jobs, results = [], []
    for name in names:
        spec = PREDICTORS[name]
        for size in sizes:
            for seed in range(seeds):
                path = runs / "tau" / name / f"n{size}_seed{seed}.json"
                epochs = (2 if spec.config else 20) if quick else spec.epochs[size]
                recipe = tau_recipe(name, epochs, producers)
                done = json.loads(path.read_text()) if path.is_file() else {}
                if done.get("recipe") == recipe:  # reused only if fitted from the same configs for as long
                    results.append(done)
                else:
                    jobs.append((name, size, seed, epochs, recipe, str(path)))
    jobs.sort(key=lambda job: -job[1])  # the large training sets first: the pool ends evenly
    if jobs and workers == 1:  # no pool to start
        results += [tau_job(*job) for job in jobs]
    elif jobs:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(tau_job, *job) for job in jobs]):
                results.append(future.result())
    log.append(f"tau study: {len(jobs)} fits run, {len(results) - len(jobs)} reused from {runs / 'tau'}")
    if record:
        save_record(runs / "tau", record, lambda name: name.endswith(".json"))  # one file per fit
    return sorted(results, key=lambda r: (names.index(r["predictor"]), r["size"], r["seed"]))


# --- performance -------------------------------------------------------------------------------
def predictor_parts(name: str, size: int):
    """(datamodule, model factory) of a predictor with a training set of about `size` items."""
    from lightning_nas.predictors.evaluate import difference_parts, instantiate

    spec = PREDICTORS[name]
    if spec.config is None:
        return difference_parts(TAU_BENCHMARK, TAU_TARGET, size, seed=0)
    config = yaml.safe_load(Path(spec.config).read_text())
    data = instantiate(config["data"], benchmark=TAU_BENCHMARK, target=TAU_TARGET, seed=0, **{spec.sized_by: size})
    return data, lambda: instantiate(config["model"], **spec.throughput_model)


def throughput_at(names: list[str], size: int, min_items: int) -> dict[str, dict[str, Any]]:
    """Training throughput of each predictor at one training-set size, each measured between two runs
    of the GIN baseline (G, A, G, B, G, ...): its ratio is to the mean of the two, so that a change
    of the machine's load between predictors does not show as a difference between them."""
    from lightning_nas.performance import training_throughput

    def measure(name: str) -> dict[str, Any]:
        data, make_model = predictor_parts(name, size)
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


def measure_performance(names: list[str], quick: bool, producers: dict[str, Path], log: list[str]) -> dict[str, Any]:
    import torch

    from lightning_nas import performance
    from lightning_nas.training import quiet_trainer
    from lightning_nas.spaces.base import get_space

    ensure_predictors_fitted(names, producers, log)
    torch.set_num_threads(1)
    quiet()
    out: dict[str, Any] = {"archives": {}, "throughput": {}}
    tables = {"NB201 (200 + 12 epochs)": [NB201_200, NB201_12], "NB101 (30k hashed)": [NB101]}
    with tempfile.TemporaryDirectory() as tmp:
        for label, paths in ({"TNB101 micro": [TNB]} if quick else tables).items():
            archive = Path(tmp) / f"{len(out['archives'])}.npz"
            out["archives"][label] = performance.archive_load(paths, archive, repeats=1 if quick else 3)
    out["nb101_enumeration"] = performance.nb101_enumeration(max_vertices=5 if quick else None)
    for size in [50, 200] if quick else [100, 1000, 10000]:
        for name, measured in throughput_at(names, size, min_items=200 if quick else 2000).items():
            out["throughput"].setdefault(name, {})[str(size)] = measured
    # a fitted predictor: how many distinct architectures a generation scores depends on its fitness landscape
    data, make_gin = predictor_parts("GIN", TAU_SIZES[0])
    gin = make_gin()
    quiet_trainer(2 if quick else PREDICTORS["GIN"].epochs[TAU_SIZES[0]]).fit(gin, datamodule=data)
    out["ednag"] = performance.ednag_generation(gin, get_space("nb201"), steps=10 if quick else 100,
                                                repeats=1 if quick else 3)
    out["ednag"]["predictor_labels"] = TAU_SIZES[0]
    log.append("performance: measured in this run, one torch thread, in the report's own process")
    return out


# --- fitting what a search needs -------------------------------------------------------------
def checkpoint_producers(config_dir: Path = Path("configs")) -> dict[str, Path]:
    """ckpt path -> the fit config whose ModelCheckpoint writes it (best and last)."""
    producers: dict[str, Path] = {}
    for path in sorted(config_dir.rglob("*.yaml")):
        config = yaml.safe_load(path.read_text()) or {}
        for args in checkpoint_callbacks(config):
            if "dirpath" in args:
                for name in (args.get("filename") or "best", "last"):
                    producers[str(Path(args["dirpath"]) / f"{name}.ckpt")] = path
    return producers


def checkpoint_callbacks(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The init_args of every callback a config's trainer has (what ModelCheckpoint settings live in)."""
    callbacks = (config.get("trainer") or {}).get("callbacks") or []
    return [cb.get("init_args", {}) for cb in (callbacks if isinstance(callbacks, list) else [callbacks]) if isinstance(cb, dict)]


def needed_checkpoints(config: dict[str, Any]) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and node.endswith(".ckpt"):
            found.append(node)

    walk(config)
    return found


def ensure_fitted(config_path: Path, producers: dict[str, Path], log: list[str]) -> None:
    """Fit every checkpoint `config_path` names that is missing, with its own fit config (full
    settings, also under --quick: these checkpoints are shared with every later search)."""
    from lightning_nas.cli import main

    for ckpt in needed_checkpoints(yaml.safe_load(config_path.read_text())):
        if Path(ckpt).is_file():
            log.append(f"reused {ckpt} (delete it to fit again)")
            continue
        if ckpt not in producers:
            raise MissingFileError(f"{config_path} needs {ckpt}, and no config in configs/ writes it")
        fit_config = producers[ckpt]
        ensure_fitted(fit_config, producers, log)
        start = time.perf_counter()
        if main(["fit", "--config", str(fit_config), "--trainer.enable_progress_bar", "false"]) != 0:
            raise RuntimeError(f"fit of {fit_config} failed")
        log.append(f"fit {fit_config} ({time.perf_counter() - start:.0f} s)")


def seed_fit_config(fit_config: Path, protocol: Protocol, seed: int, folder: Path, quick: bool) -> Path:
    """The fit config of one seed: the protocol's data, labels drawn by the seed, checkpoint in `folder`."""
    config = yaml.safe_load(fit_config.read_text())
    config["seed_everything"] = seed
    benchmark = protocol.benchmark[0] if len(protocol.benchmark) == 1 else protocol.benchmark
    config["data"]["init_args"].update(benchmark=benchmark, target=protocol.target, seed=seed)
    config["trainer"]["default_root_dir"] = str(folder)
    for args in checkpoint_callbacks(config):
        args["dirpath"] = str(folder)
    if quick:  # a smoke test: a short fit on few labels, so that a 30-query search leaves its warm start
        config["trainer"]["max_epochs"] = 1
        config["data"]["init_args"]["num_labelled"] = 10
    path = folder / "fit.yaml"
    atomic_write(path, f"# written by lightning-nas report from {fit_config}\n" + yaml.safe_dump(config, sort_keys=False))
    return path


def fit_job(fit_config: str) -> float:
    """Fit one seed's predictor in a worker; returns the seconds it took."""
    import sys

    import torch

    torch.set_num_threads(1)
    from lightning_nas.cli import main

    sys.argv = sys.argv[:1]  # LightningCLI must not read the parent's argv
    start = time.perf_counter()
    if main(["fit", "--config", fit_config, "--trainer.enable_progress_bar", "false"]) != 0:
        raise RuntimeError(f"fit of {fit_config} failed")
    seconds = time.perf_counter() - start
    atomic_write(Path(fit_config).parent / "fit_time.json", json.dumps({"fit_s": round(seconds, 2)}))
    return seconds


def fit_per_seed(config: Path, protocol: Protocol, method: str, run_dir: Path, seeds: list[int], workers: int,
                 producers: dict[str, Path], quick: bool, log: list[str]) -> None:
    """Fit the predictor of each of `seeds` that has none."""
    ckpt = yaml.safe_load(config.read_text())["ckpt_path"]
    if ckpt not in producers:
        raise MissingFileError(f"{config} needs {ckpt}, and no config in configs/ writes it")
    name, jobs = Path(ckpt).name, []
    for seed in seeds:
        folder = run_dir / "fits" / f"seed_{seed}"
        if not (folder / name).is_file():
            jobs.append(str(seed_fit_config(producers[ckpt], protocol, seed, folder, quick)))
    if jobs:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            seconds = list(pool.map(fit_job, jobs))
        log.append(f"fit {method} on {protocol.name}, {len(jobs)} seeds: {np.mean(seconds):.0f} s per fit")


def seed_fit_arguments(config: Path, run_dir: Path) -> list[str]:
    """The search arguments that load each seed's own fit (bench replaces {seed})."""
    name = Path(yaml.safe_load(config.read_text())["ckpt_path"]).name
    return ["--ckpt_path", str(run_dir / "fits" / "seed_{seed}" / name), "--data.init_args.seed", "{seed}"]


# --- running ---------------------------------------------------------------------------------
def run_bench(config: str, out: Path, seeds: int, budgets: list[int], workers: int, extra: list[str]) -> dict[str, Any]:
    from lightning_nas.bench import bench_main

    args = ["--config", config, "--seeds", str(seeds), "--budgets", *map(str, budgets), "--workers", str(workers),
            "--out", str(out), "--", *extra]
    if bench_main(args) != 0:
        raise RuntimeError(f"bench of {config} in {out} failed")
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


def run_searches(chosen: list[Protocol], methods: list[str] | None, seeds: int, budgets: list[int], workers: int,
                 runs: Path, records: Path, producers: dict[str, Path], quick: bool, log: list[str],
                 not_completed: list[dict[str, str]]) -> list[dict[str, Any]]:
    results = []
    more = {m: [30] for m in EXTRA_BUDGETS} if quick else EXTRA_BUDGETS
    for protocol in chosen:
        todo = {**BASELINES, **protocol.configs}
        todo = {m: c for m, c in todo.items() if (not methods or m in methods) and m not in protocol.skipped}
        not_completed += [{"protocol": protocol.name, "method": m, "reason": f"not run: {why}"}
                          for m, why in protocol.skipped.items() if not methods or m in methods]
        baseline_budgets = {b for m in todo for b in more.get(m, [])}  # RS and RE as far as any method
        for method, config in todo.items():
            if not Path(config).is_file():
                log.append(f"skipped {method} on {protocol.name}: {config} does not exist")
                continue
            own = sorted({*budgets, *(baseline_budgets if method in BASELINES else more.get(method, []))})
            try:
                results.append(run_method(protocol, method, config, runs / protocol.name / method, seeds, own,
                                          workers, producers, quick, log, records / protocol.name / f"{method}.tar.gz"))
            except RuntimeError as e:
                if not protocol.partial:
                    raise
                not_completed.append({"protocol": protocol.name, "method": method, "reason": one_line(str(e))})
    return results


def run_method(protocol: Protocol, method: str, config: str, run_dir: Path, seeds: int, budgets: list[int],
               workers: int, producers: dict[str, Path], quick: bool, log: list[str],
               record: Path | None = None) -> dict[str, Any]:
    """Every seed of one method on one protocol (fitting what it needs first), summarised; `record`
    keeps the finished runs (restored first where `run_dir` lacks them)."""
    from lightning_nas.bench import finished

    if record:
        restore_record(record, run_dir)
    extra = protocol.overrides() + (seed_fit_arguments(Path(config), run_dir) if method in PER_SEED_FIT else [])
    # only the seeds still to search need what a search loads (runs may be reused from another machine)
    pending = [s for s in range(seeds) if not finished(config, s, max(budgets), run_dir / f"seed_{s}", extra)]
    if pending and method in PER_SEED_FIT:
        fit_per_seed(Path(config), protocol, method, run_dir, pending, workers, producers, quick, log)
    elif pending:
        ensure_fitted(Path(config), producers, log)
    entry = {"protocol": protocol.name, "method": method, "config": config, "budgets": budgets,
             "summary": run_bench(config, run_dir, seeds, budgets, workers, extra), "searched_here": len(pending)}
    if record:
        save_record(run_dir, record)
    if method in PER_SEED_FIT:
        fits = [run_dir / "fits" / f"seed_{s}" / "fit_time.json" for s in range(seeds)]
        entry["fit_s"] = float(np.mean([json.loads(f.read_text())["fit_s"] for f in fits if f.is_file()] or [np.nan]))
    return entry


#: what a later invocation needs of a run to reuse it: results, recipe and timing of each seed, fit times
RECORD_FILES = ("results.json", "bench_recipe.json", "timing.json", "fit_time.json")


def save_record(run_dir: Path, archive: Path, names: Callable[[str], bool] = RECORD_FILES.__contains__) -> None:
    """Keep the files of `run_dir` whose name `names` accepts (by default: what a search run needs to be
    reused) in one gzipped tar, byte-identical for identical files (so that git sees no change):
    committed, it lets a report resume on another machine."""
    files = sorted(p for p in run_dir.rglob("*") if names(p.name) and p.is_file())

    def write(f) -> None:
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as zipped, tarfile.open(fileobj=zipped, mode="w") as tar:
            for path in files:
                data = path.read_bytes()
                info = tarfile.TarInfo(path.relative_to(run_dir).as_posix())
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))

    atomic_write(archive, write)


def restore_record(archive: Path, run_dir: Path) -> None:
    """Put back what `archive` keeps and `run_dir` lacks: a seed's run only where its folder is absent
    (a run here is never mixed with another's files), other files where missing."""
    if not archive.is_file():
        return
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        absent = {m.name.split("/")[0] for m in members if not (run_dir / m.name.split("/")[0]).exists()}
        for member in members:
            top, target = member.name.split("/")[0], run_dir / member.name
            if not member.isfile() or Path(member.name).is_absolute() or ".." in Path(member.name).parts:
                raise ConfigError(f"{archive}: unexpected entry {member.name!r}; delete the file to run afresh")
            if (top in absent if top.startswith("seed_") else not target.exists()):
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())


def quiet() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def report_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lightning-nas report", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 2 seeds, budgets 10 and 20 (30 for CR-LSO), 1-epoch per-seed fits on 10 labels; tau with "
                             "20 and 60 labels, at most 2 seeds, 2 epochs; small performance measurements")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 150])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--protocols", nargs="*", help="names such as nb201-cifar10 (default: all)")
    parser.add_argument("--methods", nargs="*", help="search methods such as RS RE EDNAG (default: all)")
    parser.add_argument("--predictors", nargs="*", choices=list(PREDICTORS),
                        help="predictors of the tau study and the throughput measurement (default: all)")
    parser.add_argument("--tau-seeds", type=int, default=TAU_SEEDS)
    parser.add_argument("--out", default="benchmarks", help="where REPORT.md, report_data.json and plots/ go")
    # the records' recipes name the per-seed fits under it: runs elsewhere do not reuse them
    parser.add_argument("--runs", default="benchmarks/runs", help="where the individual runs go (reused)")
    parser.add_argument("--records", default="benchmarks/records",
                        help="where each method's finished runs are kept, one .tar.gz per protocol (committed: "
                             "a report resumes from them on another machine)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.tau_seeds < 1 or min(args.budgets) < 1:
        raise ConfigError("--seeds, --tau-seeds and --budgets must be positive")
    seeds, budgets = (2, [10, 20]) if args.quick else (args.seeds, sorted(args.budgets))
    known = {p.name: p for p in protocols()}
    unknown = [name for name in args.protocols or [] if name not in known]
    if unknown:
        raise ConfigError(f"unknown protocol {', '.join(unknown)}; known: {', '.join(known)}")
    methods = list(dict.fromkeys([*BASELINES, *(m for p in known.values() for m in p.configs)]))
    unknown = [name for name in args.methods or [] if name not in methods]
    if unknown:
        raise ConfigError(f"unknown method {', '.join(unknown)}; known: {', '.join(methods)}")
    chosen = [p for name, p in known.items() if not args.protocols or name in args.protocols]
    names = args.predictors or list(PREDICTORS)
    runs = Path(args.runs) / ("quick" if args.quick else "full")
    records = Path(args.records) / ("quick" if args.quick else "full")
    start = time.perf_counter()
    producers, log = checkpoint_producers(), []
    data: dict[str, Any] = {"seeds": seeds, "budgets": budgets, "results": [], "not_completed": [], "tau": [],
                            "performance": {}}
    part_start = time.perf_counter()
    if "search" in args.parts:
        data["results"] = run_searches(chosen, args.methods, seeds, budgets, args.workers, runs, records, producers,
                                       args.quick, log, data["not_completed"])
        log.append(f"search part: {time.perf_counter() - part_start:.0f} s")
    if "tau" in args.parts:
        part_start = time.perf_counter()
        sizes = [20, 60] if args.quick else TAU_SIZES
        tau_seeds = min(2, args.tau_seeds) if args.quick else args.tau_seeds
        data["tau"] = run_tau_study(names, sizes, tau_seeds, args.quick, runs, args.workers, producers, log,
                                    records / "tau.tar.gz")
        log.append(f"tau part: {time.perf_counter() - part_start:.0f} s")
    if "performance" in args.parts:
        part_start = time.perf_counter()
        data["performance"] = measure_performance(names, args.quick, producers, log)
        log.append(f"performance part: {time.perf_counter() - part_start:.0f} s")
    data.update(log=log, wall_time_s=round(time.perf_counter() - start, 1), command=" ".join(["lightning-nas report", *argv]))
    write_report(Path(args.out), data)
    print(f"report: {Path(args.out) / 'REPORT.md'} ({data['wall_time_s']:.0f} s)")
    return 0


# --- writing ---------------------------------------------------------------------------------
def write_report(out: Path, data: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    atomic_write(out / "report_data.json", json.dumps(data, indent=1))
    lines = ["# lightning-nas benchmark report", "",
             f"Regenerated by `{data['command']}` in {data['wall_time_s']:.0f} s on this machine (runs and tau "
             "fits finished by an earlier, interrupted invocation are reused, not repeated; `wall s/run` is each "
             "run's own search time, the performance section is measured by this invocation).", ""]
    if data["results"]:
        lines += [provenance(data["results"]), ""]
        lines += search_sections(out, data)
    if data["tau"]:
        lines += tau_section(out, data["tau"])
    if data["performance"]:
        lines += performance_section(data["performance"], data["results"])
    if data["log"]:
        lines += ["## Log", "", *[f"- {entry}" for entry in dict.fromkeys(data["log"])], ""]
    atomic_write(out / "REPORT.md", "\n".join(lines))


def provenance(results: list[dict[str, Any]]) -> str:
    """How many search runs this invocation made, and the process time of all of them."""
    runs = sum(r["summary"]["seeds"] for r in results)
    here = sum(r.get("searched_here", 0) for r in results)
    seconds = sum(r["summary"]["seeds"] * (r["summary"]["wall_time_s"]["mean"] + np.nan_to_num(r.get("fit_s", 0.0)))
                  for r in results)
    return (f"Search runs: {runs}, of which {here} searched by this invocation and {runs - here} reused; their own "
            f"search and fit times sum to {seconds / 3600:.1f} process-hours (one torch thread each).")


def search_sections(out: Path, data: dict[str, Any]) -> list[str]:
    common = [str(b) for b in data["budgets"]]
    lines = ["## Search", "",
             f"{data['seeds']} seeds per cell. Each cell: mean ± std over seeds of the reported test metric of the "
             "best-by-validation architecture after that many oracle queries (labels a predictor was fitted on are "
             f"charged as the search's first queries); `found` = fraction of seeds whose best-by-validation "
             f"architecture after {common[-1]} queries is the table's best-by-validation architecture; `wall s/run` = "
             "search time of one run to the method's largest budget (RS and RE run as far as CR-LSO), `+ fit` = the "
             "seed's own fit. CR-LSO fits its G-VAE + ICNN once per seed, on the seed's labelled set. DCL-ENAS (stage 1) and Delta-NAS "
             "(Zen-score differences) fit once per space without benchmark labels; their seeds vary the search.", ""]
    by_protocol: dict[str, list[dict]] = {}
    for r in data["results"]:
        by_protocol.setdefault(r["protocol"], []).append(r)
    for protocol, rows in by_protocol.items():
        budgets = sorted({str(b) for r in rows for b in r["budgets"]}, key=int)
        lines += [f"### {protocol}", "", f"![{protocol}](plots/{protocol}.png)", "",
                  "| method | " + " | ".join(f"{b} queries" for b in budgets) + f" | found@{common[-1]} | wall s/run | paper | gap |",
                  "|---|" + "---|" * (len(budgets) + 4)]
        for r in rows:
            entries = r["summary"]["budgets"]
            metric = reported_metric(entries[common[-1]])
            cells = [f"{entries[b][metric]['mean']:.4g} ± {entries[b][metric]['std']:.2g}" if b in entries else "—"
                     for b in budgets]
            paper = PAPER.get((r["method"], protocol))
            anchor = str(max(r["budgets"])) if r["method"] in EXTRA_BUDGETS else ("100" if "100" in entries else common[-1])
            gap = f"{entries[anchor][metric]['mean'] - paper[0]:+.2f} (at {anchor})" if paper else ""
            lines.append(f"| {r['method']} | " + " | ".join(cells)
                         + f" | {entries[common[-1]].get('found_optimum_fraction', 0):.2f}"
                         + f" | {r['summary']['wall_time_s']['mean']:.2f}" + (f" + fit {r['fit_s']:.0f}" if "fit_s" in r else "")
                         + f" | {f'{paper[0]} ({paper[1]})' if paper else ''} | {gap} |")
        lines.append("")
        failed = [f"{x['method']} ({x['reason']})" for x in data["not_completed"] if x["protocol"] == protocol]
        lines += ["Not completed: " + "; ".join(failed), ""] if failed else []
        plot_curves(out / "plots" / f"{protocol}.png", protocol, rows)
    return lines


def reported_metric(entry: dict[str, Any]) -> str:
    """The reported (test) metric of a bench summary entry; the objective when none was reported."""
    return next((k for k, v in entry.items() if isinstance(v, dict) and k != "score"), "score")


def tau_groups(tau: list[dict[str, Any]]) -> dict[str, dict[int, list[dict[str, Any]]]]:
    groups: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for r in tau:
        groups.setdefault(r["predictor"], {}).setdefault(r["size"], []).append(r)
    return groups


def tau_section(out: Path, tau: list[dict[str, Any]]) -> list[str]:
    groups = tau_groups(tau)
    sizes = sorted({r["size"] for r in tau})
    lines = ["## Predictors: Kendall tau", "",
             f"NAS-Bench-201, target `{TAU_TARGET}`: each predictor is fitted on n architectures drawn by the seed "
             "and ranks every other architecture of the table; mean ± std of Kendall tau (torchmetrics) over seeds. "
             "GIN: the baseline regression (configs/nb201/gin_fit.yaml); DCL-ENAS: stage-1 encoder (GIN messages "
             "along and against the cell's edges, K = 100 prototypes) + pairwise-ranking fine-tuning on canonical "
             "inputs (each cell featurised by its equivalence class's representative; "
             "configs/nb201/dcl_enas_finetune.yaml); CTNAS: the comparator's score (mean P[a beats r] over 64 "
             "reference architectures); CR-LSO: the ICNN trained with the G-VAE on semi-supervised pseudo-labels; "
             "Delta-NAS: the difference predictor trained on labelled pairs, ranking by its 64 nearest labelled "
             "anchors (paper Table 1). "
             "EDNAG learns nothing of its own (it uses the GIN).", "",
             "![tau](plots/tau.png)", "",
             "| predictor | " + " | ".join(f"n = {n}" for n in sizes) + " | seeds | fit s (largest n) | paper |",
             "|---|" + "---|" * (len(sizes) + 3)]
    for name, by_size in groups.items():
        cells = []
        for n in sizes:
            taus = [r["tau"] for r in by_size.get(n, [])]
            cells.append(f"{np.mean(taus):.3f} ± {np.std(taus):.3f}" if taus else "—")
        papers = [f"{PAPER_TAU[(name, n)][0]} at n = {n} ({PAPER_TAU[(name, n)][1]})" for n in sizes if (name, n) in PAPER_TAU]
        largest = by_size[max(by_size)]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(largest)} | {np.mean([r['fit_s'] for r in largest]):.1f} | "
                     + "; ".join(papers) + " |")
    lines.append("")
    plot_tau(out / "plots" / "tau.png", groups)
    return lines


def performance_section(perf: dict[str, Any], results: list[dict[str, Any]]) -> list[str]:
    lines = ["## Performance", "",
             "Measured by this invocation, one torch thread; each figure beside a baseline taken in the same "
             "process, interleaved with it, so that the ratio holds on a busy machine (the seconds do not).", ""]
    if perf.get("archives"):
        lines += ["### Benchmark archives: load + first lookup", "",
                  "Native archive (`lightning-nas convert`) against reading the shared CSV tables (the baseline); "
                  "median seconds; peak memory = peak of the load's own allocations (tracemalloc, numpy included).", "",
                  "| tables | rows | columns | archive MB | native s | CSV s | CSV / native | native peak MB | CSV peak MB |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for label, a in perf["archives"].items():
            lines.append(f"| {label} | {a['rows']:,} | {a['columns']} | {a['archive_mb']} | {a['native_s']:.3f} | "
                         f"{a['csv_s']:.3f} | {a['csv_over_native']:.1f}x | {a['native_peak_mb']:.1f} | {a['csv_peak_mb']:.1f} |")
        lines.append("")
    if perf.get("nb101_enumeration"):
        e = perf["nb101_enumeration"]
        lines += ["### NAS-Bench-101 enumeration", "",
                  f"Every unique cell of up to {e['max_vertices']} vertices ({e['cells']:,} cells): built from scratch "
                  f"into an empty cache folder {e['cold_s']:.1f} s, read back from that cache (the baseline) "
                  f"{e['warm_s']:.3f} s: {e['cold_over_warm']:.0f}x; cache file {e['cache_mb']} MB; "
                  f"cached table identical to the built one: {e['warm_equals_cold']}.", ""]
    if perf.get("throughput"):
        sizes = sorted({n for by_size in perf["throughput"].values() for n in by_size}, key=int)
        lines += ["### Predictor training throughput", "",
                  "Training items per second over the epochs after the first (items: architectures; labelled pairs for "
                  "Delta-NAS; the G-VAE's pool for CR-LSO), against the training-set size n (at least "
                  f"{2000 if max(map(int, sizes)) > 200 else 200} items timed). Each predictor is measured between two "
                  "runs of the GIN baseline at the same n; in brackets its ratio to their mean (GIN's cell: the "
                  "median of its runs).", "",
                  "| predictor | " + " | ".join(f"n = {n}" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
        for name, by_size in perf["throughput"].items():
            cells = []
            for n in sizes:
                t = by_size.get(n)
                ratio = f" ({t['over_gin']:.2f}x GIN)" if t and "over_gin" in t else ""
                cells.append(f"{t['items_per_s']:,.0f}/s{ratio}" if t else "—")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if results:
        lines += search_time_table(results)
    if perf.get("ednag"):
        g = perf["ednag"]
        lines += ["### EDNAG generation", "",
                  f"One generation run on NB201 (T = {g['steps']} denoising steps, N = {g['population_size']}, as fitness "
                  f"the GIN baseline fitted on {g['predictor_labels']} labels; {g['architectures_scored']:.0f} distinct "
                  f"architectures scored): {g['generation_s']:.3f} s; the baseline, "
                  f"the same GIN scoring as many random architectures in one call: {g['scoring_s']:.3f} s "
                  f"({g['generation_over_scoring']:.1f}x); medians of {g['repeats']}.", ""]
    return lines


def search_time_table(results: list[dict[str, Any]]) -> list[str]:
    """Search wall time per run of every method, as a ratio to random search on the same protocol."""
    methods = list(dict.fromkeys(r["method"] for r in results))
    lines = ["### Search wall time per run", "",
             "Mean seconds per search run (to the method's largest budget; fits not included), and the ratio "
             "to random search (RS) on the same protocol, from the runs above.", "",
             "| protocol | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    by_protocol: dict[str, dict[str, float]] = {}
    for r in results:
        by_protocol.setdefault(r["protocol"], {})[r["method"]] = r["summary"]["wall_time_s"]["mean"]
    for protocol, walls in by_protocol.items():
        rs = walls.get("RS")
        cells = [f"{walls[m]:.2f} s" + (f" ({walls[m] / rs:,.0f}x)" if rs and m != "RS" else "") if m in walls else "—"
                 for m in methods]
        lines.append(f"| {protocol} | " + " | ".join(cells) + " |")
    return lines + [""]


def plot_curves(path: Path, protocol: str, rows: list[dict]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    low, high = np.inf, -np.inf
    for r in rows:
        mean, std = np.array(r["summary"]["curves"]["mean"]), np.array(r["summary"]["curves"]["std"])
        x = np.arange(1, len(mean) + 1)
        ax.plot(x, mean, label=r["method"])
        ax.fill_between(x, mean - std, mean + std, alpha=0.15)
        settled = slice(min(9, len(mean) - 1), None)  # the first few queries would squash the scale
        low, high = min(low, (mean - std)[settled].min()), max(high, (mean + std)[settled].max())
    if np.isfinite(low):
        margin = 0.05 * (high - low) or 0.1
        ax.set_ylim(low - margin, high + margin)
    ax.set_xlabel("oracle queries")
    ax.set_ylabel("test metric of best-by-validation")
    ax.set_title(protocol)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_tau(path: Path, groups: dict[str, dict[int, list[dict[str, Any]]]]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, by_size in groups.items():
        sizes = sorted(by_size)
        taus = [[r["tau"] for r in by_size[n]] for n in sizes]
        ax.errorbar(sizes, [np.mean(t) for t in taus], yerr=[np.std(t) for t in taus], marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.minorticks_off()
    sizes = sorted({n for by_size in groups.values() for n in by_size})
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xlabel("labelled architectures (training-set size)")
    ax.set_ylabel("Kendall tau on the rest of NB201")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
