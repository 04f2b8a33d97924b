"""DCL-ENAS measurements (issue 3): predictor Kendall tau with ablations, and search beside baselines.

    python -m benchmarks.bench_dcl_enas                                   # both parts, default seeds
    python -m benchmarks.bench_dcl_enas --parts predictor --seeds 5 --labels 156 1562
    python -m benchmarks.bench_dcl_enas --parts search --search-seeds 20 --protocols cifar10

Protocol (also written into the results):
- Stage 1 is run once per space with configs/fits/nb201/dcl_enas_pretrain.yaml (no labels) and its
  checkpoint is reused by every predictor and search run (benchmarks/runs/dcl_enas/pretrain.ckpt).
- Predictor: NB201, target cifar10_valid_valid_acc; `n` labelled architectures drawn by seed
  (ArchitectureDataModule); Kendall tau (torchmetrics) over EVERY other architecture of the table.
  Variants: DCL-ENAS (pre-trained + pairwise ranking), "no pre-training" (ranking from scratch),
  "MSE instead of ranking" (pre-trained + MSE), and a path-encoding MLP with MSE. Settings from
  configs/fits/nb201/dcl_enas_finetune.yaml; `--epochs-10pct` for n >= 1000 (same number of epochs
  would cost 10x the steps; see --help).
- Search: the three NB201 protocols of ../shared/benchmarks/README.md; DCL-ENAS (configs/methods/
  dcl_enas.yaml), random search and regularized evolution (configs/methods/re.yaml) through the same
  `run_search` and oracle, one run per seed at the largest budget; figures at smaller budgets are
  read off the trajectory (test accuracy of the best-by-validation architecture after b queries).
Results: benchmarks/results/dcl_enas.{json,md}; runs under benchmarks/runs/dcl_enas/.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml

from benchmarks.report.common import (CONFIGS, DEFAULT_SHARED, ROOT, add_script_arguments, from_root, script_folders,
                                      shared_tables)
from benchmarks.report.protocols import protocol
from lightning_nas.bench import config_arguments, resolved_config

RUNS, RESULTS = ROOT / "benchmarks" / "runs" / "dcl_enas", ROOT / "benchmarks" / "results"  # or under --out
SHARED = DEFAULT_SHARED  # or --shared
PRETRAIN = CONFIGS / "fits" / "nb201" / "dcl_enas_pretrain.yaml"
FINETUNE = CONFIGS / "fits" / "nb201" / "dcl_enas_finetune.yaml"
PROTOCOLS = {"cifar10": "nb201-cifar10", "cifar100": "nb201-cifar100", "imagenet16": "nb201-imagenet16"}
VARIANTS = ("dcl_enas", "no_pretrain", "mse_loss", "path_mlp_mse")


def fit_config(path: Path) -> dict[str, Any]:
    return resolved_config(["fit", "--config", str(path)])


def search_config(name: str, method: str) -> dict[str, Any]:
    """The resolved search config of configs/methods/<method>.yaml on a protocol of this script."""
    return resolved_config(["search", *config_arguments(protocol(PROTOCOLS[name]).configs(method))])


def init_args(config: dict[str, Any], key: str) -> dict[str, Any]:
    return dict(config[key].get("init_args") or {})


# --- stage 1, once -------------------------------------------------------------------------------
def pretrain(force: bool = False) -> tuple[Path, float]:
    """Fit stage 1 with the pretrain config (or reuse its checkpoint); returns (path, seconds)."""
    from lightning_nas.data.pool import ClusteredPoolDataModule
    from lightning_nas.predictors.dcl import ContrastivePretrainer

    path = RUNS / "pretrain.ckpt"
    if path.is_file() and not force:
        return path, json.loads((RUNS / "pretrain.json").read_text())["seconds"]
    config = fit_config(PRETRAIN)
    L.seed_everything(int(config["seed_everything"]), verbose=False)
    start = time.perf_counter()
    data = ClusteredPoolDataModule(**init_args(config, "data"))
    model = ContrastivePretrainer(**init_args(config, "model"))
    trainer = L.Trainer(max_epochs=config["trainer"]["max_epochs"], accelerator="cpu",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, data)
    seconds = time.perf_counter() - start
    RUNS.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    (RUNS / "pretrain.json").write_text(json.dumps({"seconds": seconds, "metrics": metrics}, indent=1))
    return path, seconds


# --- predictor ---------------------------------------------------------------------------------
def make_predictor(variant: str, ckpt: Path, epochs: int):
    from lightning_nas.predictors.dcl import RankingFinetuner
    from lightning_nas.predictors.mlp import PathMLPRegressor

    args = {**init_args(fit_config(FINETUNE), "model"), "pretrained": str(ckpt), "max_epochs_hint": epochs}
    if variant == "dcl_enas":
        return RankingFinetuner(**args)
    if variant == "no_pretrain":
        return RankingFinetuner(**{**args, "pretrained": None})
    if variant == "mse_loss":
        return RankingFinetuner(**{**args, "loss": "mse"})
    if variant == "path_mlp_mse":
        return PathMLPRegressor(path_length=84, lr=args["lr"], max_epochs_hint=epochs)
    raise ValueError(f"unknown variant {variant!r}")


def predictor_tau(variant: str, labels: int, seed: int, ckpt: Path, epochs: int) -> dict[str, float]:
    from lightning_nas.data.datamodule import ArchitectureDataModule
    from lightning_nas.predictors.evaluate import fit_and_test

    data_args = init_args(fit_config(FINETUNE), "data")
    data = ArchitectureDataModule(**{**data_args, "benchmark": str(SHARED / "nb201_200ep.csv.gz"),
                                     "num_labelled": labels, "seed": seed})
    r = fit_and_test(lambda: make_predictor(variant, ckpt, epochs), data, epochs, seed)
    return {"tau": r["tau"], "fit_s": r["fit_s"], "heldout": r["heldout"], "epochs": epochs}


def run_predictor(args, ckpt: Path) -> dict[str, Any]:
    base_epochs = int(fit_config(FINETUNE)["trainer"]["max_epochs"])
    out: dict[str, Any] = {}
    for labels in args.labels:
        epochs = args.epochs_10pct if labels >= 1000 else base_epochs
        for variant in args.variants:
            runs = []
            for seed in range(args.seeds):
                r = predictor_tau(variant, labels, seed, ckpt, epochs)
                runs.append(r)
                log(f"tau  n={labels:5d} {variant:13s} seed {seed}: {r['tau']:.4f}  ({r['fit_s']:.0f}s fit)")
            taus = [r["tau"] for r in runs]
            out[f"{labels}/{variant}"] = {"labels": labels, "variant": variant, "epochs": epochs,
                                          "tau_mean": float(np.mean(taus)), "tau_std": float(np.std(taus)),
                                          "seeds": len(runs), "runs": runs}
    return out


# --- search ------------------------------------------------------------------------------------
#: `--override strategy.generations=10 finetune_epochs=40`: what-if runs without editing the configs
OVERRIDES: dict[str, Any] = {}


def make_strategy(method: str, name: str, ckpt: Path | None):
    from lightning_nas.predictors.dcl import RankingFinetuner
    from lightning_nas.search.baselines import RandomSearch, RegularizedEvolution
    from lightning_nas.search.dcl_enas import DCLENAS

    if method == "random":
        return RandomSearch(), None, {}
    if method == "re":
        return RegularizedEvolution(**init_args(search_config(name, "re"), "strategy")), None, {}
    config = search_config(name, "dcl_enas")
    model = RankingFinetuner(**{**init_args(config, "model"), "pretrained": str(ckpt), **_overrides("model.")})
    extra = {"ask_batch": int(config["ask_batch"]), "finetune_epochs": int(config["finetune_epochs"])}
    extra.update({k: v for k, v in OVERRIDES.items() if "." not in k})
    return DCLENAS(**{**init_args(config, "strategy"), **_overrides("strategy.")}), model, extra


def _overrides(prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in OVERRIDES.items() if k.startswith(prefix)}


def search_run(method: str, name: str, seed: int, budget: int, ckpt: Path | None) -> dict[str, Any]:
    from lightning_nas.data.datamodule import ArchitectureDataModule
    from lightning_nas.search.statistics import wall_time
    from lightning_nas.search.runner import run_search

    chosen = protocol(PROTOCOLS[name])
    run_dir = RUNS / "search" / name / method / f"seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: wall time must cover the whole search
    data = ArchitectureDataModule(chosen.benchmark(SHARED), chosen.target, num_labelled=0)
    L.seed_everything(seed, verbose=False)
    strategy, model, extra = make_strategy(method, name, ckpt)
    results = run_search(data, strategy, model=model, budget=budget, report=list(chosen.report),
                         run_dir=str(run_dir), ask_batch=extra.get("ask_batch", 1),
                         finetune_epochs=extra.get("finetune_epochs", 0), seed=seed, progress=False)
    return {**results, "wall_time_s": wall_time(run_dir)}  # kept in timing.json, apart from results.json


def run_search_part(args, ckpt: Path | None) -> dict[str, Any]:
    from lightning_nas.search.statistics import best_after

    out: dict[str, Any] = {}
    budget = max(args.budgets)
    for name in args.protocols:
        report = protocol(PROTOCOLS[name]).report[0]
        for method in args.methods:
            per_budget: dict[int, list[float]] = {b: [] for b in args.budgets}
            walls = []
            for seed in range(args.search_seeds):
                results = search_run(method, name, seed, budget, ckpt)
                walls.append(results["wall_time_s"])
                for b in args.budgets:
                    per_budget[b].append(best_after(results, b)["report"][report])
                log(f"search {name:10s} {method:8s} seed {seed}: " +
                    "  ".join(f"{b}q {per_budget[b][-1]:.2f}" for b in args.budgets) + f"  ({walls[-1]:.1f}s)")
            out[f"{name}/{method}"] = {
                "protocol": name, "method": method, "seeds": args.search_seeds, "report": report,
                "budgets": {str(b): {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v}
                            for b, v in per_budget.items()},
                "wall_s_mean": float(np.mean(walls)), "wall_s_std": float(np.std(walls)),
            }
    return out


# --- output ------------------------------------------------------------------------------------
def markdown(results: dict[str, Any]) -> str:
    lines = ["# DCL-ENAS measurements", "", results["protocol"], ""]
    pre = results.get("pretrain")
    if pre:
        lines += [f"Stage 1 (once, NB201, 15,625 unlabelled cells): {pre['seconds']:.0f} s.", ""]
    if results.get("predictor"):
        lines += ["## Predictor: Kendall tau on every held-out NB201 architecture (cifar10_valid_valid_acc)", "",
                  "| labels | variant | tau mean ± std | seeds | epochs | fit s (mean) |", "|---|---|---|---|---|---|"]
        for r in results["predictor"].values():
            fit = np.mean([x["fit_s"] for x in r["runs"]])
            lines.append(f"| {r['labels']} | {r['variant']} | {r['tau_mean']:.3f} ± {r['tau_std']:.3f} | "
                         f"{r['seeds']} | {r['epochs']} | {fit:.0f} |")
        lines.append("")
    if results.get("search"):
        budgets = sorted({b for r in results["search"].values() for b in r["budgets"]}, key=int)
        lines += ["## Search: test accuracy of the best-by-validation architecture", "",
                  "| protocol | method | seeds | " + " | ".join(f"{b} queries" for b in budgets) + " | wall s / run |",
                  "|---|---|---|" + "---|" * len(budgets) + "---|"]
        for r in results["search"].values():
            cells = " | ".join(f"{r['budgets'][b]['mean']:.2f} ± {r['budgets'][b]['std']:.2f}" for b in budgets)
            lines.append(f"| {r['protocol']} ({r['report']}) | {r['method']} | {r['seeds']} | {cells} | "
                         f"{r['wall_s_mean']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def _as_list(argv: Any) -> list[Any]:
    """Earlier invocations' argv: one list of arguments per run of the script."""
    if not argv:
        return []
    return argv if isinstance(argv[0], list) else [argv]


