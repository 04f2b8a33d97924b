"""`lightning-nas report`: every method x protocol x budget x seed, one markdown report with plots.

Search runs go through `lightning-nas bench` (finished seeds are reused from their results.json,
so an interrupted report resumes); predictors a search needs are fitted first when their
checkpoint is missing. Everything is written under `--out` (default `benchmarks/`):
`REPORT.md`, `report_data.json` and `plots/*.png`.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lightning_nas.search.loop import atomic_write, mean_std

SHARED = "../shared/benchmarks"
NB201_12 = f"{SHARED}/nb201_12ep.csv.gz"
NB201_200 = f"{SHARED}/nb201_200ep.csv.gz"
TNB_TASKS = ["class_scene", "class_object", "jigsaw", "segmentsemantic", "normal", "autoencoder", "room_layout"]


@dataclass
class Protocol:
    name: str
    benchmark: list[str]
    target: str
    report: str
    configs: dict[str, str] = field(default_factory=dict)  # method -> search config

    def overrides(self) -> list[str]:
        return ["--data.init_args.benchmark", json.dumps(self.benchmark), "--data.init_args.target", self.target,
                "--report", json.dumps([self.report])]


def _nb201(dataset: str, suffix: str) -> Protocol:
    if dataset == "cifar10":
        p = Protocol("nb201-cifar10", [NB201_200], "cifar10_valid_valid_acc", "cifar10_test_acc")
    else:
        p = Protocol(f"nb201-{dataset}", [NB201_200, NB201_12], f"{dataset}_valid_acc@nb201_12ep", f"{dataset}_test_acc")
    methods = {"DCL-ENAS": "dcl_enas", "CTNAS": "ctnas", "CR-LSO": "crlso", "EDNAG": "ednag", "Delta-NAS": "delta_nas"}
    p.configs = {m: f"configs/nb201/{stem}{suffix}.yaml" for m, stem in methods.items()}
    return p


def protocols() -> list[Protocol]:
    out = [_nb201("cifar10", ""), _nb201("cifar100", "_cifar100"), _nb201("imagenet16", "_imagenet16")]
    for task in TNB_TASKS:
        column = f"{task}_valid"
        p = Protocol(f"tnb101-{task}", [f"{SHARED}/tnb101_micro.csv.gz"], column, column)
        p.configs = {"EDNAG": f"configs/tnb101_micro/ednag_{task}.yaml", "Delta-NAS": f"configs/tnb101_micro/delta_nas_{task}.yaml",
                     "DCL-ENAS": f"configs/tnb101_micro/dcl_enas_{task}.yaml"}
        out.append(p)
    return out


BASELINES = {"RS": "configs/nb201/rs.yaml", "RE": "configs/nb201/re.yaml"}

#: test accuracy (%) that a method's paper publishes for a protocol, with where it says so
PAPER = {
    ("CR-LSO", "nb201-cifar10"): (94.35, "CR-LSO Table II, 32 runs"),
    ("CR-LSO", "nb201-cifar100"): (73.47, "CR-LSO Table II"),
    ("CR-LSO", "nb201-imagenet16"): (46.98, "CR-LSO Table II"),
    ("EDNAG", "nb201-cifar10"): (94.37, "EDNAG Table 1, test-accuracy fitness"),
    ("EDNAG", "nb201-cifar100"): (73.51, "EDNAG Table 1"),
    ("RS", "nb201-cifar10"): (93.70, "CR-LSO Table II"),
    ("RS", "nb201-cifar100"): (71.04, "CR-LSO Table II"),
    ("RS", "nb201-imagenet16"): (44.57, "CR-LSO Table II"),
}


# --- fitting what a search needs -------------------------------------------------------------
def checkpoint_producers(config_dir: Path = Path("configs")) -> dict[str, Path]:
    """ckpt path -> the fit config whose ModelCheckpoint writes it (best and last)."""
    producers: dict[str, Path] = {}
    for path in sorted(config_dir.rglob("*.yaml")):
        config = yaml.safe_load(path.read_text()) or {}
        callbacks = (config.get("trainer") or {}).get("callbacks") or []
        for cb in callbacks if isinstance(callbacks, list) else [callbacks]:
            args = cb.get("init_args", {}) if isinstance(cb, dict) else {}
            if "dirpath" in args:
                for name in (args.get("filename") or "best", "last"):
                    producers[str(Path(args["dirpath"]) / f"{name}.ckpt")] = path
    return producers


def needed_checkpoints(config: dict[str, Any]) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and node.endswith(".ckpt"):
            found.append(node)

    walk(config)
    return found


def ensure_fitted(config_path: Path, producers: dict[str, Path], quick: bool, log: list[str]) -> None:
    from lightning_nas.cli import main

    for ckpt in needed_checkpoints(yaml.safe_load(config_path.read_text())):
        if Path(ckpt).is_file():
            log.append(f"reused {ckpt} (delete it to fit again)")
            continue
        if ckpt not in producers:
            raise FileNotFoundError(f"{config_path} needs {ckpt}, and no config in configs/ writes it")
        fit_config = producers[ckpt]
        ensure_fitted(fit_config, producers, quick, log)
        start = time.perf_counter()
        extra = ["--trainer.max_epochs", "2"] if quick else []
        if main(["fit", "--config", str(fit_config), "--trainer.enable_progress_bar", "false", *extra]) != 0:
            raise RuntimeError(f"fit of {fit_config} failed")
        log.append(f"fit {fit_config} ({time.perf_counter() - start:.0f} s)")


# --- running ---------------------------------------------------------------------------------
def run_bench(config: str, protocol: Protocol, out: Path, seeds: int, budgets: list[int], workers: int,
              overrides: bool) -> dict[str, Any]:
    from lightning_nas.search.bench import bench_main

    extra = ["--", *protocol.overrides()] if overrides else []
    args = ["--config", config, "--seeds", str(seeds), "--budgets", *map(str, budgets), "--workers", str(workers),
            "--out", str(out), *extra]
    if bench_main(args) != 0:
        raise RuntimeError(f"bench of {config} on {protocol.name} failed")
    summary = json.loads((out / "summary.json").read_text())
    summary["curves"] = curves(out, seeds, max(budgets))
    return summary


def curves(out: Path, seeds: int, budget: int) -> dict[str, list[float]]:
    """Mean and std of the reported metric of the running best, per query count."""
    rows = []
    for s in range(seeds):
        queries = json.loads((out / f"seed_{s}" / "results.json").read_text())["queries"][:budget]
        values = [next(iter(q["best"]["report"].values()), q["best"]["score"]) for q in queries]
        rows.append(values + [values[-1]] * (budget - len(values)))
    data = np.array(rows)
    return {"mean": data.mean(0).tolist(), "std": data.std(0).tolist()}


def report_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lightning-nas report", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, budgets 10 and 20, 2-epoch fits: a smoke test")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 150])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--protocols", nargs="*", help="names such as nb201-cifar10 (default: all)")
    parser.add_argument("--methods", nargs="*", help="names such as RS RE EDNAG (default: all)")
    parser.add_argument("--out", default="benchmarks", help="where REPORT.md, report_data.json and plots/ go")
    parser.add_argument("--runs", default="checkpoints/report", help="where the individual runs go (reused)")
    args = parser.parse_args(argv)
    seeds, budgets = (2, [10, 20]) if args.quick else (args.seeds, sorted(args.budgets))
    chosen = [p for p in protocols() if not args.protocols or p.name in args.protocols]
    if not chosen:
        raise ValueError(f"no protocol matches {args.protocols}; known: {', '.join(p.name for p in protocols())}")
    start = time.perf_counter()
    producers, log, results = checkpoint_producers(), [], []
    for protocol in chosen:
        todo = [(m, c, True) for m, c in BASELINES.items()] + [(m, c, False) for m, c in protocol.configs.items()]
        for method, config, overrides in todo:
            if args.methods and method not in args.methods:
                continue
            if not Path(config).is_file():
                log.append(f"skipped {method} on {protocol.name}: {config} does not exist")
                continue
            ensure_fitted(Path(config), producers, args.quick, log)
            run_dir = Path(args.runs) / ("quick" if args.quick else "full") / protocol.name / method
            summary = run_bench(config, protocol, run_dir, seeds, budgets, args.workers, overrides)
            results.append({"protocol": protocol.name, "method": method, "config": config, "summary": summary})
    data = {"seeds": seeds, "budgets": budgets, "results": results, "log": log,
            "wall_time_s": round(time.perf_counter() - start, 1), "command": "lightning-nas report " + " ".join(argv)}
    write_report(Path(args.out), data)
    print(f"report: {Path(args.out) / 'REPORT.md'} ({data['wall_time_s']:.0f} s)")
    return 0


# --- writing ---------------------------------------------------------------------------------
def write_report(out: Path, data: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    atomic_write(out / "report_data.json", json.dumps(data, indent=1))
    lines = ["# lightning-nas benchmark report", "",
             f"Regenerated by `{data['command']}` in {data['wall_time_s']:.0f} s (runs finished by an earlier, "
             f"interrupted invocation are reused, not repeated; `wall s/run` is each run's own search time); "
             f"{data['seeds']} seeds per cell. "
             "Each cell: mean ± std over seeds of the reported test metric of the best-by-validation "
             "architecture after that many oracle queries; `found` = fraction of seeds whose best-by-validation "
             "architecture is the table's best-by-validation architecture.", ""]
    by_protocol: dict[str, list[dict]] = {}
    for r in data["results"]:
        by_protocol.setdefault(r["protocol"], []).append(r)
    for protocol, rows in by_protocol.items():
        budgets = [str(b) for b in data["budgets"]]
        lines += [f"## {protocol}", "", f"![{protocol}](plots/{protocol}.png)", "",
                  "| method | " + " | ".join(f"{b} queries" for b in budgets) + f" | found@{budgets[-1]} | wall s/run | paper | gap |",
                  "|---|" + "---|" * (len(budgets) + 4)]
        for r in rows:
            entries = r["summary"]["budgets"]
            metric = reported_metric(entries[budgets[-1]])
            cells = [f"{entries[b][metric]['mean']:.4g} ± {entries[b][metric]['std']:.2g}" for b in budgets]
            paper = PAPER.get((r["method"], protocol))
            anchor = "100" if "100" in entries else budgets[-1]
            gap = f"{entries[anchor][metric]['mean'] - paper[0]:+.2f} (at {anchor})" if paper else ""
            lines.append(f"| {r['method']} | " + " | ".join(cells)
                         + f" | {entries[budgets[-1]].get('found_optimum_fraction', 0):.2f}"
                         + f" | {r['summary']['wall_time_s']['mean']:.2f}"
                         + f" | {f'{paper[0]} ({paper[1]})' if paper else ''} | {gap} |")
        lines.append("")
        plot(out / "plots" / f"{protocol}.png", protocol, rows)
    if data["log"]:
        lines += ["## Log", "", *[f"- {entry}" for entry in dict.fromkeys(data["log"])], ""]
    atomic_write(out / "REPORT.md", "\n".join(lines))


def reported_metric(entry: dict[str, Any]) -> str:
    """The reported (test) metric of a bench summary entry; the objective when none was reported."""
    return next((k for k, v in entry.items() if isinstance(v, dict) and k != "score"), "score")


def plot(path: Path, protocol: str, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    low, high = np.inf, -np.inf
    for r in rows:
        mean, std = np.array(r["summary"]["curves"]["mean"]), np.array(r["summary"]["curves"]["std"])
        x = np.arange(1, len(mean) + 1)
        ax.plot(x, mean, label=r["method"])
        ax.fill_between(x, mean - std, mean + std, alpha=0.15)
        settled = slice(min(9, len(mean) - 1), None)  # the first few queries would squash the scale
        low, high = min(low, (mean - std)[settled].min()), max(high, (mean + std)[settled].max())
    if np.isfinite(low):
        margin = 0.05 * (high - low) or 0.1
        ax.set_ylim(low - margin, high + margin)
    ax.set_xlabel("oracle queries")
    ax.set_ylabel("test metric of best-by-validation")
    ax.set_title(protocol)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
