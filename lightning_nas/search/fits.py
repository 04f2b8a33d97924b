"""The fits a search needs, made on first use or named in a refusal: no search runs with a predictor
that was never trained.

A label-free fit (DCL-ENAS's stage-1 encoder, Delta-NAS's proxy-labelled difference predictor) is the
fit config of `lightning-nas fit`, run inside the search when the search names it (`auto_fit`) and no
checkpoint is given: parsed and trained as `fit` would (the config's model, data, seed and trainer
settings; no logger, no callbacks, one device), and cached in `<fit_cache>/<config name>-<key>/`
where the key hashes the resolved config, so that every run with the same fit shares it and a
resumed run reads the same weights. Concurrent runs (`bench` seeds) wait for one another on a lock.

Where a checkpoint is missing and nothing makes it, `refusal` names the exact `lightning-nas fit`
command: the fit config in `configs/` whose checkpoint callback writes that path, or whose model is
the predictor's class on the predictor's space.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import yaml

from lightning_nas.errors import ConfigError, MissingFileError
from lightning_nas.io import atomic_write, dumps
from lightning_nas.training import quiet_lightning

#: trainer settings that change where a fit writes or what it shows, not the weights it learns
OUTPUT_ONLY = ("callbacks", "logger", "default_root_dir", "enable_progress_bar", "enable_model_summary",
               "enable_checkpointing", "log_every_n_steps", "check_val_every_n_epoch", "num_sanity_val_steps",
               "limit_val_batches", "val_check_interval")
CACHE = "checkpoints/fits"  # the default `fit_cache` of a search
CHECKPOINT = "fit.ckpt"
RECORD = "fit.json"


@dataclass(frozen=True)
class Fit:
    """A fit on disk: its checkpoint, the config it came from and the key of that config."""

    config: str
    key: str
    path: str

    def record(self, role: str) -> dict[str, Any]:
        """What results.json says about it (no timings: a resumed run must write the same)."""
        return {"role": role, "made_by": f"lightning-nas fit --config {self.config}", "path": self.path,
                "config_hash": self.key, "labels_charged": 0}


def config_key(config: dict[str, Any]) -> str:
    """The hash of a resolved fit config, without the settings that only change its outputs."""
    trainer = {k: v for k, v in (config.get("trainer") or {}).items() if k not in OUTPUT_ONLY}
    kept = {k: v for k, v in config.items() if k not in ("config", "ckpt_path", "trainer")}
    text = json.dumps({**kept, "trainer": trainer}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def auto_fit(config: str, cache: str, progress: bool = True) -> Fit:
    """The fit of `config` from the cache, made first if the cache has none."""
    if not Path(config).is_file():
        raise MissingFileError(f"auto_fit: fit config {config} does not exist; give the path of a "
                               "`lightning-nas fit` config (e.g. configs/fits/nb201/delta_nas.yaml)")
    with _isolated():
        return _made_or_cached(config, Path(cache), progress)


def _made_or_cached(config: str, cache: Path, progress: bool) -> Fit:
    cli = _fit_cli(config, cache)
    fit = Fit(config, cli.key, str(cli.folder / CHECKPOINT))
    with _locked(cli.folder.with_suffix(".lock")):
        if Path(fit.path).is_file():
            return fit
        if progress:
            print(f"fitting {config} (first use; kept in {cli.folder} for later runs)", flush=True)
        start = time.perf_counter()
        with quiet_lightning():
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        partial = cli.folder / f".{CHECKPOINT}.partial"
        cli.trainer.save_checkpoint(partial, weights_only=True)
        os.replace(partial, fit.path)  # complete or absent, if the run is killed
        atomic_write(cli.folder / RECORD, dumps({"config": config, "key": cli.key,
                                                 "seconds": round(time.perf_counter() - start, 1),
                                                 "resolved": cli.resolved}, indent=1, default=str))
    return fit


def _fit_cli(config: str, cache: Path):
    """`config` parsed as `lightning-nas fit --config` parses it, and instantiated with a quiet trainer
    on one device that writes nothing; `key`, `folder` and `resolved` say where its fit belongs."""
    from argparse import ArgumentError

    from lightning.pytorch.cli import LightningCLI

    class FitCLI(LightningCLI):
        def before_instantiate_classes(self) -> None:
            self.resolved = self.config.as_dict()
            self.key = config_key(self.resolved)
            self.folder = cache / f"{Path(config).stem}-{self.key}"
            quiet = dict(callbacks=None, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(self.folder), devices=1, num_nodes=1,
                         strategy="auto")
            for name, value in quiet.items():
                self.config.trainer[name] = value

    try:
        with quiet_lightning():
            return FitCLI(subclass_mode_model=True, datamodule_class=None, run=False, save_config_callback=None,
                          args=["--config", config], parser_kwargs={"exit_on_error": False})
    except ArgumentError as e:  # jsonargparse's account of what in the file is wrong
        raise ConfigError(f"auto_fit: {config} is not a config `lightning-nas fit` can run ({e})") from None


@contextmanager
def _isolated() -> Iterator[None]:
    """The fit seeds itself (`seed_everything` of its config); the search's RNG states and seed
    variables are as they were afterwards, whether the fit was made or read from the cache."""
    states = random.getstate(), np.random.get_state()
    variables = {name: os.environ.get(name) for name in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        for name, value in variables.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- what to run when a fit is missing ------------------------------------------------------------
def fit_configs(root: Path = Path("configs")) -> list[tuple[Path, dict[str, Any]]]:
    """Every `lightning-nas fit` config under `root` (a config with a trainer and a model), parsed."""
    found = []
    for path in sorted(root.rglob("*.yaml")) if root.is_dir() else []:
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(config, dict) and isinstance(config.get("trainer"), dict) and isinstance(config.get("model"), dict):
            found.append((path, config))
    return found


def checkpoint_callbacks(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The init_args of every callback a config's trainer has (what ModelCheckpoint settings live in)."""
    callbacks = (config.get("trainer") or {}).get("callbacks") or []
    return [cb.get("init_args", {}) for cb in (callbacks if isinstance(callbacks, list) else [callbacks]) if isinstance(cb, dict)]


