"""Zero-cost proxies on NAS-Bench-201 and live-training throughput, on this machine's CPU.

1. Cost: every proxy computed on its own (fresh network each) for `--cost-archs` random NB201
   architectures; seconds per architecture, median.
2. Rank correlation: all proxies for random NB201 architectures (drawn without replacement by
   `--seed`) until `--archs` are done or `--time-budget` seconds are spent; Spearman rho and
   Kendall tau of each proxy with `cifar10_valid_valid_acc` (200 epochs) of the shared table.
   Each architecture's scores are appended to a JSONL file the moment they exist, so an
   interrupted run keeps them (`--resume` continues it).
   Data: CIFAR-10 is not on this machine (and nothing is downloaded), so the data-dependent
   proxies read a real batch of scikit-learn digits upsampled to 32x32 and replicated to 3
   channels; the networks are the benchmark's own (C=16, N=5, 10 classes, 32x32 inputs).
3. Live training: architectures per minute of `LiveTrainingOracle` on digits, with the quick
   start's settings and with the full benchmark network.
4. With `--quickstart` (and nothing else): the wall time of `lightning-nas search --config
   configs/quickstart.yaml` in a fresh process and a fresh run directory, added to the results.

With `--darts`, the DARTS / NAS-Bench-301 part instead (`darts_main`): every proxy on the cells of
the shared `nb301_500` table, each on the network NASLib scored (`DARTS.network`, C = 32, 8 cells),
against NASLib's own score of the same proxy (its `zc_*` columns, computed on CIFAR-10) and against
`cifar10_valid_acc`; plus seconds per live-trained candidate of the shipped configs/darts/ searches.

Run: python -m benchmarks.bench_proxies [--archs 1000] [--time-budget 1200] [--batch-size 16]
     python -m benchmarks.bench_proxies --quickstart
     nice -n 10 python -m benchmarks.bench_proxies --darts [--archs 500] [--time-budget 18000] [--resume]
     python -m benchmarks.bench_proxies --darts --resume --time-budget 0   # results of the cells scored so far
Writes benchmarks/results/proxies.json and proxies.md (the scores: benchmarks/runs/proxies/scores.jsonl),
or with --darts proxies_darts.json and proxies_darts.md (scores: benchmarks/runs/proxies/darts_scores.jsonl).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from benchmarks.report.common import ROOT, add_script_arguments, script_folders, shared_tables
from lightning_nas.bench import resolved_config
from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.data.images import DigitsDataModule
from lightning_nas.proxies.live import LiveTrainingOracle
from lightning_nas.proxies.zero_cost import GRADIENT_PASS, PROXIES, ProxyBatch, score_architecture, score_proxies
from lightning_nas.spaces import get_space

TARGET = "cifar10_valid_valid_acc"
# What the issue quotes from NAS-Bench-Suite-Zero (Krishnakumar et al., 2022) for NB201 CIFAR-10.
SUITE_ZERO = "about 0.6-0.8 for the best proxies (synflow, nwot, jacov)"

DARTS_TABLE, DARTS_TARGET = "nb301_500.csv.gz", "cifar10_valid_acc"
#: NASLib scored NB301 with batches of 32 CIFAR-10 images: its `create_configs` default, and its jacov
#: scores of -32.4..-32.2 (jacov of n weakly correlated samples is about -n)
DARTS_BATCH = 32
#: our proxy -> the table's column of the same proxy as NAS-Bench-Suite-Zero computed it (NASLib code, CIFAR-10)
NASLIB_COLUMNS = {"params": "params_m", "flops": "flops_m", "synflow": "zc_synflow", "snip": "zc_snip",
                  "grad_norm": "zc_grad_norm", "jacov": "zc_jacov", "fisher": "zc_fisher", "grasp": "zc_grasp"}
#: NASLib's proxies we do not implement (their scores are in the table)
NASLIB_ONLY = ("zc_epe_nas", "zc_l2_norm", "zc_plain")
#: the config of the live-training oracle the seconds per candidate are measured with
DARTS_LIVE_CONFIG = ROOT / "configs" / "darts" / "task.yaml"
SUITE_ZERO_NB301 = (
    "NAS-Bench-Suite-Zero's published per-proxy Spearman figures for NB301 (Krishnakumar et al., 2022, the "
    "correlation heatmap) were not found in any text source the search tools reach (the paper gives them as a "
    "figure); that column is left out rather than guessed. `NASLib vs acc` is the same statistic computed from "
    "NASLib's own released scores in the table."
)


def proxy_batch(batch_size: int, seed: int) -> ProxyBatch:
    dm = DigitsDataModule(image_size=32, channels=3, seed=seed)
    return ProxyBatch(*dm.sample_batch(batch_size, seed=seed))


def measure_cost(archs, batch: ProxyBatch, seed: int) -> dict[str, float]:
    seconds: dict[str, list[float]] = {p: [] for p in PROXIES}
    for a in archs:
        for p in PROXIES:
            start = time.perf_counter()
            score_architecture(a, p, batch, seed)
            seconds[p].append(time.perf_counter() - start)
    return {p: statistics.median(v) for p, v in seconds.items()}


def score_until(archs, batch: ProxyBatch, seed: int, budget_s: float, log: Path) -> list[dict]:
    """Scores (and seconds) of all proxies per architecture, appended to `log` as they come; the
    budget counts the seconds already in `log`, so a resumed run stops where one run would."""
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    spent = sum(r["seconds"] for r in done)
    with log.open("a") as f:
        for a in archs[len(done):]:
            if spent > budget_s:
                break
            start = time.perf_counter()
            scores, cost = score_proxies(a, list(PROXIES), batch, seed)
            row = {"arch": str(a), "seconds": time.perf_counter() - start, **scores, "cost": cost}
            spent += row["seconds"]
            f.write(json.dumps(row) + "\n")
            f.flush()
            done.append(row)
            if len(done) % 25 == 0:
                print(f"  {len(done)} architectures scored, {spent:.0f} s", flush=True)
    return done


def correlations(rows: list[dict], bench: Benchmark) -> dict[str, dict[str, float]]:
    """Rank correlations over every scored architecture. A score of -inf (NWOT or Zen of a network
    whose output ignores its input) is kept: it ranks that architecture last, which is its meaning."""
    acc = np.array([bench.query(r["arch"], TARGET) for r in rows])
    out = {}
    for p in PROXIES:
        x = np.array([r[p] for r in rows], dtype=np.float64)
        ranks = stats.rankdata(x)
        out[p] = {
            "spearman": float(stats.spearmanr(ranks, acc).statistic),
            "kendall": float(stats.kendalltau(ranks, acc).statistic),
            "n": len(x),
            "n_minus_inf": int(np.isneginf(x).sum()),
        }
    return out


def live_throughput(space_archs, epochs: int, network: dict, count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        oracle = LiveTrainingOracle("nb201", DigitsDataModule(batch_size=64, seed=0), epochs=epochs,
                                    store=f"{tmp}/live.sqlite", network=network, threads=1)
        start = time.perf_counter()
        accs = [oracle.evaluate(a).score for a in space_archs[:count]]
        elapsed = time.perf_counter() - start
    return {"archs": count, "epochs": epochs, "network": network, "seconds": elapsed,
            "archs_per_minute": 60 * count / elapsed, "mean_val_acc": float(np.mean(accs))}


def time_quickstart() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "lightning_nas", "search", "--config", str(ROOT / "configs" / "quickstart.yaml"),
                   "--run_dir", tmp, "--oracle.init_args.store", f"{tmp}/evaluations.sqlite", "--progress", "false"]
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
        seconds = time.perf_counter() - start
        best = json.loads(Path(tmp, "results.json").read_text())["best"]
    return {"seconds": seconds, "best": best, "load_average_at_end": list(os.getloadavg()),
            "command": "lightning-nas search --config configs/quickstart.yaml"}


# --- DARTS / NAS-Bench-301 ---------------------------------------------------------------------
def darts_correlations(rows: list[dict], bench: Benchmark) -> dict[str, dict]:
    """Spearman rho of each of our proxies with the accuracy and with NASLib's score of the same proxy,
    and of NASLib's score with the accuracy, over the scored cells (NASLib's also over all 500)."""
    archs = [r["arch"] for r in rows]
    acc = np.array([bench.query(a, DARTS_TARGET) for a in archs])
    every_acc = bench.column(DARTS_TARGET)

    def rho(x, y) -> float:
        return float(stats.spearmanr(x, y, nan_policy="omit").statistic)

    out: dict[str, dict] = {}
    for p in PROXIES:
        ours = np.array([r[p] for r in rows], dtype=np.float64)
        entry = {"ours_vs_acc": rho(ours, acc), "n": len(ours), "n_nonfinite": int((~np.isfinite(ours)).sum()),
                 "cost_s": statistics.median(r["cost"][p] for r in rows)}
        if p in NASLIB_COLUMNS:
            theirs = np.array([bench.query(a, NASLIB_COLUMNS[p]) for a in archs])
            entry.update(naslib_column=NASLIB_COLUMNS[p], ours_vs_naslib=rho(ours, theirs),
                         naslib_vs_acc=rho(theirs, acc), naslib_vs_acc_all=rho(bench.column(NASLIB_COLUMNS[p]), every_acc))
        out[p] = entry
    for column in NASLIB_ONLY:
        theirs = np.array([bench.query(a, column) for a in archs])
        out[column.removeprefix("zc_")] = {"naslib_column": column, "naslib_vs_acc": rho(theirs, acc),
                                           "naslib_vs_acc_all": rho(bench.column(column), every_acc), "n": len(theirs)}
    return out


def darts_live_oracle(store: str) -> LiveTrainingOracle:
    """The live-training oracle of the shipped DARTS searches (configs/darts/task.yaml), storing in `store`."""
    from jsonargparse import ArgumentParser

    from lightning_nas.benchmarks.oracle import Oracle

    config = resolved_config(["search", "--config", str(DARTS_LIVE_CONFIG)])["oracle"]
    config["init_args"]["store"] = store
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--oracle", type=Oracle)
    return parser.instantiate_classes(parser.parse_object({"oracle": config})).oracle


def darts_live_seconds(count: int, seed: int) -> dict:
    """Seconds per candidate of the shipped DARTS live oracle, on `count` uniformly drawn cells."""
    space = get_space("darts")
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        oracle = darts_live_oracle(f"{tmp}/live.sqlite")
        evaluations = [oracle.evaluate(a) for a in archs]
    seconds = [e.report["train_time_s"] for e in evaluations]
    return {"config": str(DARTS_LIVE_CONFIG.relative_to(ROOT)), "archs": count, "epochs": oracle.epochs,
            "network": oracle.network, "threads": oracle.threads, "data": type(oracle.datamodule).__name__,
            "seconds_per_candidate": {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds)},
            "params": [int(e.report["params"]) for e in evaluations],
            "val_acc": [round(e.score, 2) for e in evaluations], "test_acc": [round(e.report["test_acc"], 2) for e in evaluations]}


def darts_main(args: argparse.Namespace, argv: list[str] | None, results_folder: Path, runs: Path) -> None:
    start = time.perf_counter()
    bench = Benchmark.load(shared_tables(args.shared) / DARTS_TABLE)
    all_archs = bench.archs()
    order = np.random.default_rng(args.seed).permutation(len(all_archs))[: args.archs]
    archs = [all_archs[i] for i in order]
    batch_size = args.batch_size or DARTS_BATCH
    batch = proxy_batch(batch_size, args.seed)
    log = runs / "darts_scores.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        log.unlink(missing_ok=True)
    print(f"all proxies on up to {len(archs)} NB301 cells within {args.time_budget:.0f} s", flush=True)
    rows = score_until(archs, batch, args.seed, args.time_budget, log)
    live = darts_live_seconds(args.live_archs, args.seed) if args.live_archs else {}
    results = {
        "command": f"{'nice -n %d ' % os.nice(0) if os.nice(0) else ''}python -m benchmarks.bench_proxies "
                   + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"torch_threads": args.threads, "niceness": os.nice(0), "cpu_cores": os.cpu_count(),
                    "load_average_at_end": list(os.getloadavg()),
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)},
        "table": DARTS_TABLE, "target": DARTS_TARGET,
        "proxy_batch": {"data": "sklearn digits, 32x32 bilinear, 3 channels", "batch_size": batch_size, "seed": args.seed},
        "network": "DARTS.network defaults: NASLib's NB301 network, C = 32, 8 cells, 10 classes",
        "scored": {"archs": len(rows), "of": len(all_archs), "scoring_s": sum(r["seconds"] for r in rows),
                   "this_invocation_s": time.perf_counter() - start,
                   "median_s_per_arch": statistics.median(r["seconds"] for r in rows) if rows else None},
        "correlation": darts_correlations(rows, bench) if rows else {},
        "suite_zero_published": SUITE_ZERO_NB301,
        "live_training": live,
    }
    results_folder.mkdir(parents=True, exist_ok=True)
    (results_folder / "proxies_darts.json").write_text(json.dumps(results, indent=1))
    (results_folder / "proxies_darts.md").write_text(darts_markdown(results))
    print(darts_markdown(results))


def darts_table(r: dict) -> list[str]:
    """The proxy table (markdown lines): Spearman rho per proxy, n cells, median seconds per cell."""
    lines = ["| proxy | n | ours vs acc | ours vs NASLib | NASLib vs acc (same cells) | NASLib vs acc (all 500) | "
             "our s/cell (median) | non-finite |", "|---|---|---|---|---|---|---|---|"]

    def cell(entry: dict, key: str) -> str:
        return f"{entry[key]:.3f}" if key in entry else "—"

    for p, v in r["correlation"].items():
        name = f"{p} (`{v['naslib_column']}`)" if "naslib_column" in v else p
        cost = f"{v['cost_s']:.2f}" if "cost_s" in v else "—"
        lines.append(f"| {name} | {v['n']} | {cell(v, 'ours_vs_acc')} | {cell(v, 'ours_vs_naslib')} | {cell(v, 'naslib_vs_acc')} | "
                     f"{cell(v, 'naslib_vs_acc_all')} | {cost} | {v.get('n_nonfinite', '—')} |")
    return lines


def darts_markdown(r: dict) -> str:
    s, m = r["scored"], r["machine"]
    lines = [
        "# Zero-cost proxies on DARTS / NAS-Bench-301 cells",
        "",
        f"Command: `{r['command']}` (niceness {m['niceness']}, {m['torch_threads']} torch thread); this invocation "
        f"{s['this_invocation_s']:.0f} s; scoring {s['archs']} of the {s['of']} cells of `{r['table']}` took "
        f"{s['scoring_s']:.0f} s in all (resumed invocations included), median {s['median_s_per_arch'] or 0:.1f} s per "
        f"cell for all proxies; peak memory {m['peak_rss_mb']} MB. Machine: {m['cpu_cores']} CPU cores shared with "
        f"other jobs (load average at the end {', '.join(f'{v:.1f}' for v in m['load_average_at_end'])}).",
        "",
        f"Networks: {r['network']} (its parameter count and FLOPs equal the table's for every cell). Our "
        f"data-dependent proxies read one batch of {r['proxy_batch']['batch_size']} {r['proxy_batch']['data']} "
        "(CIFAR-10 is not on this machine); NASLib's read a batch of 32 CIFAR-10 images. Spearman rho over the "
        "scored cells; `NASLib vs acc` uses NASLib's released scores. Snip, grad_norm, fisher and nwot share one "
        f"forward/backward pass (each is charged a quarter of it). Target: `{r['target']}`.",
        "",
        f"**n = {s['archs']} of {s['of']} cells**: all ten proxies on NASLib's full-size network cost a median "
        f"{s['median_s_per_arch'] or 0:.0f} s per cell on one CPU thread here (grasp alone "
        f"{r['correlation'].get('grasp', {}).get('cost_s', 0):.0f} s), so the whole table is out of reach on this "
        "machine; the cells are the first of a seeded random order of the table (`--seed`), and `--resume` with a "
        "larger `--time-budget` (seconds in all, earlier invocations included) scores more. Only the `all 500` "
        "column uses every cell (NASLib's released scores).",
        "",
        *darts_table(r),
        "",
        r["suite_zero_published"],
    ]
    live = r["live_training"]
    if live:
        sec = live["seconds_per_candidate"]
        lines += ["", "## Live training of DARTS cells", "",
                  f"The oracle of `{live['config']}` (every configs/darts/ search composes it): {live['data']}, "
                  f"{live['epochs']} epochs, network {live['network']}, {live['threads']} torch thread. Seconds per "
                  f"candidate over {live['archs']} random cells: median {sec['median']:.1f} (min {sec['min']:.1f}, "
                  f"max {sec['max']:.1f}); validation accuracy {live['val_acc']}, test accuracy {live['test_acc']}, "
                  f"parameters {live['params']}. No GPU was lent to this measurement."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", type=int, default=1000)
    parser.add_argument("--time-budget", type=float, default=1200.0, help="seconds for the correlation run")
    parser.add_argument("--batch-size", type=int, help=f"proxy batch (default 16; with --darts {DARTS_BATCH})")
    parser.add_argument("--cost-archs", type=int, default=5)
    parser.add_argument("--live-archs", type=int, default=5, help="architectures trained per live setting (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", action="store_true", help="continue the scores in benchmarks/runs/proxies/scores.jsonl")
    parser.add_argument("--quickstart", action="store_true", help="only time the quick start and add it to the results")
    parser.add_argument("--darts", action="store_true", help="the DARTS / NAS-Bench-301 part (proxies_darts.json/md)")
    add_script_arguments(parser)
    args = parser.parse_args(argv)
    results_folder, runs = script_folders(args, "proxies")
    torch.set_num_threads(args.threads)
    if args.darts:
        darts_main(args, argv, results_folder, runs)
        return
    args.batch_size = args.batch_size or 16
    if args.quickstart:
        results = json.loads((results_folder / "proxies.json").read_text())
        results["quickstart_cli"] = time_quickstart()
        (results_folder / "proxies.json").write_text(json.dumps(results, indent=1))
        (results_folder / "proxies.md").write_text(markdown(results))
        print(markdown(results))
        return

    bench = Benchmark.load(shared_tables(args.shared) / "nb201_200ep.csv.gz")
    all_archs = bench.archs()
    order = np.random.default_rng(args.seed).permutation(len(all_archs))[: args.archs]
    archs = [all_archs[i] for i in order]
    batch = proxy_batch(args.batch_size, args.seed)

    print(f"1. cost of each proxy on its own, {args.cost_archs} architectures", flush=True)
    cost = measure_cost(archs[: args.cost_archs], batch, args.seed)
    print("   " + ", ".join(f"{p} {s:.2f}s" for p, s in cost.items()), flush=True)

    log = runs / "scores.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        log.unlink(missing_ok=True)
    print(f"2. all proxies on up to {args.archs} architectures within {args.time_budget:.0f} s", flush=True)
    rows = score_until(archs, batch, args.seed, args.time_budget, log)
    scoring_s = sum(r["seconds"] for r in rows)
    corr = correlations(rows, bench)

    print("3. live-training throughput on digits", flush=True)
    live = {}
    if args.live_archs:
        live["quickstart"] = live_throughput(archs, 6, {"channels": 16, "cells_per_stage": 1}, args.live_archs)
        live["full_nb201"] = live_throughput(archs, 6, {}, max(2, args.live_archs // 2))

    results = {
        "command": "python " + " ".join(sys.argv),
        "machine": {"torch_threads": args.threads, "cpu_cores": os.cpu_count(), "load_average_at_end": list(os.getloadavg())},
        "proxy_batch": {"data": "sklearn digits, 32x32 bilinear, 3 channels", "batch_size": args.batch_size, "seed": args.seed},
        "network": "NB201 TinyNetwork C=16 N=5, 10 classes",
        "cost_s_per_arch": cost,
        "correlation": {"target": TARGET, "archs": len(rows), "seconds": scoring_s, "by_proxy": corr},
        "suite_zero_reference": SUITE_ZERO,
        "live_training": live,
    }
    results_folder.mkdir(parents=True, exist_ok=True)
    (results_folder / "proxies.json").write_text(json.dumps(results, indent=1))
    (results_folder / "proxies.md").write_text(markdown(results))
    print(markdown(results))


def markdown(r: dict) -> str:
    c = r["correlation"]
    lines = [
        "# Zero-cost proxies on NAS-Bench-201 and live-training throughput",
        "",
        f"Command: `{r['command']}` (proxy batch {r['proxy_batch']['batch_size']}, one torch thread).",
        f"Machine: {r['machine']['cpu_cores']} CPU cores shared with other jobs (load average at the end "
        f"{', '.join(f'{v:.1f}' for v in r['machine']['load_average_at_end'])}).",
        "",
        f"## Rank correlation with `{c['target']}` ({c['archs']} random architectures, {c['seconds']:.0f} s)",
        "",
        f"Networks: {r['network']}, 32x32 inputs. Data-dependent proxies read a batch of "
        f"{r['proxy_batch']['data']} (CIFAR-10 is not on this machine). NAS-Bench-Suite-Zero, NB201 CIFAR-10: "
        f"{r['suite_zero_reference']} (computed there on CIFAR-10 batches over all 15,625 cells).",
        "",
        "| proxy | Spearman rho | Kendall tau | cost s/arch (alone) | scores of -inf |",
        "|---|---|---|---|---|",
    ]
    for p, v in sorted(c["by_proxy"].items(), key=lambda kv: -abs(kv[1]["spearman"])):
        lines.append(f"| {p} | {v['spearman']:.3f} | {v['kendall']:.3f} | {r['cost_s_per_arch'][p]:.2f} | {v['n_minus_inf']} |")
    lines += ["", "A score of -inf (NWOT, Zen) marks a network whose output does not depend on its input; "
              "it is kept and ranks last. Snip, grad_norm, fisher and NWOT share one forward/backward pass in "
              "the correlation run (the cost column times each proxy alone)."]
    lines += ["", "## Live training on digits (LiveTrainingOracle, one torch thread)", "",
              "| setting | epochs | archs | seconds | archs/minute | mean val acc |", "|---|---|---|---|---|---|"]
    for name, v in r["live_training"].items():
        lines.append(f"| {name} {v['network'] or '(C=16, N=5)'} | {v['epochs']} | {v['archs']} | {v['seconds']:.0f} | "
                     f"{v['archs_per_minute']:.2f} | {v['mean_val_acc']:.2f} |")
    if "quickstart_cli" in r:
        q = r["quickstart_cli"]
        lines += ["", "## Quick start", "",
                  f"`{q['command']}` (30 live evaluations): {q['seconds'] / 60:.1f} min wall time in a fresh process "
                  f"(load average at the end {', '.join(f'{v:.1f}' for v in q['load_average_at_end'])}); "
                  f"best {q['best']['arch']} with validation accuracy {q['best']['score']:.2f} % and test accuracy "
                  f"{q['best']['report']['test_acc']:.2f} %."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
