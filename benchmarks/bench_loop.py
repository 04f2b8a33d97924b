"""Seconds per query of the search loop at 100, 1,000 and 10,000 queries (issue 32, item 5).

Random search (`table_only`: no round is lost on a repeat) on the NB201 table, through the loop as
`lightning-nas search` runs it, with a CSV logger. Each round appends one line to the journal; the
whole state is written when that costs at most `CHECKPOINT_SHARE` of the work since the last time.
Baseline in the same process: the old way, the whole state written after every round (up to
--old-sizes, as its cost grows with the history). Requirement: the cost per query at 10,000
queries within 2x of that at 100.

Writes loop.json and loop.md (the table printed) into benchmarks/results/ (or --out DIR/results).

Run from the repository root:
    python -m benchmarks.bench_loop [--sizes 100 1000 10000] [--old-sizes 100 1000] [--shared DIR] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import torch

from benchmarks.report.common import add_script_arguments, script_folders, shared_tables
from benchmarks.report.performance import query_cost
from lightning_nas.io import atomic_write


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--old-sizes", type=int, nargs="+", default=[100, 1000])
    add_script_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    cost = query_cost(shared_tables(args.shared) / "nb201_200ep.csv.gz", args.sizes, args.old_sizes)
    lines = [f"{cost['strategy']} on {cost['table']}: ms per query (second half of the queries up to n / all of them)",
             f"{'queries':>8}  {'journal':>17}  {'whole state every round':>25}"]
    for n in sorted({*args.sizes, *args.old_sizes}, key=int):
        row = [cost[kind].get(str(n)) for kind in ("journal", "every_round")]
        cells = [f"{r['second_half_s'] * 1e3:7.3f} / {r['mean_s'] * 1e3:7.3f}" if r else "—" for r in row]
        lines.append(f"{n:>8}  {cells[0]:>17}  {cells[1]:>25}")
    first, last = cost["journal"][str(min(args.sizes))], cost["journal"][str(max(args.sizes))]
    ratio = last["second_half_s"] / first["second_half_s"]
    lines.append(f"journal: {max(args.sizes)} queries cost {ratio:.2f}x per query what {min(args.sizes)} do "
                 f"({'within' if ratio <= 2 else 'NOT within'} 2x)")
    print("\n".join(lines))
    command = "python -m benchmarks.bench_loop " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = f"{os.cpu_count()} CPU cores shared with other jobs (load {load:.1f} at start), one torch thread, " \
              f"torch {torch.__version__}, Python {platform.python_version()}"
    results, _ = script_folders(args, "loop")
    results.mkdir(parents=True, exist_ok=True)
    atomic_write(results / "loop.json", json.dumps({"command": command.strip(), "machine": machine, **cost,
                                                   "ratio_last_to_first": ratio}, indent=1))
    atomic_write(results / "loop.md", "\n".join(["# Cost of a query as a search goes on (issue 32, item 5)", "",
                                                 f"Command: `{command.strip()}`", "", f"Machine: {machine}", "",
                                                 "```", *lines, "```", ""]))


if __name__ == "__main__":
    main()
