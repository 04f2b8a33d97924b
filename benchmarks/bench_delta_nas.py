"""Delta-NAS measurements (Sridhar & Chen): proxy cost, predictor loss against k (paper Fig. 3),
difference against absolute encoding at 1% / 10% labels (paper Table 1), and search at 50 / 100 /
150 queries beside random search and regularized evolution (same script, same loop, same oracle).

    python -m benchmarks.bench_delta_nas                                   # every part
    python -m benchmarks.bench_delta_nas --parts kstudy table1 --seeds-table1 5

Zen-score values are read from the cache under checkpoints/proxy_cache/ (filled by the first run,
about 0.4 s per NB201 cell and 1.4 s per TNB101 cell on one busy CPU thread); a rerun reuses them.
Search settings are read from the configs (configs/methods/{delta_nas,rs,re}.yaml with the space's
file and the protocol, configs/protocols/); the predictor is
fitted by `lightning-nas fit` on configs/fits/<family>/delta_nas.yaml (Zen labels only, no benchmark
labels, so nothing is charged to the query budget). Runs are kept under benchmarks/runs/delta_nas/
and reused; results go to benchmarks/results/delta_nas.{json,md}.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.report.common import (CONFIGS, DEFAULT_SHARED, ROOT, add_script_arguments, quiet, script_folders,
                                      shared_tables)
from benchmarks.report.protocols import Protocol, protocol
from lightning_nas.predictors.evaluate import difference_tau, epochs_for, instantiate
from lightning_nas.search.surrogate import Surrogate
from lightning_nas.bench import config_arguments, resolved_config
from lightning_nas.training import quiet_trainer

RUNS, RESULTS = ROOT / "benchmarks" / "runs" / "delta_nas", ROOT / "benchmarks" / "results"  # or under --out
SHARED = DEFAULT_SHARED  # or --shared
BUDGETS = (50, 100, 150)
TNB_TASKS = ("class_scene", "class_object", "jigsaw", "segmentsemantic", "normal", "autoencoder", "room_layout")
PAPER_TABLE1 = {"nb201": {"0.01": 0.759, "0.1": 0.832}, "tnb101_micro": {"0.01": 0.692, "0.1": 0.845}}


# --- proxy cost -----------------------------------------------------------------------------------
def part_proxy_cost(args) -> dict[str, Any]:
    """Zen on freshly drawn cells, timed without the cache; and what the cache holds."""
    from lightning_nas.proxies.zero_cost import ProxyBatch, score_architecture
    from lightning_nas.spaces.base import get_space

    out = {}
    for space_name in ("nb201", "tnb101_micro"):
        space, rng = get_space(space_name), np.random.default_rng(123)
        batch = ProxyBatch.gaussian((3, 32, 32), 8, 10, 0)
        seconds = []
        for _ in range(args.cost_samples):
            start = time.perf_counter()
            score_architecture(space.sample(rng), "zen", batch, 0, 10)
            seconds.append(time.perf_counter() - start)
        cached = sum(len(json.loads(p.read_text())["values"]) for p in (ROOT / "checkpoints/proxy_cache").glob(f"{space_name}_zen_*.json"))
        out[space_name] = {"zen_s_per_arch_median": float(np.median(seconds)), "zen_s_per_arch_max": float(np.max(seconds)),
                           "timed": len(seconds), "architectures_in_cache": cached}
        print(f"proxy cost {space_name}: {np.median(seconds):.2f} s per cell (median of {len(seconds)}), {cached} cached", flush=True)
    return out


# --- predictor loss against k (Fig. 3) ------------------------------------------------------------
def cross_validated_loss(dm, folds: int, steps: int, seed: int) -> dict[str, Any]:
    """k-fold over encodings: MSE of labels scaled by the training folds' RMS (1.0 = predicting 0)."""
    from scipy.stats import kendalltau

    from lightning_nas.data.difference import difference_loader, rms
    from lightning_nas.predictors.difference import DifferencePredictor

    order = np.random.default_rng(seed).permutation(len(dm.labels))
    losses, taus = [], []
    for fold in np.array_split(order, folds):
        train = np.setdiff1d(order, fold)
        scale = rms(dm.labels[train])
        torch.manual_seed(seed)
        model = DifferencePredictor(space=dm.hparams.space, encoding=dm.hparams.encoding)
        loader = difference_loader(dm.x[train], dm.labels[train] / scale, 32, True, seed)
        quiet_trainer(epochs_for(steps, len(train), 32)).fit(model, loader)
        with torch.no_grad():
            pred = model.predict_x(torch.as_tensor(dm.x[fold])).numpy()
        truth = dm.labels[fold] / scale
        losses.append(float(np.mean((pred - truth) ** 2)))
        taus.append(float(kendalltau(pred, truth).statistic))
    return {"loss_mean": float(np.mean(losses)), "fold_losses": losses,
            "tau_mean": float(np.nanmean(taus)), "encodings": int(len(dm.labels))}


