"""The predictor study: each predictor fitted on n labelled architectures drawn by the seed ranks every
other architecture of the table (Kendall tau), on NAS-Bench-201, NAS-Bench-101 (the 30k table),
TransNAS-Bench-101 micro (each of its seven tasks; the report shows their mean) and the DARTS cells of
nb301_500 (NAS-Bench-301). Each (study, predictor, labels, seed) result is saved as it ends and reused
while its recipe (training length and resolved fit configs) holds."""
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
from lightning_nas.predictors.evaluate import difference_settings

TAU_SEEDS = 5


@dataclass(frozen=True)
class TauStudy:
    """The study on one table and target (`space`: its name, a key of `STUDIES`): the labelled counts,
    the folder of its fit configs and where its results go under the runs folder ("": the NB201 study's,
    the first one's layout). Studies of one `group` (TNB101's tasks) are reported as their mean."""

    space: str
    table: str
    target: str
    sizes: tuple[int, ...]
    fits: Path
    folder: str
    title: str
    group: str = ""

    @property
    def report_group(self) -> str:
        return self.group or self.space


#: TransNAS-Bench-101 micro's seven tasks (the columns of tnb101_micro.csv.gz, higher is better)
TNB101_TASKS = ("class_scene", "class_object", "room_layout", "jigsaw", "segmentsemantic", "normal", "autoencoder")


STUDIES = {
    # 1% and 10% of NB201
    "nb201": TauStudy("nb201", "nb201_200ep.csv.gz", "cifar10_valid_valid_acc", (156, 1562), CONFIGS / "fits" / "nb201",
                      "", "NAS-Bench-201"),
    # PINAT's NB101 split: 424 labels (0.1 % of the space) rank the rest, here every other cell of the 30k table
    "nb101": TauStudy("nb101", "nb101_hashed_30k.csv.gz", "valid_acc_108ep", (424,), CONFIGS / "fits" / "nb101",
                      "nb101", "NAS-Bench-101 (nb101_hashed_30k)"),
    # 1% and 10% of the 4,096 cells, each task on its own; reported as the mean over the tasks
    **{f"tnb101-{task}": TauStudy(f"tnb101-{task}", "tnb101_micro.csv.gz", f"{task}_valid", (41, 410),
                                  CONFIGS / "fits" / "tnb101", f"tnb101/{task}", "TransNAS-Bench-101 micro (mean over "
                                  "its seven tasks)", "tnb101") for task in TNB101_TASKS},
    # 100 of the 500 cells (the TA-GATES and FlowerFormer anchors lie at 58-589 labels)
    "darts": TauStudy("darts", "nb301_500.csv.gz", "cifar10_valid_acc", (100,), CONFIGS / "fits" / "darts",
                      "darts", "DARTS (NAS-Bench-301, nb301_500)"),
}
#: what `--tau-spaces` chooses: a study, or every study of a group
TAU_SPACES = {group: [name for name, study in STUDIES.items() if study.report_group == group]
              for group in dict.fromkeys(study.report_group for study in STUDIES.values())}
NB201 = STUDIES["nb201"]
TAU_TABLE, TAU_TARGET, TAU_SIZES = NB201.table, NB201.target, list(NB201.sizes)


@dataclass
class PredictorSpec:
    """A predictor that learns from labels: the model and data of a fit config, by name in each study's
    fits folder (None: Delta-NAS's difference predictor on labelled pairs, paper Table 1)."""

    config_name: str | None
    epochs: dict[int, int]  # training epochs per labelled count, as measured by the method's bench script
    sized_by: str = "num_labelled"  # the data argument that sets the training-set size of a throughput run
    throughput_model: dict[str, Any] = field(default_factory=dict)

    def config(self, study: TauStudy = NB201) -> Path | None:
        return study.fits / self.config_name if self.config_name else None


def lengths(small: int, large: int) -> dict[int, int]:
    """Training length by labelled count: NB201's 1 % length at every study's small count (TNB101 1 %,
    DARTS 100, NB101 424, NB201 156), its 10 % length at the 10 % counts (TNB101 410, NB201 1,562): the
    same recipe on every table."""
    return {41: small, 100: small, 156: small, 424: small, 410: large, 1562: large}


PREDICTORS = {
    "GIN": PredictorSpec("gin.yaml", lengths(100, 100)),
    # epochs at 10%: measured, benchmarks/results/settings/dcl_enas.md (100 would cost 10x the steps of 1%)
    "DCL-ENAS": PredictorSpec("dcl_enas_finetune.yaml", lengths(100, 60)),
    "CTNAS": PredictorSpec("ctnas.yaml", lengths(200, 60)),  # bench_ctnas.py
    # tau of the ICNN trained with the G-VAE on the semi-supervised pseudo-labels; a throughput epoch
    # runs over the G-VAE's pool (its size is the pool's), after a 1-epoch semi-supervised stage
    "CR-LSO": PredictorSpec("crlso.yaml", lengths(4, 4), "pool_size", {"semi_epochs": 1}),
    # optimiser steps, not epochs (bench_delta_nas.py --table1-steps); throughput items: labelled pairs
    "Delta-NAS": PredictorSpec(None, lengths(1500, 1500)),
}


