"""Assemble one search run from its parts (benchmark, oracle, predictor, strategy) and run it."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from lightning.pytorch.loggers import Logger

from lightning_nas.benchmarks.oracle import Oracle, TabularOracle
from lightning_nas.data.datamodule import ArchitectureDataModule
from lightning_nas.errors import ConfigError, MissingFileError
from lightning_nas.predictors.base import read_checkpoint
from lightning_nas.search import fits
from lightning_nas.search.fits import config_key, refusal
from lightning_nas.search.lock import locked_run_dir
from lightning_nas.search.loop import SearchLoop
from lightning_nas.search.objectives import Objectives
from lightning_nas.search.ranks import Ranks
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
                    canonical_inputs: bool, untrained: str | None = None) -> Surrogate | None:
    """The search's surrogate: a zero-cost proxy (`proxy`, else the strategy's `proxy_surrogate`;
    its seed drawn from the search's RNG unless given), or the predictor `model` (`untrained`: why it
    was never trained, for a strategy that cannot train it itself), or none."""
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
    return surrogate_for(model, space, finetune_epochs, seed, canonical_inputs, untrained=untrained,
                         warm_start=strategy.warm_start_size())


def class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def settings_hash(ckpt_path: str) -> str:
    """The hash of what a checkpoint says it was fitted with (model and data hyper-parameters)."""
    state = read_checkpoint(ckpt_path)
    return config_key({"model": state.get("hyper_parameters") or {}, "data": state.get("datamodule_hyper_parameters") or {}})


def check_fit_settings(model: torch.nn.Module, ckpt_path: str) -> None:
    """A fitted predictor replaces the configured one only when their settings agree."""
    stored = read_checkpoint(ckpt_path).get("hyper_parameters") or {}
    differ = [f"{k}: fit {stored[k]!r}, search {v!r}" for k, v in model.hparams.items()
              if k in stored and not k.startswith("_") and stored[k] != v]
    if differ:
        raise ConfigError(f"the fit in {ckpt_path} has other model settings than the search's `model:` "
                          f"({'; '.join(differ)}): use the same settings in both")


def prepare_predictor(model: torch.nn.Module | None, ckpt_path: str | None, auto_fit: str | None,
                      fit_cache: str, progress: bool) -> tuple[str | None, list[dict[str, Any]], str | None]:
    """Load or make what the predictor needs before the search starts: its checkpoint (`ckpt_path`, or
    the fit of `auto_fit` when that makes the predictor itself) and its label-free first stage (a
    stage-1 `pretrained` encoder, or the fit of `auto_fit` when that makes it). Refuses, with the
    command that makes it, a checkpoint or first stage that is missing.

    Returns the checkpoint the predictor was loaded from (None: not loaded), the records of the fits
    used, and None if the predictor is trained, else why it is not (with what would train it)."""
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise MissingFileError(refusal(f"predictor checkpoint {ckpt_path} does not exist", ckpt=ckpt_path,
                                       class_path=class_path(model) if model is not None else None,
                                       space=model.hparams.get("space") if model is not None else None))
    if model is None:
        if auto_fit is not None:
            raise ConfigError(f"auto_fit: {auto_fit} fits a predictor, but the search has no `model:` to load it into")
        return ckpt_path, [], None
    records: list[dict[str, Any]] = []
    pretrained = getattr(model, "hparams", {}).get("pretrained")
    if pretrained:
        records.append({"role": "pretrained", "made_by": None, "path": pretrained,
                        "config_hash": settings_hash(pretrained), "labels_charged": 0})
    if auto_fit is not None:
        fit = fits.auto_fit(auto_fit, fit_cache, progress)
        made = (read_checkpoint(fit.path).get("hyper_parameters") or {}).get("_class_path")
        if made == class_path(model):
            if ckpt_path is not None:
                raise ConfigError(f"ckpt_path and auto_fit both give the predictor: keep one (ckpt_path {ckpt_path}, "
                                  f"auto_fit {auto_fit})")
            check_fit_settings(model, fit.path)
            ckpt_path = fit.path
            records.append(fit.record("predictor"))
        elif callable(getattr(model, "load_pretrained", None)) and made == getattr(model, "pretrainer", None):
            if pretrained:
                raise ConfigError(f"model.init_args.pretrained and auto_fit both give the stage-1 encoder: keep one "
                                  f"(pretrained {pretrained}, auto_fit {auto_fit})")
            model.load_pretrained(fit.path)
            records.append(fit.record("pretrained"))
        else:
            raise ConfigError(f"auto_fit: {auto_fit} fits a {made}, which is neither the search's model "
                              f"({class_path(model)}) nor its first stage: name the fit config of the search's predictor")
    elif callable(getattr(model, "lacks_pretraining", None)) and model.lacks_pretraining():
        raise ConfigError(refusal(f"{type(model).__name__} has no stage-1 encoder (model.init_args.pretrained)",
                                  class_path=model.pretrainer, space=model.hparams.get("space"),
                                  instead_of="model.init_args.pretrained")
                          + "; model.init_args.from_scratch: true runs the ablation without pre-training")
    if ckpt_path is not None:
        load_predictor(model, ckpt_path)
        if not records or records[-1]["role"] != "predictor":
            records.append({"role": "predictor", "made_by": None, "path": ckpt_path,
                            "config_hash": settings_hash(ckpt_path), "labels_charged": 0})
        return ckpt_path, records, None
    untrained = refusal(f"its {type(model).__name__} was never trained (no ckpt_path)", class_path=class_path(model),
                        space=model.hparams.get("space"))
    return None, records, untrained


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
    auto_fit: str | None = None,
    fit_cache: str = fits.CACHE,
    objectives: list | None = None,
    constraints: list[str] | None = None,
    costs: dict | None = None,
    loggers: Sequence[Logger] = (),
) -> dict[str, Any]:
    """`proxy`: score with this zero-cost proxy (`lightning_nas.proxies.oracle.ProxySurrogate`'s
    arguments besides the space) instead of a trained predictor. `auto_fit`, `fit_cache`:
    `lightning_nas.search.fits`. `objectives`, `constraints`, `costs`: a multi-objective or
    constrained search (`lightning_nas.search.objectives`). `loggers` get every query. Only one
    search at a time runs in `run_dir` (`lightning_nas.search.lock`)."""
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
    ckpt_path, used, untrained = prepare_predictor(model, ckpt_path, auto_fit, fit_cache,
                                                   progress and Ranks().is_zero)
    fitted_data = fit_datamodule(ckpt_path) if ckpt_path else {}
    if model is not None and ckpt_path is not None:
        check_featurisation(ckpt_path, fitted_data, canonical_inputs)
    if oracle is None:
        datamodule.load()
        oracle = TabularOracle(datamodule.benchmark, datamodule.hparams.target, list(report), budget)
    else:
        oracle.budget = budget
    surrogate = build_surrogate(strategy, model, oracle.space, proxy, finetune_epochs, seed, canonical_inputs,
                                untrained)
    if untrained is not None and surrogate is not None and strategy.warm_start_size() >= budget:
        raise ConfigError(
            f"{type(strategy).__name__} trains its untrained predictor on its first {strategy.warm_start_size()} "
            f"queries, and the budget is {budget}: the predictor would never guide; raise the budget or give a "
            "fitted predictor (ckpt_path or auto_fit)"
        )
    declared = Objectives.build(objectives, constraints, costs, oracle)
    # labels the predictor was fitted on are oracle answers too: they are the run's first queries
    initial = predictor_labels(fitted_data) if charge_predictor_labels else []
    if len(initial) > budget:
        raise ConfigError(
            f"the predictor in {ckpt_path} was fitted on {len(initial)} labelled architectures, more than the "
            f"budget of {budget} queries; every label counts as a query: fit on fewer (data.num_labelled) "
            "or raise the budget"
        )
    if used and used[-1]["role"] == "predictor":
        used[-1]["labels_charged"] = len(initial)
    loop = SearchLoop(strategy, oracle, run_dir, seed=seed, ask_batch=ask_batch, surrogate=surrogate,
                      config=config, progress=progress, initial=initial, stop_requests=stop_requests,
                      table_only=table_only, fits=used, objectives=declared, loggers=loggers)
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
