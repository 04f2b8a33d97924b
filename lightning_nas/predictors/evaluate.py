"""How well a predictor ranks the architectures it was not trained on.

`fit_and_test` fits a predictor on a datamodule's `num_labelled` architectures, then measures Kendall
tau (torchmetrics, in the predictor's `test_step`) over every other architecture of the table.
`config_tau` does so for the model and data of a fit config; `difference_tau` for the difference
predictor (Delta-NAS), which ranks against labelled anchors. `lightning-nas report` and the
benchmarks/bench_*.py scripts share these functions.
"""
from __future__ import annotations

import importlib
import math
import time
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
import yaml
from torchmetrics.functional.regression import kendall_rank_corrcoef

from lightning_nas.training import quiet_trainer


def instantiate(spec: dict[str, Any], **overrides: Any) -> Any:
    """The object a config entry names (`class_path` + `init_args`), with some arguments replaced."""
    module, _, name = spec["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**{**(spec.get("init_args") or {}), **overrides})


def fit_and_test(make_model: Callable[[], L.LightningModule], datamodule: L.LightningDataModule, epochs: int,
                 seed: int) -> dict[str, Any]:
    """Fit `make_model()` (built after seeding) for `epochs`, then test it on the held-out rows."""
    datamodule.setup()
    L.seed_everything(seed, verbose=False)
    model = make_model()
    trainer = quiet_trainer(epochs)
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    fit_s = time.perf_counter() - start
    metrics = {k: float(v) for k, v in trainer.test(model, datamodule=datamodule, verbose=False)[0].items()}
    return {"tau": metrics.pop("test_tau"), **metrics, "fit_s": round(fit_s, 2), "epochs": epochs,
            "labelled": len(datamodule.train_rows), "heldout": len(datamodule.heldout_rows)}


def config_tau(config: str | Path, num_labelled: float, seed: int, epochs: int,
               data_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """`fit_and_test` with the model and data of a fit config; `num_labelled` drawn by `seed`."""
    spec = yaml.safe_load(Path(config).read_text())
    data = instantiate(spec["data"], num_labelled=num_labelled, seed=seed, **(data_overrides or {}))
    # the cosine schedule spans the epochs actually run
    hint = {"max_epochs_hint": epochs} if "max_epochs_hint" in (spec["model"].get("init_args") or {}) else {}
    return fit_and_test(lambda: instantiate(spec["model"], **hint), data, epochs, seed)


def epochs_for(steps: int, items: int, batch_size: int) -> int:
    """Epochs that give about `steps` optimiser steps over `items` training items."""
    return max(1, math.ceil(steps / max(1, math.ceil(items / batch_size))))


def difference_parts(benchmark: str | list[str], target: str, num_labelled: float, seed: int, mode: str = "difference",
                     encoding: str = "adjacency", max_pairs: int = 50_000):
    """Delta-NAS's predictor learning from labels (paper Table 1): (datamodule, model factory).
    `difference` trains on ordered pairs of labelled architectures, `absolute` regresses the label
    with the same network and encoding."""
    from lightning_nas.data.difference import LabelledPairsDataModule
    from lightning_nas.predictors.difference import DifferencePredictor

    data = LabelledPairsDataModule(benchmark, target, num_labelled=num_labelled, seed=seed, mode=mode,
                                   encoding=encoding, max_pairs=max_pairs, batch_size=256)
    data.setup()
    return data, lambda: DifferencePredictor(space=data.space.name, encoding=encoding, mode=mode)


def difference_tau(benchmark: str | list[str], target: str, num_labelled: float, seed: int, mode: str = "difference",
                   encoding: str = "adjacency", steps: int = 1500, max_pairs: int = 50_000,
                   num_anchors: int = 64) -> dict[str, Any]:
    """`difference_parts` trained for about `steps` optimiser steps; a difference predictor ranks each
    held-out architecture by its `num_anchors` nearest labelled anchors."""
    data, make_model = difference_parts(benchmark, target, num_labelled, seed, mode, encoding, max_pairs)
    torch.manual_seed(seed)
    model = make_model()
    epochs = epochs_for(steps, len(data.train_t), data.hparams.batch_size)
    start = time.perf_counter()
    quiet_trainer(epochs).fit(model, data)
    fit_s = time.perf_counter() - start
    anchor_y = (data.train_y - data.y_mean) / data.y_std
    scores = model.rank_scores(data.heldout_archs, data.train_archs, anchor_y, num_anchors=num_anchors)
    tau = kendall_rank_corrcoef(scores.float(), torch.as_tensor(data.heldout_y, dtype=torch.float32))
    return {"tau": float(tau), "fit_s": round(fit_s, 2), "epochs": epochs, "steps": steps,
            "training_pairs": len(data.train_t), "labelled": len(data.train_rows), "heldout": len(data.heldout_rows)}
