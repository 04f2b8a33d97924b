"""EDNAG measurements: generation wall time, search at 50/100/150 queries beside random search and
regularized evolution (same script, same loop, same oracle), and the paper's ablation.

    python -m benchmarks.bench_ednag                       # everything (about 30 min on 2 busy cores)
    python -m benchmarks.bench_ednag --parts timing ablation --ednag-seeds 3

Protocol (written into the results): the GIN predictor of each protocol is fitted once (seed 0) on
`--labels` labelled architectures of the table, with the hyper-parameters of configs/fits/nb201/gin.yaml;
those labels are NOT counted in the query budget (they are reported beside it). EDNAG's settings
are read from its configs (configs/methods/ednag.yaml with the space's file and the protocol).
Figures at 50 / 100 / 150 queries are read off each run's trajectory (best by search objective,
its report metric). Results: benchmarks/results/ednag.{json,md}; runs: benchmarks/runs/ednag/.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.report.common import (CONFIGS, DEFAULT_SHARED, ROOT, add_script_arguments, quiet, script_folders,
                                      shared_tables)
from benchmarks.report.protocols import protocol
from lightning_nas.bench import config_arguments, resolved_config

RUNS, RESULTS = ROOT / "benchmarks" / "runs" / "ednag", ROOT / "benchmarks" / "results"  # or under --out
SHARED = DEFAULT_SHARED  # or --shared
BUDGETS = (50, 100, 150)
TNB_TASKS = ("class_scene", "class_object", "room_layout", "jigsaw", "segmentsemantic", "normal", "autoencoder")


def protocols() -> dict[str, dict[str, Any]]:
    """The protocols of this script under its names (its results keep them), with EDNAG's resolved config."""
    names = {"nb201_cifar10": "nb201-cifar10", "nb201_cifar100": "nb201-cifar100",
             "nb201_imagenet16": "nb201-imagenet16", **{f"tnb101_{t}": f"tnb101-{t}" for t in TNB_TASKS}}
    out = {}
    for name, protocol_name in names.items():
        chosen = protocol(protocol_name)
        config = resolved_config(["search", *config_arguments(chosen.configs("ednag"))])
        out[name] = dict(config=config, benchmark=chosen.benchmark(SHARED), target=chosen.target,
                         report=chosen.report[0], in_channels=config["model"]["init_args"]["in_channels"])
    return out


# --- predictors ----------------------------------------------------------------------------------
def gin_hparams(in_channels: int) -> dict[str, Any]:
    config = resolved_config(["fit", "--config", str(CONFIGS / "fits" / "nb201" / "gin.yaml")])
    return {**config["model"]["init_args"], "in_channels": in_channels}, config["trainer"]["max_epochs"]


def fit_predictor(name: str, p: dict[str, Any], labels: int) -> dict[str, Any]:
    """GIN of configs/fits/nb201/gin.yaml on `labels` labelled architectures (seed 0); Kendall tau on
    1,000 held-out ones. Cached as benchmarks/runs/ednag/gin_<name>_<labels>.ckpt."""
    import lightning as L

    from lightning_nas.data.datamodule import ArchitectureDataModule
    from lightning_nas.training import quiet_trainer
    from lightning_nas.predictors.gin import GINRegressor

    ckpt = RUNS / f"gin_{name}_{labels}.ckpt"
    meta = ckpt.with_suffix(".json")
    if ckpt.is_file() and meta.is_file():
        return json.loads(meta.read_text())
    hparams, epochs = gin_hparams(p["in_channels"])
    L.seed_everything(0, verbose=False)
    data = ArchitectureDataModule(p["benchmark"], p["target"], num_labelled=labels, seed=0, max_val=1000)
    model = GINRegressor(**hparams)
    trainer = quiet_trainer(epochs)
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    seconds = time.perf_counter() - start
    tau = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False) \
        .validate(model, datamodule=data, verbose=False)[0]["val_tau"]
    RUNS.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict()}, ckpt)
    info = {"ckpt": str(ckpt), "labels": labels, "epochs": epochs, "val_tau_1000": float(tau), "fit_seconds": round(seconds, 1)}
    meta.write_text(json.dumps(info))
    return info


