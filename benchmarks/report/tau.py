"""The predictor study: each predictor fitted on n labelled NAS-Bench-201 architectures drawn by the
seed ranks every other architecture of the table (Kendall tau). Each (predictor, labels, seed) result
is saved as it ends and reused while its recipe (training length and resolved fit configs) holds."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.report.common import CONFIGS, quiet
from benchmarks.report.fits import ensure_fitted, needed_checkpoints
from benchmarks.report.records import restore_record, save_record
from lightning_nas.executors import Executor, RunsFailed
from lightning_nas.io import atomic_write, dumps
from lightning_nas.bench import portable, resolved_config

TAU_TABLE, TAU_TARGET = "nb201_200ep.csv.gz", "cifar10_valid_valid_acc"
TAU_SIZES, TAU_SEEDS = [156, 1562], 5  # 1% and 10% of NB201


@dataclass
class PredictorSpec:
    """A predictor that learns from labels: the model and data of a fit config (None: Delta-NAS's
    difference predictor on labelled pairs, paper Table 1)."""

    config: Path | None
    epochs: dict[int, int]  # training epochs per labelled count, as measured by the method's bench script
    sized_by: str = "num_labelled"  # the data argument that sets the training-set size of a throughput run
    throughput_model: dict[str, Any] = field(default_factory=dict)


FITS = CONFIGS / "fits" / "nb201"
PREDICTORS = {
    "GIN": PredictorSpec(FITS / "gin.yaml", {156: 100, 1562: 100}),
    # epochs at 10%: measured, benchmarks/results/settings/dcl_enas.md (100 would cost 10x the steps of 1%)
    "DCL-ENAS": PredictorSpec(FITS / "dcl_enas_finetune.yaml", {156: 100, 1562: 60}),
    "CTNAS": PredictorSpec(FITS / "ctnas.yaml", {156: 200, 1562: 60}),  # bench_ctnas.py
    # tau of the ICNN trained with the G-VAE on the semi-supervised pseudo-labels; a throughput epoch
    # runs over the G-VAE's pool (its size is the pool's), after a 1-epoch semi-supervised stage
    "CR-LSO": PredictorSpec(FITS / "crlso.yaml", {156: 4, 1562: 4}, "pool_size", {"semi_epochs": 1}),
    # optimiser steps, not epochs (bench_delta_nas.py --table1-steps); throughput items: labelled pairs
    "Delta-NAS": PredictorSpec(None, {156: 1500, 1562: 1500}),
}


def tau_job(name: str, size: int, seed: int, epochs: int, recipe: str, path: str, table: str) -> None:
    """One (predictor, labels, seed) measurement in a worker; saved to `path` when it ends."""
    import torch

    torch.set_num_threads(1)
    quiet()
    from lightning_nas.predictors.evaluate import config_tau, difference_tau

    spec = PREDICTORS[name]
    start = time.perf_counter()
    if spec.config is None:
        result = difference_tau(table, TAU_TARGET, size, seed, steps=epochs)
    else:
        result = config_tau(spec.config, size, seed, epochs, {"benchmark": table, "target": TAU_TARGET})
    result.update(predictor=name, size=size, seed=seed, recipe=recipe, wall_s=round(time.perf_counter() - start, 2))
    atomic_write(Path(path), dumps(result, indent=1))  # strict: a NaN tau -> null


def tau_recipe(name: str, length: int, producers: dict[str, Path]) -> str:
    """What a tau fit was made from: its training length (epochs; Delta-NAS: steps) and the resolved
    (portable) fit config of the predictor and of every config that writes a checkpoint it loads
    (DCL-ENAS: stage 1)."""
    config = PREDICTORS[name].config
    configs, pending = [], [config] if config else []
    while pending:
        resolved = portable(resolved_config(["fit", "--config", str(pending.pop())]))
        configs.append(resolved)
        pending += [producers[c] for c in needed_checkpoints(resolved) if c in producers]
    return hashlib.sha256(json.dumps({"length": length, "configs": configs}, sort_keys=True).encode()).hexdigest()


def ensure_predictors_fitted(names: list[str], producers: dict[str, Path], log: list[str]) -> None:
    for name in names:
        if PREDICTORS[name].config:
            ensure_fitted("fit", [PREDICTORS[name].config], producers, log)  # DCL-ENAS: the stage-1 checkpoint


@dataclass(frozen=True)
class TauFit:
    """One (predictor, labels, seed) measurement as a task of an executor; its result goes to `path`."""

    name: str
    arguments: tuple[Any, ...]  # of tau_job

    def __call__(self) -> None:
        tau_job(*self.arguments)


def run_tau_study(names: list[str], sizes: list[int], seeds: int, quick: bool, runs: Path, executor: Executor,
                  producers: dict[str, Path], log: list[str], shared: Path,
                  record: Path | None = None) -> list[dict[str, Any]]:
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
                    jobs.append(TauFit(f"tau/{name}/n{size}_seed{seed}",
                                       (name, size, seed, epochs, recipe, str(path), str(shared / TAU_TABLE))))
    jobs.sort(key=lambda job: -job.arguments[1])  # the large training sets first: the pool ends evenly
    failures = executor.run(jobs, "tau fits")
    if failures:
        raise RunsFailed(failures, len(jobs))
    results += [json.loads(Path(job.arguments[5]).read_text()) for job in jobs]
    log.append(f"tau study: {len(jobs)} fits run, {len(results) - len(jobs)} reused from {runs / 'tau'}")
    if record:
        save_record(runs / "tau", record, lambda name: name.endswith(".json"))  # one file per fit
    return sorted(results, key=lambda r: (names.index(r["predictor"]), r["size"], r["seed"]))
