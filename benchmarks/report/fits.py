"""The checkpoints a search loads: fitted with their own fit config where missing; CR-LSO's once per
seed, on the protocol's labels drawn by the seed."""
from __future__ import annotations

import json
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from benchmarks.report.common import CONFIGS
from benchmarks.report.protocols import Protocol
from lightning_nas.errors import MissingFileError
from lightning_nas.io import atomic_write
from lightning_nas.bench import config_arguments, resolved_config
from lightning_nas.search.fits import checkpoint_callbacks
from lightning_nas.search.fits import checkpoint_producers as producers_under


def checkpoint_producers(config_dir: Path = CONFIGS) -> dict[str, Path]:
    """ckpt path -> the fit config whose ModelCheckpoint writes it (best and last)."""
    return producers_under(config_dir)


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


def ensure_fitted(subcommand: str, configs: Sequence[Path], producers: dict[str, Path], log: list[str]) -> None:
    """Fit every checkpoint the config composed of `configs` names that is missing, with its own fit
    config (full settings, also under --quick: these checkpoints are shared with every later search)."""
    from lightning_nas.cli import main

    for ckpt in needed_checkpoints(resolved_config([subcommand, *config_arguments(configs)])):
        if Path(ckpt).is_file():
            log.append(f"reused {ckpt} (delete it to fit again)")
            continue
        if ckpt not in producers:
            raise MissingFileError(f"{', '.join(map(str, configs))} need {ckpt}, and no config in configs/ writes it")
        fit_config = producers[ckpt]
        ensure_fitted("fit", [fit_config], producers, log)
        start = time.perf_counter()
        if main(["fit", "--config", str(fit_config), "--trainer.enable_progress_bar", "false"]) != 0:
            raise RuntimeError(f"fit of {fit_config} failed")
        log.append(f"fit {fit_config.relative_to(CONFIGS.parent)} ({time.perf_counter() - start:.0f} s)")


def seed_fit_config(fit_config: Path, protocol: Protocol, shared: Path, seed: int, folder: Path, quick: bool) -> Path:
    """The fit config of one seed: the protocol's data, labels drawn by the seed, checkpoint in `folder`."""
    config = yaml.safe_load(fit_config.read_text())
    config["seed_everything"] = seed
    benchmark = protocol.benchmark(shared)
    config["data"]["init_args"].update(benchmark=benchmark[0] if len(benchmark) == 1 else benchmark,
                                       target=protocol.target, seed=seed)
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


def search_checkpoint(configs: Sequence[Path]) -> str:
    """The predictor checkpoint a search composed of `configs` loads."""
    return resolved_config(["search", *config_arguments(configs)])["ckpt_path"]


def fit_per_seed(configs: Sequence[Path], protocol: Protocol, shared: Path, method: str, run_dir: Path,
                 seeds: list[int], workers: int, producers: dict[str, Path], quick: bool, log: list[str]) -> None:
    """Fit the predictor of each of `seeds` that has none."""
    ckpt = search_checkpoint(configs)
    if ckpt not in producers:
        raise MissingFileError(f"{', '.join(map(str, configs))} need {ckpt}, and no config in configs/ writes it")
    name, jobs = Path(ckpt).name, []
    for seed in seeds:
        folder = run_dir / "fits" / f"seed_{seed}"
        if not (folder / name).is_file():
            jobs.append(str(seed_fit_config(producers[ckpt], protocol, shared, seed, folder, quick)))
    if jobs:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            seconds = list(pool.map(fit_job, jobs))
        log.append(f"fit {method} on {protocol.name}, {len(jobs)} seeds: {np.mean(seconds):.0f} s per fit")


def seed_fit_arguments(configs: Sequence[Path], run_dir: Path) -> list[str]:
    """The search arguments that load each seed's own fit (bench replaces {seed})."""
    name = Path(search_checkpoint(configs)).name
    return ["--ckpt_path", str(run_dir / "fits" / "seed_{seed}" / name), "--data.init_args.seed", "{seed}"]