# --- one search run ---------------------------------------------------------------------------------
def strategy_args(config: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
    return config["strategy"]["init_args"], config["ask_batch"], config["finetune_epochs"]


def search(p: dict[str, Any], method: str, seed: int, budget: int, run_dir: Path, ckpt: str | None = None,
           overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from lightning_nas.data.datamodule import ArchitectureDataModule
    from lightning_nas.predictors.gin import GINRegressor
    from lightning_nas.search.baselines import RandomSearch, RegularizedEvolution
    from lightning_nas.search.ednag import EDNAG
    from lightning_nas.search.runner import run_search

    done = run_dir / "results.json"
    if done.is_file():
        results = json.loads(done.read_text())
        if len(results["queries"]) >= budget:
            return results
    shutil.rmtree(run_dir, ignore_errors=True)
    data = ArchitectureDataModule(p["benchmark"], p["target"], num_labelled=0)
    model, ask_batch, finetune_epochs = None, 10, 0
    if method == "rs":
        strategy = RandomSearch()
    elif method == "re":
        strategy = RegularizedEvolution(population_size=10, sample_size=3)  # configs/methods/re.yaml
    else:
        args, ask_batch, finetune_epochs = strategy_args(p["config"])
        strategy = EDNAG(**{**args, **(overrides or {})})
        if strategy.fitness_mode == "predictor":
            hparams, _ = gin_hparams(p["in_channels"])
            model = GINRegressor(**hparams)
    torch.manual_seed(seed)
    return run_search(data, strategy, model=model, ckpt_path=ckpt if model is not None else None, budget=budget,
                      report=[p["report"]], run_dir=str(run_dir), ask_batch=ask_batch,
                      finetune_epochs=finetune_epochs, seed=seed, progress=False)


def at_budgets(results: list[dict[str, Any]], report: str) -> dict[str, Any]:
    out = {}
    for b in BUDGETS:
        values = [r["queries"][: b][-1]["best"]["report"][report] for r in results if len(r["queries"]) >= b]
        out[str(b)] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)} if values else None
    return out


def table_best(p: dict[str, Any]) -> dict[str, float]:
    from lightning_nas.benchmarks.archive import Benchmark

    bench = Benchmark.load(p["benchmark"])
    key, score = bench.best(p["target"])
    return {"objective": score, "report_of_best_objective": bench.query(key, p["report"]),
            "report_max": float(np.nanmax(bench.column(p["report"])))}


