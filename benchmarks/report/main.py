"""`lightning-nas report`: parse the command line and run the chosen parts; see the package's docstring.

Search runs go through `lightning-nas bench` (finished seeds are reused while their recipe holds, so an
interrupted report resumes); predictors a search needs are fitted first when their checkpoint is
missing and a seed is still to search. What a finished run needs to be reused is also kept in
`--records` (committed), so that a report begun on one machine resumes on another. The performance
section is measured afresh by every invocation. Paths are resolved from the repository root, so the
report runs from any directory; it writes REPORT.md, report_data.json and plots/*.png to `--out`.
"""
from __future__ import annotations

import argparse
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
from benchmarks.report.tau import PREDICTORS, STUDIES, TAU_SEEDS, run_tau_study
from lightning_nas.errors import ConfigError
from lightning_nas.executors import Executor, RunsFailed, add_executor_arguments, executor_from_arguments

PARTS = ("search", "tau", "performance", "moo", "results")
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
    parser.add_argument("--tau-spaces", nargs="*", choices=list(STUDIES),
                        help="the spaces of the tau study (default: all; NB201 at 156 and 1,562 labels, DARTS at 100)")
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
        data["command"] = " ".join(["lightning-nas report", *argv])
        write_report(out, data)
    print(f"report: {out / 'REPORT.md'} ({data['wall_time_s']:.0f} s)")
    return 0


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
        plan = {space: [20, 60] if args.quick else list(STUDIES[space].sizes) for space in args.tau_spaces or STUDIES}
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