def part_kstudy(args) -> dict[str, Any]:
    from lightning_nas.proxies.difference import DifferenceDataModule

    nb201, tnb = protocol("nb201-cifar10"), protocol("tnb101-class_scene")
    sources = {
        "nb201": {"zen": {}, nb201.target: {"benchmark": nb201.benchmark(SHARED), "target": nb201.target}},
        "tnb101_micro": {"zen": {}, tnb.target: {"benchmark": tnb.benchmark(SHARED), "target": tnb.target}},
    }
    out: dict[str, Any] = {}
    for space, by_label in sources.items():
        for label, extra in by_label.items():
            # Zen labels: one draw (seed 0, the cached cells); table labels are free: several draws
            draws = 1 if label == "zen" else args.kstudy_draws
            encodings = args.zen_encodings if label == "zen" else args.table_encodings
            for k in (1, 2, 3):
                folds = []
                for draw in range(draws):
                    dm = DifferenceDataModule(space=space, k=k, num_encodings=encodings, samples_per_encoding=4, seed=draw,
                                              val_fraction=0.0, cache_dir=str(ROOT / "checkpoints/proxy_cache"), **extra)
                    dm.setup()
                    folds.append(cross_validated_loss(dm, args.folds, args.kstudy_steps, seed=draw))
                result = {key: float(np.mean([f[key] for f in folds])) for key in ("loss_mean", "tau_mean")}
                result.update(loss_std=float(np.std([x for f in folds for x in f["fold_losses"]])),
                              encodings=folds[0]["encodings"], draws=draws)
                out.setdefault(space, {}).setdefault(label, {})[str(k)] = result
                print(f"k-study {space} {label} k={k}: loss {result['loss_mean']:.3f} ± {result['loss_std']:.3f}, "
                      f"tau {result['tau_mean']:.3f} ({result['encodings']} encodings x {draws} draws)", flush=True)
    return out


# --- Table 1: difference against absolute encoding ---------------------------------------------------
def ranking_tau(benchmark, target: str, fraction: float, mode: str, seed: int, args) -> float:
    return difference_tau(benchmark, target, fraction, seed, mode=mode, encoding=args.encoding, steps=args.table1_steps,
                          max_pairs=args.max_pairs, num_anchors=args.num_anchors)["tau"]


def part_table1(args) -> dict[str, Any]:
    setups = [("nb201", str(SHARED / "nb201_200ep.csv.gz"), ["cifar10_valid_valid_acc"], args.seeds_table1),
              ("tnb101_micro", str(SHARED / "tnb101_micro.csv.gz"), [f"{t}_valid" for t in TNB_TASKS], 1)]
    setups = [s for s in setups if s[0] in args.table1_spaces]
    out: dict[str, Any] = {}
    for space, benchmark, targets, seeds in setups:
        for fraction in (0.01, 0.1):
            for mode in ("difference", "absolute"):
                per_target = {}
                for target in targets:
                    start = time.perf_counter()
                    taus = [ranking_tau(benchmark, target, fraction, mode, s, args) for s in range(seeds)]
                    per_target[target] = {"tau_mean": float(np.mean(taus)), "tau_std": float(np.std(taus)), "seeds": seeds}
                    print(f"table1 {space} {target} {fraction:.0%} {mode}: tau {np.mean(taus):.3f} ± {np.std(taus):.3f} "
                          f"({time.perf_counter() - start:.0f} s)", flush=True)
                mean = float(np.mean([v["tau_mean"] for v in per_target.values()]))
                out.setdefault(space, {}).setdefault(str(fraction), {})[mode] = {"tau": mean, "per_target": per_target}
    return out


# --- search ---------------------------------------------------------------------------------------------
def search_protocols(args) -> dict[str, Protocol]:
    """The protocols of the search part under this script's names (its results keep them)."""
    names = {"nb201_cifar10": "nb201-cifar10", "nb201_cifar100": "nb201-cifar100", "nb201_imagenet16": "nb201-imagenet16",
             **{f"tnb101_{t}": f"tnb101-{t}" for t in args.tnb_tasks}}
    return {name: protocol(p) for name, p in names.items()}