def run_protocol(name: str, p: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    labels = args.labels_tnb if name.startswith("tnb101") else args.labels
    predictor = fit_predictor(name, p, labels)
    print(f"[{name}] GIN on {labels} labels: val tau {predictor['val_tau_1000']:.3f} ({predictor['fit_seconds']} s)", flush=True)
    entry: dict[str, Any] = {"target": p["target"], "report": p["report"], "predictor": predictor,
                             "table_best": table_best(p), "methods": {}}
    plan = {"ednag": args.ednag_seeds, "re": args.baseline_seeds, "rs": args.baseline_seeds}
    for method, seeds in plan.items():
        start = time.perf_counter()
        runs = [search(p, method, s, max(BUDGETS), RUNS / name / method / f"seed_{s}", predictor["ckpt"]) for s in range(seeds)]
        entry["methods"][method] = {
            "seeds": seeds,
            "at_queries": at_budgets(runs, p["report"]),
            "search_seconds_per_seed": round((time.perf_counter() - start) / seeds, 2),
            "strategy_stats": runs[0].get("strategy_stats", {}),
        }
        figures = entry["methods"][method]["at_queries"]["100"]
        print(f"[{name}] {method}: {figures['mean']:.4f} ± {figures['std']:.4f} at 100 queries (n={seeds})", flush=True)
    if name.startswith("tnb101"):
        best = entry["table_best"]["report_max"]
        for m in entry["methods"].values():
            for b, fig in m["at_queries"].items():
                if fig is not None:
                    fig["gap_to_best_percent"] = 100.0 * (best - fig["mean"]) / abs(best)
    return entry


# --- generation wall time -------------------------------------------------------------------------
def timing(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.report.performance import ednag_generation
    from lightning_nas.predictors.gin import GINRegressor
    from lightning_nas.spaces import get_space

    p = protocols()["nb201_cifar10"]
    predictor = fit_predictor("nb201_cifar10", p, args.labels)
    hparams, _ = gin_hparams(7)
    model = GINRegressor(**hparams)
    model.load_state_dict(torch.load(predictor["ckpt"], weights_only=True)["state_dict"])
    out: dict[str, Any] = {"steps": args.timing_steps, "population_size": 30, "predictor": "GINRegressor (fits/nb201/gin.yaml settings)"}
    threads_before = torch.get_num_threads()
    settings = {"threads_1": (1, 1), "threads_2_capped": (2, 1), "threads_2_uncapped": (2, None)}
    for label, (threads, score_threads) in settings.items():
        torch.set_num_threads(threads)
        t = ednag_generation(model, get_space("nb201"), steps=args.timing_steps, repeats=args.timing_repeats,
                             score_threads=score_threads)
        out[label] = {"torch_threads": threads, **t}
        print(f"[timing] {label}: generation {t['generation_s']:.2f} s (median), "
              f"scoring as many archs in one call {t['scoring_s']:.2f} s", flush=True)
    torch.set_num_threads(threads_before)
    return out


# --- the paper's ablation ------------------------------------------------------------------------------
ABLATION = {
    "plain_denoising": {"guidance": False, "selection": False},
    "fitness_guidance": {"guidance": True, "selection": False},
    "fitness_guidance_and_selection": {"guidance": True, "selection": True},
}


def ablation(args: argparse.Namespace) -> dict[str, Any]:
    """(a) generator only, the paper's Fig. 7 setting: the table's objective as fitness, no query
    budget, test accuracy of the final population's best; (b) the same variants as budgeted searches
    with the GIN as fitness (100 queries)."""
    from lightning_nas.benchmarks.archive import Benchmark
    from lightning_nas.search.ednag import EDNAG
    from lightning_nas.search.surrogate import Surrogate

    p = protocols()["nb201_cifar10"]
    bench = Benchmark.load(p["benchmark"])
    objective, report = bench.column(p["target"]), bench.column(p["report"])

    class TableFitness(Surrogate):
        def score(self, archs):
            return torch.tensor([float(objective[bench.row(a)]) for a in archs])

        def update(self, archs, y):
            pass

    out: dict[str, Any] = {"generator_only_table_fitness": {}, "search_gin_fitness_100_queries": {}}
    for variant, flags in ABLATION.items():
        finals, mean_pop = [], []
        for seed in range(args.ablation_generator_seeds):
            strategy = EDNAG(fitness="predictor", finetune=False, **flags)
            strategy.setup(bench.space, np.random.default_rng(seed), TableFitness())
            strategy.generate()
            rows = [bench.row(bench.space.make(g)) for g in strategy.run.genotypes]
            best = max(rows, key=lambda i: objective[i])
            finals.append(float(report[best]))
            mean_pop.append(float(np.mean(report[rows])))
        out["generator_only_table_fitness"][variant] = {
            "seeds": len(finals), "best_test_acc_mean": float(np.mean(finals)), "best_test_acc_std": float(np.std(finals)),
            "population_mean_test_acc": float(np.mean(mean_pop))}
        print(f"[ablation generator] {variant}: {np.mean(finals):.3f} ± {np.std(finals):.3f}", flush=True)
    predictor = fit_predictor("nb201_cifar10", p, args.labels)
    for variant, flags in ABLATION.items():
        runs = [search(p, "ednag", s, 100, RUNS / "ablation" / variant / f"seed_{s}", predictor["ckpt"], flags)
                for s in range(args.ablation_search_seeds)]
        values = [r["queries"][-1]["best"]["report"][p["report"]] for r in runs]
        out["search_gin_fitness_100_queries"][variant] = {"seeds": len(values), "mean": float(np.mean(values)),
                                                           "std": float(np.std(values))}
        print(f"[ablation search] {variant}: {np.mean(values):.3f} ± {np.std(values):.3f}", flush=True)
    return out


# --- report -------------------------------------------------------------------------------------------
def markdown(results: dict[str, Any]) -> str:
    commands = results.get("commands", [results.get("command", "")])
    lines = ["# EDNAG measurements", "", "Commands (parts accumulate in one results file):", "",
             *[f"    {c}" for c in commands], "", f"Machine: {results['machine']}", "",
             "Protocol: one GIN per protocol (seed 0, configs/fits/nb201/gin.yaml settings) on the stated number of",
             "labels, which are not counted in the query budget; EDNAG seeds vary the search only (same predictor).",
             "TNB101 gap = (table best - found) / |table best|.", ""]
    if "timing" in results:
        t = results["timing"]
        lines += [f"## Generation wall time (NB201, T={t['steps']}, N=30, GIN fitness, CPU)", "",
                  "Median of the repeats; baseline: the same GIN scoring as many random architectures in one call.", "",
                  "| torch threads | score_threads | generation s | baseline s | architectures scored |", "|---|---|---|---|---|"]
        for k in ("threads_1", "threads_2_capped", "threads_2_uncapped"):
            if k in t:
                lines.append(f"| {t[k]['torch_threads']} | {t[k]['score_threads']} | {t[k]['generation_s']:.2f} | "
                             f"{t[k]['scoring_s']:.2f} | {t[k]['architectures_scored']:.0f} |")
        lines.append("")
    if "search" in results:
        lines += ["## Search: report metric of the best-by-objective architecture (mean ± std over seeds)", "",
                  "Predictor labels are outside the query budget; see the `labels` column.", "",
                  "| protocol | labels (GIN tau) | method | seeds | 50 | 100 | 150 |", "|---|---|---|---|---|---|---|"]
        for name, e in results["search"].items():
            pred = e["predictor"]
            for method, m in e["methods"].items():
                cells = []
                for b in map(str, BUDGETS):
                    f = m["at_queries"][b]
                    gap = f" (gap {f['gap_to_best_percent']:.2f} %)" if f and "gap_to_best_percent" in f else ""
                    cells.append(f"{f['mean']:.4g} ± {f['std']:.2g}{gap}" if f else "—")
                labels = f"{pred['labels']} ({pred['val_tau_1000']:.2f})" if method == "ednag" else "0"
                lines.append(f"| {name} | {labels} | {method} | {m['seeds']} | " + " | ".join(cells) + " |")
        lines.append("")
    if "ablation" in results:
        a = results["ablation"]
        lines += ["## Ablation (NB201 CIFAR-10)", "", "| variant | generator only, table fitness: best test acc | search, GIN fitness, 100 queries |",
                  "|---|---|---|"]
        for v in ABLATION:
            g, s = a["generator_only_table_fitness"][v], a["search_gin_fitness_100_queries"][v]
            lines.append(f"| {v} | {g['best_test_acc_mean']:.3f} ± {g['best_test_acc_std']:.3f} (n={g['seeds']}) | "
                         f"{s['mean']:.3f} ± {s['std']:.3f} (n={s['seeds']}) |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["timing", "search", "ablation"], choices=["timing", "search", "ablation"])
    parser.add_argument("--protocols", nargs="+", default=list(protocols()))
    parser.add_argument("--labels", type=int, default=156, help="GIN training labels on NB201 (1 %% of the space)")
    parser.add_argument("--labels-tnb", type=int, default=100, help="GIN training labels on TNB101-micro")
    parser.add_argument("--ednag-seeds", type=int, default=3)
    parser.add_argument("--baseline-seeds", type=int, default=20)
    parser.add_argument("--timing-repeats", type=int, default=3)
    parser.add_argument("--timing-steps", type=int, default=100, help="denoising steps T of a timed generation (paper: 100)")
    parser.add_argument("--ablation-generator-seeds", type=int, default=10)
    parser.add_argument("--ablation-search-seeds", type=int, default=3)
    add_script_arguments(parser)
    args = parser.parse_args(argv)
    global RESULTS, RUNS, SHARED
    RESULTS, RUNS = script_folders(args, "ednag")
    SHARED = shared_tables(args.shared)
    quiet()
    torch.set_num_threads(1)
    import os

    results_path = RESULTS / "ednag.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
    command = "python -m benchmarks.bench_ednag " + " ".join(argv if argv is not None else sys.argv[1:])
    results.pop("command", None)
    results.setdefault("commands", [])
    if command not in results["commands"]:
        results["commands"].append(command)  # parts accumulate in one results file
    results["machine"] = f"{os.cpu_count()} CPU cores shared with other jobs (load {os.getloadavg()[0]:.1f} at start); torch {torch.__version__}"
    RESULTS.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        results_path.write_text(json.dumps(results, indent=1))
        (RESULTS / "ednag.md").write_text(markdown(results))

    if "timing" in args.parts:
        results["timing"] = timing(args)
        save()
    if "search" in args.parts:
        results.setdefault("search", {})
        table = protocols()
        for name in args.protocols:
            results["search"][name] = run_protocol(name, table[name], args)
            save()
    if "ablation" in args.parts:
        results["ablation"] = ablation(args)
        save()
    print(f"results: {results_path} and {RESULTS / 'ednag.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
