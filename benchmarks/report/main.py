"""`lightning-nas report`: parse the command line and run the chosen parts; see the package's docstring.

Search runs go through `lightning-nas bench` (finished seeds are reused while their recipe holds, so an
interrupted report resumes); predictors a search needs are fitted first when their checkpoint is
missing and a seed is still to search. What a finished run needs to be reused is also kept in
`--records` (committed), so that a report begun on one machine resumes on another. The performance
section is measured afresh by every invocation. Paths are resolved from the repository root, so the
report runs from any directory; it writes REPORT.md, report_data.json and plots/*.png to `--out`.
A part this invocation does not run keeps what `--out`'s report_data.json holds (and the tau study the
rows of the spaces it does not run), so one part of the committed report can be regenerated alone; the
report's first lines name the invocation that made each part.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.report.common import ROOT, at_root, from_root, shared_tables
from benchmarks.report.fits import checkpoint_producers
from benchmarks.report.moo import read_moo, read_results
from benchmarks.report.performance import measure_performance
from benchmarks.report.protocols import Method, Protocol, methods, protocols
from benchmarks.report.render import write_report
from benchmarks.report.searches import run_searches
from benchmarks.report.tau import PREDICTORS, STUDIES, TAU_SEEDS, TAU_SPACES, run_tau_study
from lightning_nas.errors import ConfigError
from lightning_nas.executors import Executor, RunsFailed, add_executor_arguments, executor_from_arguments

PARTS = ("search", "tau", "performance", "moo", "results")
#: the report data each part makes
PART_KEYS = {"search": ("seeds", "budgets", "results", "not_completed"), "tau": ("tau",),
             "performance": ("performance",), "moo": ("moo",), "results": ("results_tables",)}
#: what --quick runs unless --protocols / --methods / --predictors say otherwise: under 2 minutes
QUICK = {"protocols": ["nb201-cifar10"], "methods": ["RS", "RE", "EDNAG"], "predictors": ["GIN"], "tau_spaces": ["nb201"]}


def report_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lightning-nas report", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 2 seeds, budgets 10 and 20 (30 for CR-LSO), 1-epoch per-seed fits on 10 "
                             "labels; tau with 20 and 60 labels, at most 2 seeds, 2 epochs; small performance "
                             f"measurements; unless chosen, only {', '.join(QUICK['protocols'])}, methods "
                             f"{' '.join(QUICK['methods'])}, predictor {' '.join(QUICK['predictors'])}")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 150])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--protocols", nargs="*", help="names of configs/protocols/*.yaml (default: all)")
    parser.add_argument("--methods", nargs="*", help="search methods such as RS RE EDNAG (default: all)")
    parser.add_argument("--predictors", nargs="*", choices=list(PREDICTORS),
                        help="predictors of the tau study and the throughput measurement (default: all)")
    parser.add_argument("--tau-seeds", type=int, default=TAU_SEEDS)
    parser.add_argument("--tau-spaces", nargs="*", choices=list(TAU_SPACES),
                        help="the spaces of the tau study (default: all; NB201 at 156 and 1,562 labels, NB101 at 424, "
                             "TNB101's seven tasks at 41 and 410, DARTS at 100)")
    parser.add_argument("--shared", help="folder of the shared benchmark tables (default: ../shared/benchmarks "
                                         "beside the repository)")
    parser.add_argument("--out", help="where REPORT.md, report_data.json and plots/ go (default: a new folder "
                                      "benchmarks/runs/report-<time>; `--out benchmarks` rewrites the committed "
                                      "report)")
    # the records' recipes name the per-seed fits under it: runs elsewhere do not reuse CR-LSO's runs
    parser.add_argument("--runs", default=str(ROOT / "benchmarks" / "runs"),
                        help="where the individual runs go (reused)")
    parser.add_argument("--records", default=str(ROOT / "benchmarks" / "records"),
                        help="where each method's finished runs are kept, one .tar.gz per protocol (committed: "
                             "a report resumes from them on another machine)")
    add_executor_arguments(parser, workers_default=2)
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.tau_seeds < 1 or min(args.budgets) < 1:
        raise ConfigError("--seeds, --tau-seeds and --budgets must be positive")
    shared = shared_tables(args.shared)
    mode = "quick" if args.quick else "full"
    out = Path(args.out).resolve() if args.out else ROOT / "benchmarks" / "runs" / time.strftime("report-%Y%m%d-%H%M%S")
    runs, records = Path(args.runs).resolve() / mode, Path(args.records).resolve() / mode
    executor = executor_from_arguments(args, runs / "logs")  # of the searches, the per-seed fits, the tau fits
    for option in ("protocols", "methods", "predictors", "tau_spaces"):
        if args.quick and getattr(args, option) is None:
            setattr(args, option, QUICK[option])
    known, every_method = protocols(), methods()
    unknown = [name for name in args.protocols or [] if name not in {p.name for p in known}]
    if unknown:
        raise ConfigError(f"unknown protocol {', '.join(unknown)}; known: {', '.join(p.name for p in known)}")
    unknown = [name for name in args.methods or [] if name not in {m.name for m in every_method}]
    if unknown:
        raise ConfigError(f"unknown method {', '.join(unknown)}; known: {', '.join(m.name for m in every_method)}")
    chosen = [p for p in known if not args.protocols or p.name in args.protocols]
    chosen_methods = [m for m in every_method if not args.methods or m.name in args.methods]
    with at_root():
        try:
            data = run_parts(args, executor, chosen, chosen_methods, shared, from_root(runs), from_root(records))
        except RunsFailed as e:
            print(f"lightning-nas report: {e}", file=sys.stderr)
            return 1
        data["command"], data["mode"] = " ".join(["lightning-nas report", *argv]), mode
        keep_earlier_parts(out, data, args.parts, plan_studies(args) if "tau" in args.parts else [])
        write_report(out, data)
    print(f"report: {out / 'REPORT.md'} ({data['wall_time_s']:.0f} s)")
    return 0


def plan_studies(args: argparse.Namespace) -> list[str]:
    """The tau studies an invocation runs."""
    return [study for space in args.tau_spaces or TAU_SPACES for study in TAU_SPACES[space]]


def keep_earlier_parts(out: Path, data: dict[str, Any], parts: list[str], studies: list[str]) -> None:
    """Complete `data` from the report already in `out`: the parts not run now, and the tau rows of
    studies not run now, if it was made in the same mode (full or --quick). `data["made_by"]` lists each
    invocation whose parts the report shows."""
    this = {"command": data["command"], "wall_time_s": data["wall_time_s"], "parts": list(parts)}
    path = out / "report_data.json"
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    if earlier.get("mode", "full") != data["mode"]:  # a --quick report never completes a full one, nor the reverse
        earlier = {}
    made_by = earlier.get("made_by") or ([{"command": earlier["command"], "wall_time_s": earlier["wall_time_s"],
                                           "parts": list(PARTS)}] if earlier else [])
    kept = [p for p in PARTS if p not in parts and any(earlier.get(k) for k in PART_KEYS[p])]
    for part in kept:
        data.update({k: earlier[k] for k in PART_KEYS[part] if k in earlier})
    if "tau" in parts and earlier.get("tau"):
        data["tau"] = [r for r in earlier["tau"] if r.get("space", "nb201") not in studies] + data["tau"]
        if any(r.get("space", "nb201") not in studies for r in earlier["tau"]):
            kept.append("tau")
    earlier_parts = [{**m, "parts": [p for p in m["parts"] if p in kept]} for m in made_by]
    data["made_by"] = [this] + [m for m in earlier_parts if m["parts"]]
    if kept:
        data["log"] = data["log"] + [e if e.startswith("(earlier) ") else f"(earlier) {e}" for e in earlier.get("log", [])]


def run_parts(args: argparse.Namespace, executor: Executor, chosen: list[Protocol], chosen_methods: list[Method],
              shared: Path, runs: Path, records: Path) -> dict[str, Any]:
    """Run the parts `args` asks for (from the repository root); what the report renders."""
    seeds, budgets = (2, [10, 20]) if args.quick else (args.seeds, sorted(args.budgets))
    names = args.predictors or list(PREDICTORS)
    start = time.perf_counter()
    producers, log = checkpoint_producers(), []
    data: dict[str, Any] = {"seeds": seeds, "budgets": budgets, "results": [], "not_completed": [], "tau": [],
                            "performance": {}, "moo": {}}
    if "search" in args.parts:
        part_start = time.perf_counter()
        data["results"] = run_searches(chosen, chosen_methods, shared, seeds, budgets, executor, runs, records,
                                       producers, args.quick, log, data["not_completed"])
        log.append(f"search part: {time.perf_counter() - part_start:.0f} s")
    if "tau" in args.parts:
        part_start = time.perf_counter()
        plan = {study: [20, 60] if args.quick else list(STUDIES[study].sizes)
                for space in args.tau_spaces or TAU_SPACES for study in TAU_SPACES[space]}
        tau_seeds = min(2, args.tau_seeds) if args.quick else args.tau_seeds
        data["tau"] = run_tau_study(names, plan, tau_seeds, args.quick, runs, executor, producers, log, shared,
                                    records / "tau.tar.gz")
        log.append(f"tau part: {time.perf_counter() - part_start:.0f} s")
    if "performance" in args.parts:
        part_start = time.perf_counter()
        data["performance"] = measure_performance(names, args.quick, producers, log, shared, chosen_methods)
        log.append(f"performance part: {time.perf_counter() - part_start:.0f} s")
    if "moo" in args.parts:  # rendered from bench_moo.py's committed results: nothing runs, also under --quick
        data["moo"] = read_moo() or {"protocols": {}}
    if "results" in args.parts:  # the bench scripts' committed tables (DARTS proxies, live comparison)
        data["results_tables"] = read_results()
    data.update(log=log, wall_time_s=round(time.perf_counter() - start, 1))
    return data