def search_config(chosen: Protocol, method: str) -> dict[str, Any]:
    """The resolved search config of configs/methods/<method>.yaml on `chosen`, tables read from SHARED."""
    return resolved_config(["search", *config_arguments(chosen.configs(method)), *chosen.overrides(SHARED)])


def build(spec: dict[str, Any] | None):
    return None if spec is None else instantiate(spec)


def ensure_predictor(chosen: Protocol, config: dict[str, Any], fitted: set[str]) -> None:
    """Fit the predictor a search config names, once per bench run, with its family's fit config."""
    from lightning_nas.cli import main

    ckpt = config["ckpt_path"]
    if ckpt in fitted:
        return
    fit = CONFIGS / "fits" / chosen.family / "delta_nas.yaml"
    start = time.perf_counter()
    if main(["fit", "--config", str(fit), "--trainer.enable_progress_bar", "false"]) != 0:
        raise RuntimeError(f"fit of {fit} failed")
    print(f"fitted {fit} -> {ckpt} ({time.perf_counter() - start:.0f} s)", flush=True)
    fitted.add(ckpt)


def method_configs(chosen: Protocol, fitted: set[str], with_finetune: bool) -> dict[str, dict[str, Any]]:
    delta = search_config(chosen, "delta_nas")
    ensure_predictor(chosen, delta, fitted)
    methods = {name: {**search_config(chosen, name.lower()), "ask_batch": 1} for name in ("RS", "RE")}
    methods["Delta-NAS"] = delta
    if with_finetune:
        tuned = copy.deepcopy(delta)
        tuned["strategy"]["init_args"]["finetune"] = True
        methods["Delta-NAS (fine-tuned)"] = tuned
    return methods