def log(message: str) -> None:
    print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["predictor", "search"], choices=["predictor", "search"])
    parser.add_argument("--seeds", type=int, default=5, help="predictor seeds (labelled-set draws)")
    parser.add_argument("--labels", type=int, nargs="+", default=[156, 1562])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--epochs-10pct", type=int, default=30,
                        help="fine-tuning epochs when >= 1000 labels (25 steps/epoch at batch 64)")
    parser.add_argument("--search-seeds", type=int, default=20)
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    parser.add_argument("--methods", nargs="+", default=["dcl_enas", "random", "re"], choices=["dcl_enas", "random", "re"])
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 150])
    parser.add_argument("--repretrain", action="store_true", help="fit stage 1 again instead of reusing it")
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                        help="DCL-ENAS search settings over the configs: strategy.<arg>, model.<arg>, "
                             "finetune_epochs, ask_batch (values parsed as YAML)")
    parser.add_argument("--tag", default="dcl_enas", help="results file stem under benchmarks/results/")
    add_script_arguments(parser)
    args = parser.parse_args(argv)
    global RESULTS, RUNS, SHARED
    RESULTS, RUNS = script_folders(args, "dcl_enas")
    SHARED = shared_tables(args.shared)
    for item in args.override:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--override takes KEY=VALUE, got {item!r}")
        OVERRIDES[key] = yaml.safe_load(value)

    torch.set_num_threads(1)  # small graphs: extra intra-op threads only contend on a shared machine
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    # stage 1 only for what uses it: the predictor part and DCL-ENAS's searches
    needed = "predictor" in args.parts or "dcl_enas" in args.methods
    ckpt, pre_s = pretrain(force=args.repretrain) if needed else (None, None)
    results: dict[str, Any] = {"protocol": __doc__.split("Protocol (also written into the results):")[1].split("Results:")[0].strip(),
                               "argv": sys.argv[1:] if argv is None else argv, "overrides": dict(OVERRIDES)}
    if ckpt:
        results["pretrain"] = {"seconds": pre_s, "checkpoint": str(from_root(ckpt))}
    start = time.perf_counter()
    if "predictor" in args.parts:
        results["predictor"] = run_predictor(args, ckpt)
    if "search" in args.parts:
        results["search"] = run_search_part(args, ckpt)
    results["total_s"] = time.perf_counter() - start
    RESULTS.mkdir(parents=True, exist_ok=True)
    previous = RESULTS / f"{args.tag}.json"
    if previous.is_file():  # runs of separate parts / protocols land in one file; a rerun replaces its rows
        kept = json.loads(previous.read_text())
        for part in ("predictor", "search"):
            results[part] = {**kept.get(part, {}), **results.get(part, {})}
        results["argv"] = [*_as_list(kept.get("argv")), results["argv"]]
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(results, indent=1, default=float))
    (RESULTS / f"{args.tag}.md").write_text(markdown(results))
    log(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