def tau_job(name: str, size: int, seed: int, epochs: int, recipe: str, path: str, table: str,
            space: str = "nb201") -> None:
    """One (predictor, labels, seed) measurement of the study of `space` in a worker; saved to `path`."""
    import torch

    torch.set_num_threads(1)
    quiet()
    from lightning_nas.predictors.evaluate import config_tau, difference_tau

    study, config = STUDIES[space], PREDICTORS[name].config(STUDIES[space])
    start = time.perf_counter()
    if config is None:
        result = difference_tau(table, study.target, size, seed, steps=epochs)
    else:
        result = config_tau(config, size, seed, epochs, {"benchmark": table, "target": study.target})
    result.update(predictor=name, size=size, seed=seed, recipe=recipe, wall_s=round(time.perf_counter() - start, 2))
    if space != "nb201":  # the NB201 study's files keep their first layout (and recipes)
        result["space"] = space
    atomic_write(Path(path), dumps(result, indent=1))  # strict: a NaN tau -> null


def tau_recipe(name: str, length: int, producers: dict[str, Path], study: TauStudy = NB201) -> str:
    """What a tau fit was made from: its training length (epochs; Delta-NAS: steps) and the resolved
    (portable) fit config of the predictor and of every config that writes a checkpoint it loads
    (DCL-ENAS: stage 1); Delta-NAS: `difference_tau`'s default settings."""
    config = PREDICTORS[name].config(study)
    configs, pending = [], [config] if config else []
    while pending:
        resolved = portable(resolved_config(["fit", "--config", str(pending.pop())]))
        configs.append(resolved)
        pending += [producers[c] for c in needed_checkpoints(resolved) if c in producers]
    if study.space != "nb201":  # Delta-NAS has no config: its table tells the studies apart
        configs.append({"table": study.table, "target": study.target})
    # nor its settings: those are difference_tau's defaults
    settings = {"difference": difference_settings()} if config is None else {}
    return hashlib.sha256(json.dumps({"length": length, "configs": configs, **settings}, sort_keys=True).encode()).hexdigest()


def ensure_predictors_fitted(names: list[str], producers: dict[str, Path], log: list[str],
                             study: TauStudy = NB201) -> None:
    for name in names:
        if config := PREDICTORS[name].config(study):
            ensure_fitted("fit", [config], producers, log)  # DCL-ENAS: the stage-1 checkpoint


@dataclass(frozen=True)
class TauFit:
    """One (predictor, labels, seed) measurement as a task of an executor; its result goes to `path`."""

    name: str
    arguments: tuple[Any, ...]  # of tau_job

    def __call__(self) -> None:
        tau_job(*self.arguments)


def run_tau_study(names: list[str], plan: dict[str, list[int]], seeds: int, quick: bool, runs: Path,
                  executor: Executor, producers: dict[str, Path], log: list[str], shared: Path,
                  record: Path | None = None) -> list[dict[str, Any]]:
    """`plan`: the labelled counts of each study (by space) to run."""
    if record:
        restore_record(record, runs / "tau")
    jobs, results = [], []
    for space, sizes in plan.items():
        study = STUDIES[space]
        ensure_predictors_fitted(names, producers, log, study)
        for name in names:
            spec = PREDICTORS[name]
            for size in sizes:
                for seed in range(seeds):
                    where = Path(study.folder, name, f"n{size}_seed{seed}")
                    path = runs / "tau" / where.with_suffix(".json")
                    epochs = (2 if spec.config_name else 20) if quick else spec.epochs[size]
                    recipe = tau_recipe(name, epochs, producers, study)
                    done = json.loads(path.read_text()) if path.is_file() else {}
                    if done.get("recipe") == recipe:  # reused only if fitted from the same configs for as long
                        results.append(done)
                    else:
                        jobs.append(TauFit(f"tau/{where.as_posix()}", (name, size, seed, epochs, recipe, str(path),
                                                                       str(shared / study.table), space)))
    jobs.sort(key=lambda job: -job.arguments[1])  # the large training sets first: the pool ends evenly
    failures = executor.run(jobs, "tau fits")
    if failures:
        raise RunsFailed(failures, len(jobs))
    results += [json.loads(Path(job.arguments[5]).read_text()) for job in jobs]
    log.append(f"tau study: {len(jobs)} fits run, {len(results) - len(jobs)} reused from {runs / 'tau'}")
    if record:
        save_record(runs / "tau", record, lambda name: name.endswith(".json"))  # one file per fit
    spaces = list(STUDIES)
    return sorted(results, key=lambda r: (spaces.index(r.get("space", "nb201")), names.index(r["predictor"]),
                                          r["size"], r["seed"]))