def with_wall_time(results: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A run's results and its search wall time (kept in timing.json, apart from results.json)."""
    from lightning_nas.search.statistics import wall_time

    return {**results, "wall_time_s": wall_time(run_dir)}


def run_one(config: dict[str, Any], seed: int, budget: int, run_dir: Path) -> dict[str, Any]:
    from lightning_nas.search.runner import run_search

    results = run_dir / "results.json"
    if results.is_file():
        stored = json.loads(results.read_text())
        if len(stored["queries"]) >= budget:
            return with_wall_time(stored, run_dir)
    torch.manual_seed(seed)
    model = build(config.get("model"))
    return with_wall_time(run_search(
        datamodule=build(config["data"]), strategy=build(config["strategy"]), model=model,
        ckpt_path=config.get("ckpt_path") if model is not None else None, budget=budget,
        report=config.get("report", []), run_dir=str(run_dir), ask_batch=int(config.get("ask_batch", 1)),
        finetune_epochs=int(config.get("finetune_epochs", 20)), seed=seed, progress=False, config=config,
    ), run_dir)


class RandomGains(Surrogate):
    """Ablation: a gain surrogate whose 'predicted gains' are noise, so DeltaNAS becomes a local search
    that tries neighbours in random order (same acceptance, re-sampling and budget)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def gains(self, base, candidates) -> torch.Tensor:
        return torch.as_tensor(self.rng.random(len(candidates)))

    def fit_gains(self, *args) -> bool:
        return False  # noise learns nothing

    def score(self, archs) -> torch.Tensor:
        return torch.as_tensor(self.rng.random(len(archs)))

    def update(self, archs, y) -> None:
        pass


def run_random_gain_ablation(config: dict[str, Any], seed: int, budget: int, run_dir: Path) -> dict[str, Any]:
    from lightning_nas.benchmarks.oracle import TabularOracle
    from lightning_nas.search.loop import SearchLoop

    results = run_dir / "results.json"
    if results.is_file() and len(json.loads(results.read_text())["queries"]) >= budget:
        return with_wall_time(json.loads(results.read_text()), run_dir)
    data = build(config["data"])
    data.load()
    oracle = TabularOracle(data.benchmark, data.hparams.target, config["report"], budget)
    init = dict(config["strategy"]["init_args"], min_gain=None)  # noise has no "predicted local optimum"
    strategy = build({"class_path": config["strategy"]["class_path"], "init_args": init})
    loop = SearchLoop(strategy, oracle, run_dir, seed=seed, ask_batch=int(config["ask_batch"]),
                      surrogate=RandomGains(seed), progress=False)
    return with_wall_time(loop.run(), run_dir)


def summarize(runs: list[dict[str, Any]], report: str, optimum: str) -> dict[str, Any]:
    from lightning_nas.search.statistics import best_after

    out = {}
    for b in BUDGETS:
        bests = [best_after(r, b) for r in runs]
        values = [x["report"][report] for x in bests]
        out[str(b)] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                       "found_optimum": float(np.mean([x["arch"] == optimum for x in bests])), "seeds": len(values)}
    out["wall_time_s_mean"] = float(np.mean([r["wall_time_s"] for r in runs]))
    return out


def part_search(args) -> dict[str, Any]:
    from lightning_nas.benchmarks.archive import Benchmark

    fitted: set[str] = set()
    out: dict[str, Any] = {}
    for name, chosen in search_protocols(args).items():
        bench = Benchmark.load(chosen.benchmark(SHARED))
        key, _ = bench.best(chosen.target)
        space = bench.space
        optimum = str(getattr(space, "from_key", space.from_string)(key))
        with_finetune = name == "nb201_cifar10"
        for method, config in method_configs(chosen, fitted, with_finetune).items():
            start = time.perf_counter()
            runs = [run_one(config, s, max(BUDGETS), RUNS / name / method.replace(" ", "_") / f"seed_{s}")
                    for s in range(args.search_seeds)]
            record(out, name, chosen.report[0], method, runs, optimum, start)
        if chosen.family == "nb201":
            start, method = time.perf_counter(), "ablation: random-order local search"
            delta = search_config(chosen, "delta_nas")
            runs = [run_random_gain_ablation(delta, s, max(BUDGETS), RUNS / name / "random_gains" / f"seed_{s}")
                    for s in range(args.search_seeds)]
            record(out, name, chosen.report[0], method, runs, optimum, start)
    return out


def record(out: dict, name: str, report: str, method: str, runs: list, optimum: str, start: float) -> None:
    summary = summarize(runs, report, optimum)
    out.setdefault(name, {"report": report})[method] = summary
    figures = "  ".join(f"{b}: {summary[str(b)]['mean']:.3f} ± {summary[str(b)]['std']:.3f}" for b in BUDGETS)
    print(f"search {name} {method}: {figures} ({time.perf_counter() - start:.0f} s)", flush=True)


# --- output ------------------------------------------------------------------------------------------
def write_markdown(data: dict[str, Any]) -> str:
    lines = ["# Delta-NAS measurements", "",
             f"Generated by `python -m benchmarks.bench_delta_nas`; torch {torch.__version__}. Each part was measured by its own "
             "command (search runs under benchmarks/runs/delta_nas/ are reused by reruns):", ""]
    for key, p in data.get("provenance", {}).items():
        lines.append(f"- {key}: `{p['command']}` — {p['wall_time_s']:.0f} s wall; {p['machine']}")
    lines.append("")
    if "proxy_fill" in data:
        fill = data["proxy_fill"]
        lines += [f"Zen-score values computed for the DoA datasets (once, then cached): {fill['cells']} cells in "
                  f"{fill['proxy_seconds']:.0f} s of proxy time ({fill['detail']}).", ""]
    if "proxy_cost" in data:
        lines += ["## Zero-cost proxy cost (Zen-score, batch 8 of 3x32x32 Gaussian inputs, one CPU thread)", "",
                  "| space | s per cell (median) | max | architectures in the cache |", "|---|---|---|---|"]
        for space, v in data["proxy_cost"].items():
            lines.append(f"| {space} | {v['zen_s_per_arch_median']:.2f} | {v['zen_s_per_arch_max']:.2f} | {v['architectures_in_cache']} |")
        lines.append("")
    if "kstudy" in data:
        lines += ["## Predictor loss against edit distance k (paper Fig. 3)", "",
                  "Held-out MSE of labels scaled by the training folds' RMS (1.0 = always predicting no change), "
                  f"{data['provenance']['kstudy']['settings']['folds']}-fold cross-validation over encodings (± = std over folds and draws); "
                  "tau = Kendall tau on the held-out fold. Zen labels: one draw of cached cells; table labels: several draws.", "",
                  "| space | labels | k = 1 | k = 2 | k = 3 | encodings per k x draws |", "|---|---|---|---|---|---|"]
        for space, by_label in data["kstudy"].items():
            for label, by_k in by_label.items():
                cells = [f"{by_k[k]['loss_mean']:.3f} ± {by_k[k]['loss_std']:.3f} (tau {by_k[k]['tau_mean']:.2f})" for k in ("1", "2", "3")]
                lines.append(f"| {space} | {label} | {' | '.join(cells)} | {by_k['1']['encodings']} x {by_k['1'].get('draws', 1)} |")
        lines.append("")
    for key in sorted(k for k in data if k.startswith("table1")):
        encoding = key.partition("_")[2] or "adjacency"
        lines += [f"## Difference against absolute encoding (paper Table 1), {encoding} encoding", "",
                  "Kendall tau between the ranking a predictor induces on every held-out architecture and the real one. "
                  "Same MLP, same encoding, same labelled split; `difference` trains on ordered pairs of labelled "
                  "architectures and ranks by anchors, `absolute` regresses the label. NB201: cifar10_valid_valid_acc, "
                  "mean over split seeds; TNB101 micro: mean over its seven tasks (one split seed each).", "",
                  "| space | labelled | difference (ours) | absolute (same network) | paper DoA |", "|---|---|---|---|---|"]
        for space, by_fraction in data[key].items():
            for fraction, modes in by_fraction.items():
                paper = PAPER_TABLE1.get(space, {}).get(fraction, float("nan"))
                lines.append(f"| {space} | {float(fraction):.0%} | {modes['difference']['tau']:.3f} | "
                             f"{modes['absolute']['tau']:.3f} | {paper:.3f} |")
        lines.append("")
    if "search" in data:
        lines += ["## Search (mean ± std over seeds of the reported metric of the best-by-validation architecture)", ""]
        for protocol, methods in data["search"].items():
            report = methods["report"]
            lines += [f"### {protocol} (report {report})", "",
                      "| method | 50 | 100 | 150 | found optimum @100 | seeds | s per run |", "|---|---|---|---|---|---|---|"]
            for method, s in methods.items():
                if method == "report":
                    continue
                cells = " | ".join(f"{s[str(b)]['mean']:.3f} ± {s[str(b)]['std']:.3f}" for b in BUDGETS)
                lines.append(f"| {method} | {cells} | {s['100']['found_optimum']:.2f} | {s['100']['seeds']} | {s['wall_time_s_mean']:.1f} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["proxy_cost", "kstudy", "table1", "search"],
                        choices=["proxy_cost", "kstudy", "table1", "search"])
    parser.add_argument("--cost-samples", type=int, default=5)
    parser.add_argument("--zen-encodings", type=int, default=30, help="k-study: Zen-labelled encodings per k")
    parser.add_argument("--table-encodings", type=int, default=36,
                        help="k-study: table-labelled encodings per k (36 = |D^1| of TNB101, so every k gets as many)")
    parser.add_argument("--kstudy-draws", type=int, default=2, help="k-study: dataset draws for table labels")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--kstudy-steps", type=int, default=400)
    parser.add_argument("--seeds-table1", type=int, default=3)
    parser.add_argument("--table1-steps", type=int, default=1500)
    parser.add_argument("--max-pairs", type=int, default=50_000)
    parser.add_argument("--num-anchors", type=int, default=64)
    parser.add_argument("--encoding", default="adjacency", help="table1: architecture encoding of both twins")
    parser.add_argument("--table1-spaces", nargs="+", default=["nb201", "tnb101_micro"])
    parser.add_argument("--search-seeds", type=int, default=20)
    parser.add_argument("--tnb-tasks", nargs="*", default=["class_scene", "class_object"])
    add_script_arguments(parser)
    args = parser.parse_args(argv)
    global RESULTS, RUNS, SHARED
    RESULTS, RUNS = script_folders(args, "delta_nas")
    SHARED = shared_tables(args.shared)
    quiet()
    torch.set_num_threads(1)
    import os

    os.chdir(ROOT)  # configs name ../shared and checkpoints/ relative to the project root
    path = RESULTS / "delta_nas.json"
    command = "python -m benchmarks.bench_delta_nas " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = f"{os.cpu_count()} CPU cores shared with other jobs (load {os.getloadavg()[0]:.1f} at start), 1 torch thread"
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "parts"}
    parts = {"proxy_cost": part_proxy_cost, "kstudy": part_kstudy, "table1": part_table1, "search": part_search}
    for name in args.parts:
        key = name if name != "table1" or args.encoding == "adjacency" else f"table1_{args.encoding}"
        start = time.perf_counter()
        result = parts[name](args)
        # another bench process may have written other parts meanwhile: merge into the file's state
        data = json.loads(path.read_text()) if path.is_file() else {}
        data[key] = result
        data.setdefault("provenance", {})[key] = {"command": command, "machine": machine, "settings": settings,
                                                  "wall_time_s": round(time.perf_counter() - start, 1)}
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1))
        (RESULTS / "delta_nas.md").write_text(write_markdown(data))
    print(f"results: {path} and {RESULTS / 'delta_nas.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
