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
import numpy as np
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


#: Delta-NAS's predictor learning from labels as the report's tau study runs it, chosen across NB201,
#: NB101, TNB101 and DARTS on split seeds 100-102 (benchmarks/results/delta_nas.md, "The paper's Table 1"):
#: pairs of labelled cells labelled by the difference of their ranks, inputs with the pair's context beside
#: its difference, each held-out cell scored by its 64 nearest labelled anchors. Arguments of `LabelledPairsDataModule`,
#: `DifferencePredictor` and `DifferencePredictor.rank_scores`; `context` only in difference mode.
DIFFERENCE_DATA: dict[str, Any] = {"max_pairs": 50_000, "batch_size": 256, "labels": "rank", "context": True}
DIFFERENCE_MODEL: dict[str, Any] = {"context": True}
DIFFERENCE_RANKING: dict[str, Any] = {"num_anchors": 64, "neighbour_weight": 0.0}
DIFFERENCE_STEPS = 1500


def difference_settings(mode: str = "difference") -> dict[str, dict[str, Any]]:
    """The default data / model / ranking arguments of a `mode` predictor (a recipe of the tau study)."""
    difference = mode == "difference"
    return {"data": {k: v for k, v in DIFFERENCE_DATA.items() if difference or k != "context"},
            "model": {k: v for k, v in DIFFERENCE_MODEL.items() if difference or k != "context"},
            "ranking": dict(DIFFERENCE_RANKING), "steps": DIFFERENCE_STEPS}


def difference_parts(benchmark: str | list[str], target: str, num_labelled: float, seed: int, mode: str = "difference",
                     encoding: str = "adjacency", data: dict[str, Any] | None = None,
                     model: dict[str, Any] | None = None):
    """Delta-NAS's predictor learning from labels (paper Table 1): (datamodule, model factory).
    `difference` trains on ordered pairs of labelled architectures, `absolute` regresses the label
    with the same network and encoding; `data` / `model` override arguments of
    `LabelledPairsDataModule` / `DifferencePredictor` (defaults: `difference_settings`)."""
    from lightning_nas.data.difference import LabelledPairsDataModule
    from lightning_nas.predictors.difference import DifferencePredictor

    defaults = difference_settings(mode)
    datamodule = LabelledPairsDataModule(benchmark, target, num_labelled=num_labelled, seed=seed, mode=mode,
                                         encoding=encoding, **{**defaults["data"], **(data or {})})
    datamodule.setup()
    model = {**defaults["model"], **(model or {})}
    return datamodule, lambda: DifferencePredictor(space=datamodule.space.name, encoding=encoding, mode=mode, **model)


def difference_tau(benchmark: str | list[str], target: str, num_labelled: float, seed: int, mode: str = "difference",
                   encoding: str = "adjacency", steps: int = DIFFERENCE_STEPS, data: dict[str, Any] | None = None,
                   model: dict[str, Any] | None = None, ranking: dict[str, Any] | None = None,
                   init_checkpoint: str | None = None) -> dict[str, Any]:
    """`difference_parts` trained for about `steps` optimiser steps (from the weights of
    `init_checkpoint`, e.g. a fit on proxy differences, if given); then the predictor ranks every
    held-out architecture (`DifferencePredictor.rank_scores` with the labelled architectures as
    anchors, `ranking` over `DIFFERENCE_RANKING`). Also the tau of its differences on held-out
    one-edit pairs (`pair_taus`)."""
    data_module, make_model = difference_parts(benchmark, target, num_labelled, seed, mode, encoding, data, model)
    torch.manual_seed(seed)
    predictor = make_model()
    if init_checkpoint:
        predictor.load_state_dict(torch.load(init_checkpoint, map_location="cpu", weights_only=False)["state_dict"])
    epochs = epochs_for(steps, len(data_module.train_t), data_module.hparams.batch_size)
    start = time.perf_counter()
    quiet_trainer(epochs).fit(predictor, data_module)
    fit_s = time.perf_counter() - start
    scores = predictor.rank_scores(data_module.heldout_archs, data_module.train_archs, data_module.train_labels,
                                   **{**DIFFERENCE_RANKING, **(ranking or {})})
    rank_s = time.perf_counter() - start - fit_s
    tau = kendall_rank_corrcoef(scores.float(), torch.as_tensor(data_module.heldout_y, dtype=torch.float32))
    return {"tau": float(tau), **pair_taus(predictor, data_module.heldout_archs, data_module.heldout_y, seed),
            "fit_s": round(fit_s, 2), "rank_s": round(rank_s, 2), "epochs": epochs, "steps": steps,
            "training_pairs": len(data_module.train_t), "labelled": len(data_module.train_rows),
            "heldout": len(data_module.heldout_rows)}


def pair_taus(predictor, archs: list, y, seed: int, max_pairs: int = 4000, samples: int = 4) -> dict[str, Any]:
    """Kendall tau of predicted against real differences on the one-edit pairs of `archs` (at most
    `max_pairs`, both directions), over the pairs (`pair_tau`) and over their difference encodings,
    each labelled by the mean real difference of `samples` pairs that realise it, as in the DoA
    dataset of Alg. 1 (`edit_tau`, adjacency encoding; `edits`: how many). NaN without such pairs."""
    from lightning_nas.encodings.difference import encode, neighbour_pairs

    pairs = neighbour_pairs(archs)
    rng = np.random.default_rng(seed)
    if len(pairs) > max_pairs:
        pairs = pairs[np.sort(rng.choice(len(pairs), max_pairs, replace=False))]
    pairs = np.concatenate([pairs, pairs[:, ::-1]])
    if len(pairs) < 2:
        return {"pair_tau": math.nan, "edit_tau": math.nan, "edits": 0}
    x = predictor.encode(archs)
    predicted = predictor.pair_gains(x[pairs[:, 0]], x[pairs[:, 1]]).double().numpy()
    real = np.asarray(y, dtype=np.float64)[pairs[:, 1]] - np.asarray(y, dtype=np.float64)[pairs[:, 0]]
    adjacency = encode(predictor.space, archs, "adjacency")
    _, edit = np.unique(adjacency[pairs[:, 1]] - adjacency[pairs[:, 0]], axis=0, return_inverse=True)
    edit, order = edit.ravel(), rng.permutation(len(pairs))
    chosen = [order[edit[order] == e][:samples] for e in np.unique(edit)]
    chosen = [c for c in chosen if len(c) == samples]
    edit_predicted = [predicted[c].mean() for c in chosen]
    edit_real = [real[c].mean() for c in chosen]
    tau = lambda a, b: float(kendall_rank_corrcoef(torch.as_tensor(a).float(), torch.as_tensor(b).float()))
    return {"pair_tau": tau(predicted, real), "edit_tau": tau(edit_predicted, edit_real) if len(chosen) > 1 else math.nan,
            "edits": len(chosen)}
