"""Multi-objective search on NAS-Bench-201 CIFAR-10: hypervolume of the front after 50 / 100 / 150 queries
for RS, MO-RE and the five methods' multi-objective modes, against the table's true front.

    python -m benchmarks.bench_moo                                   # everything: 20 seeds, both protocols
    python -m benchmarks.bench_moo --seeds 5 --first-seed 100 --budgets 100 --out /tmp/tune   # tuning seeds

Protocols: configs/protocols/nb201-cifar10-moo*.yaml (validation accuracy against FLOPs, against
parameters; each declares its normalisation and reference point). Every search composes the method's
files with the protocol (`benchmarks.report.protocols`), as `lightning-nas search` does, and runs
through `lightning-nas bench` (finished seeds are reused). Parts:

- costs: the FLOPs and parameters of all 15,625 cells, counted with `lightning_nas.proxies.costs`
  into the protocol's store (checkpoints/costs.sqlite; once per machine, then read back), and the
  CPU time per cell measured afresh on a sample in a scratch store;
- front: the table's true Pareto front of each protocol and its hypervolume;
- search: every method and seed; hypervolume per budget, mean ± std, and its share of the true one;
- plot: one seed's fronts per method against the true front;
- reach: how many queries the baselines (RS, MO-RE) need for a share of the true front's hypervolume
  (budgets up to 1,000; runs under benchmarks/runs/moo/reach/), the yardstick for the 99 % target.
Results: benchmarks/results/moo.{json,md} and moo_<protocol>.png; runs: benchmarks/runs/moo/.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report.common import add_script_arguments, at_root, from_root, pyplot, quiet, script_folders, shared_tables
from benchmarks.report.fits import checkpoint_producers, ensure_fitted, seed_fit_arguments, seed_fits
from benchmarks.report.moo import reach_lines
from benchmarks.report.protocols import Method, Protocol, methods, protocols
from lightning_nas.bench import bench_main, config_arguments, resolved_config
from lightning_nas.executors import LocalPool
from lightning_nas.io import atomic_write

BUDGETS = (50, 100, 150)
PARTS = ("costs", "front", "search", "plot", "reach")
REACH_BUDGETS = (100, 200, 300, 500, 1000)
REACH_METHODS = ("RS", "MO-RE")
SAMPLE = 300  # cells whose costs are counted afresh to time the counting


def objectives_of(protocol: Protocol, shared: Path):
    """The protocol's `Objectives` over its table (the search runner's own construction)."""
    from lightning_nas.benchmarks.archive import Benchmark
    from lightning_nas.benchmarks.oracle import TabularOracle
    from lightning_nas.search.objectives import Objectives

    config = resolved_config(["search", "--config", str(protocol.configs("rs")[-1])])
    oracle = TabularOracle(Benchmark.load(protocol.benchmark(shared)), protocol.target)
    return Objectives.build(config["objectives"], config.get("constraints"), config["costs"], oracle), oracle.benchmark


# --- costs and the true front ----------------------------------------------------------------------
def table_costs(protocol: Protocol, shared: Path) -> dict[str, Any]:
    """Count every cell's costs into the store (what is there already is read back), timed; then time
    the counting afresh on `SAMPLE` cells in a scratch store."""
    from lightning_nas.proxies.costs import NetworkCosts

    objectives, benchmark = objectives_of(protocol, shared)
    archs = benchmark.archs()
    names = [n for n, kind in objectives.kinds.items() if kind == "cost"]
    start, cpu = time.perf_counter(), time.process_time()
    for name in names:
        objectives.costs(name, archs)
    work = objectives.costs.work()
    out = {"cells": len(archs), "store": str(objectives.costs.store.path), "computed_now": work["computed"],
           "wall_s_now": round(time.perf_counter() - start, 1), "cpu_s_now": round(time.process_time() - cpu, 1)}
    settings = {k: v for k, v in objectives.cost_settings.items() if k != "store"}
    with tempfile.TemporaryDirectory() as scratch:
        fresh = NetworkCosts(objectives.space, **settings, store=str(Path(scratch) / "costs.sqlite"))
        sample = archs[:: len(archs) // SAMPLE][:SAMPLE]
        start, cpu = time.perf_counter(), time.process_time()
        fresh(names[0], sample)
        per_cell = (time.process_time() - cpu) / len(sample)
        out.update(sample_cells=len(sample), sample_wall_s=round(time.perf_counter() - start, 2),
                   cpu_ms_per_cell=round(1e3 * per_cell, 2), cpu_s_all_cells=round(per_cell * len(archs), 1))
    return out


def true_front(protocol: Protocol, shared: Path) -> dict[str, Any]:
    """The table's Pareto front under the protocol's objectives, and its hypervolume."""
    from lightning_nas.search.pareto import hypervolume, nondominated

    objectives, benchmark = objectives_of(protocol, shared)
    archs = benchmark.archs()
    values = np.stack([benchmark.column(n) if kind != "cost" else objectives.costs(n, archs)
                       for n, kind in objectives.kinds.items()], axis=1).astype(np.float64)
    points = objectives.minimised(values)
    rows = np.flatnonzero(nondominated(points))
    rows = rows[np.argsort(points[rows, 0], kind="stable")]
    return {"objectives": [o.__dict__ for o in objectives.objectives], "names": objectives.names,
            "hypervolume": hypervolume(points[rows], np.ones(points.shape[1])),
            "front": [{"arch": str(archs[i]), "values": dict(zip(objectives.names, values[i].tolist()))} for i in rows]}


# --- searches -------------------------------------------------------------------------------------
def run_method(protocol: Protocol, method: Method, shared: Path, runs: Path, seeds: list[int], budgets: list[int],
               workers: int, producers: dict[str, Path], log: list[str]) -> dict[str, Any]:
    """Every seed of one method on one protocol through `lightning-nas bench`, fitting what it loads first."""
    configs = [from_root(c) for c in protocol.configs(method)]
    out = runs / protocol.name / method.name
    extra = protocol.overrides(shared)
    if method.per_seed_fit:
        fits = seed_fits(configs, protocol, shared, method.name, out, seeds, producers, False)
        if LocalPool(workers, out / "logs").run(fits, "per-seed fits"):
            raise RuntimeError(f"a per-seed fit of {method.name} on {protocol.name} failed (logs in {out / 'logs'})")
        if fits:
            log.append(f"fit {method.name} on {protocol.name}, {len(fits)} seeds")
        extra += seed_fit_arguments(configs, out)
    else:
        ensure_fitted("search", configs, producers, log)
    start = time.perf_counter()
    args = [*config_arguments(configs), "--seeds", str(len(seeds)), "--first-seed", str(seeds[0]), "--budgets",
            *map(str, budgets), "--workers", str(workers), "--out", str(out), "--", *extra]
    if bench_main(args) != 0:
        raise RuntimeError(f"bench of {method.name} on {protocol.name} failed")
    results = {s: json.loads((out / f"seed_{s}" / "results.json").read_text()) for s in seeds}
    walls = [json.loads((out / f"seed_{s}" / "timing.json").read_text())["wall_time_s"] for s in seeds]
    entry = {"config": [str(c) for c in configs], "seeds": seeds, "wall_s_per_run": float(np.mean(walls)),
             "bench_wall_s": round(time.perf_counter() - start, 1), "hypervolume": {}, "front_size": {}}
    for b in budgets:
        hv = [r["queries"][b - 1]["hypervolume"] for r in results.values()]
        size = [len(r["queries"][b - 1]["front"]) for r in results.values()]
        entry["hypervolume"][str(b)] = {"mean": float(np.mean(hv)), "std": float(np.std(hv)), "values": hv}
        entry["front_size"][str(b)] = float(np.mean(size))
    entry["example"] = {"seed": seeds[0], "front_at": {str(b): fronts_at(results[seeds[0]], b) for b in budgets}}
    return entry


def fronts_at(results: dict[str, Any], budget: int) -> list[dict[str, float]]:
    query = results["queries"][budget - 1]
    return [results["queries"][i - 1]["values"] for i in query["front"]]


# --- report -----------------------------------------------------------------------------------------
def plot(protocol: Protocol, entry: dict[str, Any], budget: int, path: Path) -> None:
    plt = pyplot()
    names = entry["front"]["names"][:2]
    maximised = entry["front"]["objectives"][0]["direction"] == "max"
    shown = list(entry["methods"])
    cols = 4
    fig, axes = plt.subplots((len(shown) + cols - 1) // cols, cols, figsize=(4 * cols, 3.3 * ((len(shown) + cols - 1) // cols)),
                             dpi=100, sharex=True, sharey=True, squeeze=False)

    def staircase(ax, points, **kw):
        points = sorted(points, key=lambda p: p[names[0]])
        ax.step([p[names[0]] for p in points], [p[names[1]] for p in points], where="pre" if maximised else "post",
                marker="o", ms=3, **kw)

    for ax, method in zip(axes.flat, shown):
        staircase(ax, [p["values"] for p in entry["front"]["front"]], color="black", label="true front")
        example = entry["methods"][method]["example"]
        staircase(ax, example["front_at"][str(budget)], color="C1", label=f"seed {example['seed']}")
        share = entry["methods"][method]["hypervolume"][str(budget)]["mean"] / entry["front"]["hypervolume"]
        ax.set_title(f"{method} ({100 * share:.1f} % of the true HV, mean)", fontsize=9)
        ax.legend(fontsize=7)
    for ax in axes.flat[len(shown):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel(names[0])
    for ax in axes[:, 0]:
        ax.set_ylabel(names[1])
    fig.suptitle(f"{protocol.name}: fronts after {budget} queries", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def markdown(data: dict[str, Any]) -> str:
    lines = ["# Multi-objective search on NAS-Bench-201 CIFAR-10", "",
             "Commands (each adds or replaces its parts): " + ", ".join(f"`{c}`" for c in data["commands"]), "",
             "Hypervolume of the front of the queried cells (validation accuracy against FLOPs or parameters), "
             "normalised so that each objective's ideal is 0 and its reference point 1 (declared in the protocol "
             "file: accuracy 100 % / 80 %, FLOPs 0 / 225 M, parameters 0 / 1.6 M); mean ± std over "
             f"{len(data['seeds'])} seeds ({data['seeds'][0]}–{data['seeds'][-1]}); in brackets the share of the "
             "true front's hypervolume. Costs are exact (counted on the network, never charged to the budget); "
             "labels a predictor was fitted on are charged as the first queries. `s/run`: one run's search time "
             "to the largest budget on this shared 2-core machine.", ""]
    for name, entry in data["protocols"].items():
        if "front" not in entry:
            continue
        front = entry["front"]
        budgets = [b for b in data["budgets"] if all(str(b) in m["hypervolume"] for m in entry["methods"].values())]
        lines += [f"## {name}", "", f"True front: {len(front['front'])} cells, hypervolume {front['hypervolume']:.4f}.", "",
                  f"![{name}](moo_{name}.png)", "",
                  "| method | " + " | ".join(f"{b} queries" for b in budgets) + " | front size @100 | s/run |",
                  "|---" * (len(budgets) + 3) + "|"]
        for method, m in entry["methods"].items():
            cells = [f"{h['mean']:.4f} ± {h['std']:.4f} ({100 * h['mean'] / front['hypervolume']:.1f} %)"
                     for h in (m["hypervolume"][str(b)] for b in budgets)]
            size = m["front_size"].get("100", float("nan"))
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {size:.1f} | {m['wall_s_per_run']:.1f} |")
        lines.append("")
        lines += reach_lines(entry, len(data["seeds"]))
        if "costs" in entry:
            c = entry["costs"]
            lines += [f"Costs of all {c['cells']} cells: {c['cpu_ms_per_cell']} ms CPU per cell (counted afresh on "
                      f"{c['sample_cells']} cells), {c['cpu_s_all_cells']} s CPU for the table; kept in {c['store']}.", ""]
    lines += ["## Done-when (issue 34)", ""] + [f"- {line}" for line in data.get("verdict", [])]
    return "\n".join(lines) + "\n"


def verdict(data: dict[str, Any]) -> list[str]:
    """The issue's criteria at 100 queries on accuracy x FLOPs."""
    entry = data["protocols"].get("nb201-cifar10-moo")
    if entry is None or "front" not in entry or "100" not in entry["methods"].get("MO-RE", {}).get("hypervolume", {}):
        return []
    hv = {m: e["hypervolume"]["100"]["mean"] for m, e in entry["methods"].items()}
    five = [m for m in hv if m not in ("RS", "MO-RE")]
    above = [m for m in five if hv[m] > hv["MO-RE"]]
    best = max(five, key=hv.get) if five else None
    share = hv[best] / entry["front"]["hypervolume"] if best else float("nan")
    return [f"{len(above)} of {len(five)} methods above MO-RE's mean hypervolume at 100 queries ({', '.join(above)}): "
            f"{'met' if len(above) >= 3 else 'not met'} (at least 3)",
            f"best: {best}, {100 * share:.2f} % of the true front's hypervolume: {'met' if share >= 0.99 else 'not met'} "
            "(at least 99 %)"] + [
        f"{name} reaches 99 % " + next((f"at {b} queries" for b, h in sorted(r.items(), key=lambda x: int(x[0]))
                                        if h / entry["front"]["hypervolume"] >= 0.99), f"at none of {', '.join(r)} queries")
        for name, r in entry.get("reach", {}).items()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_script_arguments(parser)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=[p for p in PARTS if p != "reach"])
    parser.add_argument("--protocols", nargs="+", default=[p.name for p in protocols(multi_objective=True)])
    parser.add_argument("--methods", nargs="+", default=[m.name for m in methods(multi_objective=True)])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    quiet()
    shared = shared_tables(args.shared)
    results, runs = script_folders(args, "moo")
    chosen = [p for p in protocols(multi_objective=True) if p.name in args.protocols]
    chosen_methods = [m for m in methods(multi_objective=True) if m.name in args.methods]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    out_json = results / "moo.json"
    data = json.loads(out_json.read_text()) if out_json.is_file() else {"protocols": {}}
    command = " ".join(["python -m benchmarks.bench_moo", *(argv or [])])
    earlier = data.get("commands", [data.pop("command")] if "command" in data else [])  # files before the list
    data.update(commands=list(dict.fromkeys([*earlier, command])), seeds=seeds,
                budgets=sorted(args.budgets))
    producers, log = checkpoint_producers(), []
    with at_root():
        for protocol in chosen:
            entry = data["protocols"].setdefault(protocol.name, {"methods": {}})
            if "costs" in args.parts:
                entry["costs"] = table_costs(protocol, shared)
                print(f"[{protocol.name}] costs: {entry['costs']}", flush=True)
            if "front" in args.parts:
                entry["front"] = true_front(protocol, shared)
                print(f"[{protocol.name}] true front: {len(entry['front']['front'])} cells, "
                      f"hypervolume {entry['front']['hypervolume']:.4f}", flush=True)
            if "search" in args.parts:
                for method in chosen_methods:
                    m = run_method(protocol, method, shared, runs, seeds, sorted(args.budgets), args.workers, producers, log)
                    entry["methods"][method.name] = m
                    figures = "  ".join(f"{b}: {h['mean']:.4f} ± {h['std']:.4f}" for b, h in m["hypervolume"].items())
                    print(f"[{protocol.name}] {method.name}: {figures} ({m['wall_s_per_run']:.1f} s/run)", flush=True)
                    atomic_write(out_json, json.dumps(data, indent=1))
            if "reach" in args.parts:
                entry["reach"] = {}
                for method in (m for m in methods(multi_objective=True) if m.name in REACH_METHODS):
                    m = run_method(protocol, method, shared, runs / "reach", seeds, list(REACH_BUDGETS), args.workers,
                                   producers, log)
                    entry["reach"][method.name] = {b: h["mean"] for b, h in m["hypervolume"].items()}
                    print(f"[{protocol.name}] reach {method.name}: {entry['reach'][method.name]}", flush=True)
                    atomic_write(out_json, json.dumps(data, indent=1))
            entry["methods"] = {m.name: entry["methods"][m.name] for m in methods(multi_objective=True)
                                if m.name in entry["methods"]}
            if "plot" in args.parts and entry["methods"] and "front" in entry:
                budget = 100 if 100 in args.budgets else max(args.budgets)
                plot(protocol, entry, budget, results / f"moo_{protocol.name}.png")
    data["verdict"] = verdict(data)
    data["log"] = log
    atomic_write(out_json, json.dumps(data, indent=1))
    atomic_write(results / "moo.md", markdown(data))
    print("\n".join(data["verdict"]))
    print(f"results: {results / 'moo.md'}")


if __name__ == "__main__":
    main()
