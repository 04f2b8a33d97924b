"""Assemble one search run from its parts (benchmark, oracle, predictor, strategy) and run it."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from lightning.pytorch.loggers import Logger

from lightning_nas.benchmarks.oracle import Oracle, TabularOracle
from lightning_nas.data.datamodule import ArchitectureDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.predictors.base import read_checkpoint
from lightning_nas.search.lock import locked_run_dir
from lightning_nas.search.loop import SearchLoop
from lightning_nas.search.stopping import StopRequests
from lightning_nas.search.strategy import Strategy
from lightning_nas.search.surrogate import Surrogate
from lightning_nas.search.surrogates import surrogate_for
from lightning_nas.spaces.base import SearchSpace


def load_predictor(model: torch.nn.Module, ckpt_path: str) -> torch.nn.Module:
    state = read_checkpoint(ckpt_path)
    if "state_dict" not in state:
        raise ConfigError(f"{ckpt_path} holds no model weights (no `state_dict`): pass a checkpoint written by `lightning-nas fit`")
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        raise ConfigError(
            f"checkpoint {ckpt_path} does not fit the configured `model:` ({type(model).__name__}): "
            f"use the same model settings as the `fit` that wrote it ({str(e).splitlines()[0]})"
        ) from None
    return model


def fit_datamodule(ckpt_path: str) -> dict[str, Any]:
    """The hyper-parameters Lightning stored of the datamodule a predictor checkpoint was fitted on."""
    return read_checkpoint(ckpt_path).get("datamodule_hyper_parameters") or {}


def predictor_labels(fitted_data: dict[str, Any]) -> list:
    """The labelled architectures a predictor was fitted on (the training split of its datamodule,
    rebuilt from `fit_datamodule`), or [] for label-free fits."""
    if not fitted_data.get("_class_path", "").endswith("ArchitectureDataModule") or not fitted_data.get("num_labelled"):
        return []
    datamodule = ArchitectureDataModule(**{k: v for k, v in fitted_data.items() if not k.startswith("_")})
    datamodule.load()
    return datamodule.train_archs


def check_featurisation(ckpt_path: str, fitted_data: dict[str, Any], canonical_inputs: bool) -> None:
    """A predictor must see architectures featurised as in its fit (`ArchitectureDataModule.canonical_inputs`)."""
    fitted = bool(fitted_data.get("canonical_inputs", False))
    if fitted != canonical_inputs:
        raise ConfigError(
            f"the predictor in {ckpt_path} was fitted with data.init_args.canonical_inputs={fitted}, but this "
            f"search featurises with {canonical_inputs}: set data.init_args.canonical_inputs: {str(fitted).lower()}"
        )


def build_surrogate(strategy: Strategy, model: torch.nn.Module | None, space: SearchSpace,
                    proxy: dict | None, finetune_epochs: int, seed: int,
                    canonical_inputs: bool) -> Surrogate | None:
    """The search's surrogate: a zero-cost proxy (`proxy`, else the strategy's `proxy_surrogate`;
    its seed drawn from the search's RNG unless given), or the trained predictor `model`, or none."""
    proxy = proxy if proxy is not None else strategy.proxy_surrogate
    if proxy is not None:
        if model is not None:
            raise ConfigError(
                f"{type(strategy).__name__} scores with the zero-cost proxy {proxy.get('proxy')!r}, and `model:` "
                "gives a trained predictor as well: remove `model:` and `ckpt_path:`"
            )
        from lightning_nas.proxies.oracle import ProxySurrogate

        return ProxySurrogate(space, **{"seed": None, **proxy})
    if model is None:
        return None
    return surrogate_for(model, space, finetune_epochs, seed, canonical_inputs)


def run_search(
    datamodule: ArchitectureDataModule | None,
    strategy: Strategy | None,
    model: torch.nn.Module | None = None,
    ckpt_path: str | None = None,
    budget: int = 100,
    report: list[str] = (),
    run_dir: str = "checkpoints/search",
    ask_batch: int = 1,
    finetune_epochs: int = 20,
    seed: int = 0,
    progress: bool = True,
    config: dict | None = None,
    oracle: Oracle | None = None,
    charge_predictor_labels: bool = True,
    stop_requests: StopRequests | None = None,
    table_only: bool = False,
    proxy: dict | None = None,
    loggers: Sequence[Logger] = (),
) -> dict[str, Any]:
    """`proxy`: score with this zero-cost proxy (`lightning_nas.proxies.oracle.ProxySurrogate`'s
    arguments besides the space) instead of a trained predictor. `loggers` get every query.
    Only one search at a time runs in `run_dir` (`lightning_nas.search.lock`)."""
    if strategy is None:
        raise ConfigError("no `strategy:` given: name a class, e.g. lightning_nas.search.baselines.RandomSearch")
    if datamodule is None and oracle is None:
        raise ConfigError("no `data:` and no `oracle:` given: a search needs a benchmark table or an oracle")
    if budget < 1:
        raise ConfigError(f"budget must be a positive number of queries, got {budget}")
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise ConfigError(f"run_dir {run_dir} is a file, not a folder: give --run_dir a folder (new or of this search)")
    # other datamodules (CR-LSO's G-VAE pool) have no such setting
    canonical_inputs = bool(datamodule.hparams.get("canonical_inputs", False)) if datamodule is not None else False
    fitted_data = fit_datamodule(ckpt_path) if ckpt_path else {}
    if model is not None and ckpt_path is not None:
        load_predictor(model, ckpt_path)
        check_featurisation(ckpt_path, fitted_data, canonical_inputs)
    if oracle is None:
        datamodule.load()
        oracle = TabularOracle(datamodule.benchmark, datamodule.hparams.target, list(report), budget)
    else:
        oracle.budget = budget
    surrogate = build_surrogate(strategy, model, oracle.space, proxy, finetune_epochs, seed, canonical_inputs)
    # labels the predictor was fitted on are oracle answers too: they are the run's first queries
    initial = predictor_labels(fitted_data) if charge_predictor_labels else []
    if len(initial) > budget:
        raise ConfigError(
            f"the predictor in {ckpt_path} was fitted on {len(initial)} labelled architectures, more than the "
            f"budget of {budget} queries; every label counts as a query: fit on fewer (data.num_labelled) "
            "or raise the budget"
        )
    loop = SearchLoop(strategy, oracle, run_dir, seed=seed, ask_batch=ask_batch, surrogate=surrogate,
                      config=config, progress=progress, initial=initial, stop_requests=stop_requests,
                      table_only=table_only, loggers=loggers)
    with locked_run_dir(Path(run_dir), loop.ranks):
        results = loop.run()
    if loop.ranks.is_zero and results["stopped_early"]:
        print(f"lightning-nas: stopped early after {loop.oracle.used} of {budget} queries: {results['stopped_early']}",
              file=sys.stderr)
    if loop.progress and results["best"]:
        best = results["best"]
        shown = ", ".join(f"{k} {v:.4g}" for k, v in best["report"].items())
        store = getattr(getattr(oracle, "store", None), "path", None)
        print(f"best: {best['arch']}  score {best['score']:.4g}"
              f"{'  (' + shown + ')' if shown else ''}\nresults in {Path(run_dir).resolve()}"
              f"{f'; evaluations stored in {store}' if store else ''}")
    return results
