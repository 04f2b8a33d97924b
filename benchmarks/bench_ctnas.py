"""CTNAS measurements for issue 4, written to benchmarks/results/ctnas.{json,md}.

predictor: the NAC's held-out Kendall tau and pairwise accuracy on NB201 (1% and 10% labelled,
    target cifar10_valid_valid_acc) and NB101 (424 labelled, valid_acc_108ep of the 30k table),
    beside the GIN regression baseline, several data seeds each.
search: CTNAS, random search and regularized evolution through the `search` CLI on the three
    NB201 protocols, the same seeds for every method, best-by-validation after 50/100/150 queries.

    python -m benchmarks.bench_ctnas --parts predictor --predictor-seeds 5 [--settings nb101_424]
    python -m benchmarks.bench_ctnas --parts search --search-seeds 5 --workers 2

Every run uses one torch thread. Finished search seeds are reused (their run folders stay under
benchmarks/runs/ctnas/), so an interrupted run resumes; each part merges its results into the JSON.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.report.common import CONFIGS, ROOT, add_script_arguments, script_folders, shared_tables
from benchmarks.report.protocols import protocol
from lightning_nas.io import atomic_write

RESULTS = ROOT / "benchmarks" / "results"  # or under --out
JSON_PATH = RESULTS / "ctnas.json"

FITS = CONFIGS / "fits"
PREDICTOR_SETTINGS = {
    # name: (protocol, num_labelled, NAC epochs, NAC fit config, GIN fit config)
    "nb201_1pct": ("nb201-cifar10", 0.01, 200, FITS / "nb201" / "ctnas.yaml", FITS / "nb201" / "gin.yaml"),
    "nb201_10pct": ("nb201-cifar10", 0.1, 60, FITS / "nb201" / "ctnas.yaml", FITS / "nb201" / "gin.yaml"),
    "nb101_424": ("nb101", 424, 200, FITS / "nb101" / "ctnas.yaml", FITS / "nb101" / "gin.yaml"),
}
GIN_EPOCHS = 100  # configs/fits/nb201/gin.yaml
PROTOCOLS = {"cifar10": "nb201-cifar10", "cifar100": "nb201-cifar100", "imagenet16": "nb201-imagenet16"}
METHODS = {"CTNAS": "ctnas", "RS": "rs", "RE": "re"}  # configs/methods/<file>.yaml


# --- predictor part ------------------------------------------------------------------------
def fit_and_test(setting: str, model_name: str, seed: int, shared: Path) -> dict:
    import torch

    from lightning_nas.predictors.evaluate import config_tau

    torch.set_num_threads(1)
    name, labelled, nac_epochs, nac_config, gin_config = PREDICTOR_SETTINGS[setting]
    config, epochs = (nac_config, nac_epochs) if model_name == "NAC" else (gin_config, GIN_EPOCHS)
    data = protocol(name)
    r = config_tau(config, labelled, seed, epochs, {"benchmark": data.benchmark(shared), "target": data.target, "batch_size": 64})
    return {"setting": setting, "model": model_name, "seed": seed, "labelled": r["labelled"], "heldout": r["heldout"],
            "epochs": epochs, "test_tau": r["tau"], "test_pair_acc": r.get("test_pair_acc"), "fit_s": round(r["fit_s"], 1)}


def predictor_part(settings: list[str], seeds: int, workers: int, shared: Path) -> dict:
    jobs = [(s, m, seed, shared) for s in settings for m in ("NAC", "GIN") for seed in range(seeds)]
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        rows = list(pool.map(fit_and_test, *zip(*jobs)))
    summary = {}
    for s in settings:
        for m in ("NAC", "GIN"):
            mine = [r for r in rows if r["setting"] == s and r["model"] == m]
            entry = {"seeds": len(mine), "tau_mean": float(np.mean([r["test_tau"] for r in mine])),
                     "tau_std": float(np.std([r["test_tau"] for r in mine])),
                     "labelled": mine[0]["labelled"], "heldout": mine[0]["heldout"], "epochs": mine[0]["epochs"]}
            if m == "NAC":
                entry["pair_acc_mean"] = float(np.mean([r["test_pair_acc"] for r in mine]))
                entry["pair_acc_std"] = float(np.std([r["test_pair_acc"] for r in mine]))
            summary[f"{s}/{m}"] = entry
    return {"runs": rows, "summary": summary}


# --- search part ---------------------------------------------------------------------------
def search_jobs(seeds: int, out: Path, budget: int, shared: Path) -> list[tuple]:
    jobs = []
    for name, protocol_name in PROTOCOLS.items():
        chosen = protocol(protocol_name)
        for method, config in METHODS.items():
            configs = [str(c) for c in chosen.configs(config)]
            for seed in range(seeds):
                run_dir = out / name / method / f"seed_{seed}"
                jobs.append((configs, seed, budget, str(run_dir), chosen.overrides(shared)))
    return jobs


def run_search_job(configs: list[str], seed: int, budget: int, run_dir: str, extra: list[str]) -> str:
    import os

    os.chdir(ROOT)  # configs name checkpoints/ relative to the project root
    from lightning_nas.bench import run_one

    return run_one(configs, seed, budget, run_dir, extra)


def search_part(seeds: int, workers: int, out: Path, budgets: list[int], shared: Path) -> dict:
    from lightning_nas.search.statistics import best_after, wall_time

    jobs = search_jobs(seeds, out, max(budgets), shared)
    # the slow CTNAS runs first, so the cheap baselines fill the gaps at the end
    jobs.sort(key=lambda job: "CTNAS" not in job[3])
    start = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(run_search_job, *zip(*jobs)))
    wall = time.perf_counter() - start
    summary: dict = {}
    for name, protocol_name in PROTOCOLS.items():
        report = protocol(protocol_name).report[0]
        for method in METHODS:
            run_dirs = [out / name / method / f"seed_{s}" for s in range(seeds)]
            runs = [json.loads((d / "results.json").read_text()) for d in run_dirs]
            entry = {"seeds": seeds, "wall_time_s_mean": float(np.mean([wall_time(d) for d in run_dirs]))}
            for b in budgets:
                values = [best_after(r, b)["report"][report] for r in runs]
                entry[str(b)] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
            if method == "CTNAS":
                entry["strategy_stats"] = [r["strategy_stats"] for r in runs]
            summary[f"{name}/{method}"] = entry
    return {"summary": summary, "budgets": budgets, "wall_s": round(wall, 1), "run_dirs": str(out)}


# --- outputs -------------------------------------------------------------------------------
def write_markdown(results: dict, path: Path) -> None:
    lines = ["# CTNAS measurements (issue 4)", "",
             "Produced by `python -m benchmarks.bench_ctnas`; tables from `../shared/benchmarks`. CPU only, one torch thread per run.", ""]
    pred = results.get("predictor")
    if pred:
        lines += ["## Predictor: Kendall tau over all held-out architectures", "",
                  "| setting | labelled | held-out | NAC tau | NAC pairwise acc. | GIN tau | seeds |", "|---|---|---|---|---|---|---|"]
        for s in PREDICTOR_SETTINGS:
            nac, gin = pred["summary"][f"{s}/NAC"], pred["summary"][f"{s}/GIN"]
            lines.append(f"| {s} | {nac['labelled']} | {nac['heldout']} | {nac['tau_mean']:.3f} ± {nac['tau_std']:.3f} | "
                         f"{nac['pair_acc_mean']:.3f} ± {nac['pair_acc_std']:.3f} | {gin['tau_mean']:.3f} ± {gin['tau_std']:.3f} | {nac['seeds']} |")
        epochs = ", ".join(f"{s} {pred['summary'][s + '/NAC']['epochs']}" for s in PREDICTOR_SETTINGS)
        lines += ["", f"NAC epochs: {epochs}; "
                  f"GIN: {GIN_EPOCHS} epochs (configs/fits/nb201/gin.yaml settings). NAC tau uses its comparison score "
                  "(mean P[a beats r] over a fixed 64-architecture reference set); pairwise accuracy is over all "
                  "ordered non-tied pairs inside each test batch of 64.", ""]
    search = results.get("search")
    if search:
        budgets = search["budgets"]
        lines += ["## Search: test accuracy of the best-by-validation architecture (mean ± std over seeds)", "",
                  "| protocol | method | " + " | ".join(f"{b} queries" for b in budgets) + " | seeds | wall s/run |",
                  "|---|---|" + "---|" * len(budgets) + "---|---|"]
        for key, entry in search["summary"].items():
            protocol, method = key.split("/")
            cells = " | ".join(f"{entry[str(b)]['mean']:.2f} ± {entry[str(b)]['std']:.2f}" for b in budgets)
            lines.append(f"| {protocol} | {method} | {cells} | {entry['seeds']} | {entry['wall_time_s_mean']:.1f} |")
        lines += ["", f"Search part wall time: {search['wall_s']} s.", ""]
    atomic_write(path, "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    global RESULTS, JSON_PATH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=["predictor", "search", "report"], default=["predictor", "search"],
                        help="report: only rewrite ctnas.md from ctnas.json")
    parser.add_argument("--predictor-seeds", type=int, default=5)
    parser.add_argument("--settings", nargs="+", choices=list(PREDICTOR_SETTINGS), default=list(PREDICTOR_SETTINGS),
                        help="predictor settings to measure; the others keep their stored results")
    parser.add_argument("--search-seeds", type=int, default=5)
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 150])
    parser.add_argument("--workers", type=int, default=2)
    add_script_arguments(parser)
    args = parser.parse_args(argv)
    shared = shared_tables(args.shared)
    RESULTS, runs = script_folders(args, "ctnas")
    JSON_PATH = RESULTS / "ctnas.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    if "predictor" in args.parts:
        start = time.perf_counter()
        part = predictor_part(args.settings, args.predictor_seeds, args.workers, shared)
        part["wall_s"] = round(time.perf_counter() - start, 1)
        merge_predictor_results(part)
    if "search" in args.parts:
        merge_results("search", search_part(args.search_seeds, args.workers, runs, sorted(args.budgets), shared))
    results = json.loads(JSON_PATH.read_text()) if JSON_PATH.is_file() else {}
    write_markdown(results, RESULTS / "ctnas.md")
    print((RESULTS / "ctnas.md").read_text())


def merge_results(part: str, value: dict) -> None:
    """Read, update one part, write: parts run in separate processes keep each other's results."""
    results = json.loads(JSON_PATH.read_text()) if JSON_PATH.is_file() else {}
    results[part] = value
    atomic_write(JSON_PATH, json.dumps(results, indent=1))


def merge_predictor_results(part: dict) -> None:
    """The measured settings replace their stored runs and summaries; the other settings stay."""
    stored = (json.loads(JSON_PATH.read_text()) if JSON_PATH.is_file() else {}).get("predictor", {})
    measured = {r["setting"] for r in part["runs"]}
    part["runs"] = [r for r in stored.get("runs", []) if r["setting"] not in measured] + part["runs"]
    part["summary"] = {**stored.get("summary", {}), **part["summary"]}
    merge_results("predictor", part)


if __name__ == "__main__":
    main()
