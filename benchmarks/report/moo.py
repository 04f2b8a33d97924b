"""The report's parts made from committed results (nothing runs here, also under --quick): the moo part, the
multi-objective results of benchmarks/bench_moo.py (benchmarks/results/moo.json) rendered with their plots
(that script runs RS, MO-RE and the five methods' multi-objective modes over many seeds); and the results
part, the tables of the bench scripts whose runs take hours (DARTS proxies, the live comparison)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from benchmarks.report.common import ROOT

RESULTS = ROOT / "benchmarks" / "results"


def read_moo(results: Path = RESULTS) -> dict[str, Any]:
    """moo.json, or {} when bench_moo.py has not run (the section then says how to make it)."""
    path = results / "moo.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def moo_section(out: Path, moo: dict[str, Any], results: Path = RESULTS) -> list[str]:
    lines = ["## Multi-objective search", ""]
    if not moo.get("protocols"):
        return lines + ["No results: run `python -m benchmarks.bench_moo` (benchmarks/results/moo.json).", ""]
    commands = ", ".join(f"`{c}`" for c in moo["commands"])
    lines += [f"From {commands} (benchmarks/results/moo.md; docs/multi_objective.md): hypervolume of the "
              "front of the queried cells, normalised per objective (ideal 0, reference point 1, declared in each "
              f"protocol file), mean ± std over {len(moo['seeds'])} seeds, and its share of the table's true "
              "front's hypervolume.", ""]
    for name, entry in moo["protocols"].items():
        if "front" not in entry or not entry["methods"]:
            continue
        true = entry["front"]["hypervolume"]
        budgets = [b for b in moo["budgets"] if all(str(b) in m["hypervolume"] for m in entry["methods"].values())]
        plot = results / f"moo_{name}.png"
        lines += [f"### {name}", "", f"True front: {len(entry['front']['front'])} cells, hypervolume {true:.4f}.", ""]
        if plot.is_file():
            shutil.copyfile(plot, out / "plots" / plot.name)
            lines += [f"![{name}](plots/{plot.name})", ""]
        lines += ["| method | " + " | ".join(f"{b} queries" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
        for method, m in entry["methods"].items():
            cells = [f"{h['mean']:.4f} ± {h['std']:.4f} ({100 * h['mean'] / true:.1f} %)"
                     for h in (m["hypervolume"][str(b)] for b in budgets)]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += reach_lines(entry, len(moo["seeds"]))
    return lines + [f"- {line}" for line in moo.get("verdict", [])] + [""]


def reach_lines(entry: dict[str, Any], seeds: int) -> list[str]:
    """bench_moo's `reach` part of a protocol: the baselines' share of the true front's hypervolume by budget."""
    if not entry.get("reach"):
        return []
    true = entry["front"]["hypervolume"]
    budgets = sorted({int(b) for r in entry["reach"].values() for b in r})
    lines = [f"How far the baselines get with more queries (the same {seeds} seeds; share of the true front's "
             "hypervolume, mean):", "",
             "| method | " + " | ".join(f"{b} queries" for b in budgets) + " |", "|---" * (len(budgets) + 1) + "|"]
    lines += [f"| {method} | " + " | ".join(f"{100 * r[str(b)] / true:.1f} %" if str(b) in r else "—" for b in budgets)
              + " |" for method, r in entry["reach"].items()]
    return lines + [""]


#: the results part: bench scripts' committed tables the report carries, in its order
RESULT_TABLES = ("proxies_darts.md", "live_comparison.md")


def read_results(results: Path = RESULTS) -> dict[str, str]:
    """The committed tables of `RESULT_TABLES` that exist, by file name."""
    return {name: (results / name).read_text() for name in RESULT_TABLES if (results / name).is_file()}


def results_section(tables: dict[str, str]) -> list[str]:
    """Each table one heading level down, under the file it comes from."""
    lines = []
    for name, text in tables.items():
        body = [("#" + line if line.startswith("#") else line) for line in text.strip().splitlines()]
        lines += [*body[:1], "", f"From benchmarks/results/{name} (committed: made by the command it names, not by this invocation).", *body[1:], ""]
    return lines
