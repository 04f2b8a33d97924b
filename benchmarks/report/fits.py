"""The checkpoints a search loads: fitted with their own fit config where missing; CR-LSO's once per
seed, on the protocol's labels drawn by the seed."""
from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from benchmarks.report.common import CONFIGS
from benchmarks.report.protocols import Protocol
from lightning_nas.errors import ConfigError, MissingFileError
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
            if ckpt in producers and (changed := changed_settings(Path(ckpt), producers[ckpt])):
                raise ConfigError(f"{ckpt} was fitted with other settings than {producers[ckpt]} now gives "
                                  f"({'; '.join(changed)}): delete or move it, and the report fits it again")
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


def changed_settings(ckpt: Path, producer: Path) -> list[str]:
    """The model and data arguments recorded in `ckpt` whose value differs from what its fit config
    `producer` resolves to now (arguments one side lacks are not compared), as "section.name: then -> now".
    Compared once per checkpoint file version and config text (a report checks each shared fit many times)."""
    return list(_changed_settings(str(ckpt), ckpt.stat().st_mtime_ns, str(producer), producer.read_text()))


@functools.lru_cache(maxsize=None)
def _changed_settings(ckpt: str, _mtime_ns: int, producer: str, _text: str) -> tuple[str, ...]:
    import torch

    saved = torch.load(ckpt, map_location="cpu", weights_only=False)  # our own fit's checkpoint
    config = resolved_config(["fit", "--config", producer])
    plain = lambda value: json.loads(json.dumps(value, default=str))  # tuples as lists, paths as strings
    changed = []
    for section, key in (("model", "hyper_parameters"), ("data", "datamodule_hyper_parameters")):
        now, then = (config.get(section) or {}).get("init_args") or {}, saved.get(key) or {}
        changed += [f"{section}.{name}: {then[name]!r} -> {now[name]!r}" for name in sorted(set(now) & set(then))
                    if not name.startswith("_") and plain(now[name]) != plain(then[name])]
    return tuple(changed)


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


def search_checkpoint(configs: Sequence[Path]) -> str:
    """The predictor checkpoint a search composed of `configs` loads."""
    return resolved_config(["search", *config_arguments(configs)])["ckpt_path"]


@dataclass(frozen=True)
class SeedFit:
    """One seed's fit as a task of an executor (a worker process or a SLURM job); its time goes to
    fit_time.json beside the checkpoint."""

    name: str
    fit_config: str

    def __call__(self) -> None:
        import sys

        import torch

        torch.set_num_threads(1)
        from lightning_nas.cli import main

        sys.argv = sys.argv[:1]  # LightningCLI must not read the parent's argv
        start = time.perf_counter()
        if main(["fit", "--config", self.fit_config, "--trainer.enable_progress_bar", "false"]) != 0:
            raise RuntimeError(f"fit of {self.fit_config} failed")
        seconds = round(time.perf_counter() - start, 2)
        atomic_write(Path(self.fit_config).parent / "fit_time.json", json.dumps({"fit_s": seconds}))


def seed_fits(configs: Sequence[Path], protocol: Protocol, shared: Path, name: str, run_dir: Path, seeds: list[int],
              producers: dict[str, Path], quick: bool) -> list[SeedFit]:
    """The fits of those of `seeds` whose predictor is not fitted yet (their fit configs written);
    `name` prefixes the tasks' names."""
    ckpt = search_checkpoint(configs)
    if ckpt not in producers:
        raise MissingFileError(f"{', '.join(map(str, configs))} need {ckpt}, and no config in configs/ writes it")
    fits = []
    for seed in seeds:
        folder = run_dir / "fits" / f"seed_{seed}"
        if not (folder / Path(ckpt).name).is_file():
            config = seed_fit_config(producers[ckpt], protocol, shared, seed, folder, quick)
            fits.append(SeedFit(f"{name}/fit_seed_{seed}", str(config)))
    return fits


def seed_fit_arguments(configs: Sequence[Path], run_dir: Path) -> list[str]:
    """The search arguments that load each seed's own fit (bench replaces {seed})."""
    name = Path(search_checkpoint(configs)).name
    return ["--ckpt_path", str(run_dir / "fits" / "seed_{seed}" / name), "--data.init_args.seed", "{seed}"]