def checkpoint_producers(root: Path = Path("configs")) -> dict[str, Path]:
    """ckpt path -> the fit config whose ModelCheckpoint writes it (best and last)."""
    producers: dict[str, Path] = {}
    for path, config in fit_configs(root):
        for args in checkpoint_callbacks(config):
            if "dirpath" in args:
                for name in (args.get("filename") or "best", "last"):
                    producers[str(Path(args["dirpath"]) / f"{name}.ckpt")] = path
    return producers


def config_for(class_path: str, space: str | None, root: Path = Path("configs")) -> Path | None:
    """The first fit config under `root` that trains a `class_path` model on `space` (for a model
    without a space setting: the only config of that class, else none)."""
    found = [path for path, config in fit_configs(root) if config["model"].get("class_path") == class_path
             and (space is None or (config["model"].get("init_args") or {}).get("space") == space)]
    return found[0] if found and (space is not None or len(found) == 1) else None


def refusal(what: str, ckpt: str | None = None, class_path: str | None = None, space: str | None = None,
            instead_of: str = "ckpt_path") -> str:
    """`what` is missing: the command that makes it, where one of the configs under ./configs does
    (or `auto_fit` with that config, in place of the setting `instead_of`)."""
    producer = checkpoint_producers().get(str(Path(ckpt))) if ckpt else None
    producer = producer or (config_for(class_path, space) if class_path else None)
    if producer is None:
        return f"{what}: train it first with `lightning-nas fit --config <a fit config of {class_path or 'the predictor'}>`"
    return (f"{what}: make it with `lightning-nas fit --config {producer}`, or set `auto_fit: {producer}` "
            f"(without {instead_of}) to fit it inside the search on first use")


def check_model_checkpoints(init_args: dict[str, Any] | None, where: str = "model.init_args") -> None:
    """Refuse a model whose init arguments name a checkpoint that does not exist (a stage-1 encoder),
    before the model is built, with the command that makes it."""
    for name, value in (init_args or {}).items():
        if isinstance(value, str) and value.endswith(".ckpt") and not Path(value).is_file():
            raise MissingFileError(refusal(f"{where}.{name}: checkpoint {value} does not exist", ckpt=value,
                                           instead_of=f"{where}.{name}"))
