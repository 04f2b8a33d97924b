"""The one search loop: drives a Strategy against an Oracle, records, checkpoints, resumes."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_nas.benchmarks.oracle import NotInBenchmark, Oracle
from lightning_nas.search.strategy import Strategy

STATE_FILE = "search_state.pt"
STALL_LIMIT = 1000  # consecutive asks that bring nothing new before the loop gives up


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SearchLoop:
    """Owns the budget (through the oracle), the RNG, the history and the checkpoints.

    After each round `search_state.pt` is rewritten atomically; a loop started on a run
    directory that holds one continues where it stopped and ends with the same result as an
    uninterrupted run (numpy and torch RNG states, strategy and surrogate state are restored)."""

    def __init__(
        self,
        strategy: Strategy,
        oracle: Oracle,
        run_dir: str | os.PathLike,
        seed: int = 0,
        ask_batch: int = 1,
        surrogate: Any = None,
        config: dict | None = None,
        progress: bool = True,
        initial: list | None = None,
    ):
        if ask_batch < 1:
            raise ValueError(f"ask_batch must be >= 1, got {ask_batch}")
        self.strategy, self.oracle, self.surrogate = strategy, oracle, surrogate
        self.run_dir, self.seed, self.ask_batch = Path(run_dir), seed, ask_batch
        self.config, self.progress = config or {}, progress
        self.initial = initial or []  # architectures charged first (a predictor's training labels)
        self.history: list[dict[str, Any]] = []
        self.skipped_not_in_benchmark = 0
        self.elapsed = 0.0

    # --- the loop ------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        self.strategy.setup(self.oracle.space, rng, self.surrogate)
        resumed = self._restore(rng)
        if not resumed and self.initial:
            self._charge_initial()
        with self._progress_bar(resumed) as advance:
            stalled = 0
            while self.oracle.remaining > 0:
                start = time.perf_counter()
                before = self.oracle.used
                archs = self.strategy.ask(int(min(self.ask_batch, self.oracle.remaining)))
                told, scores = [], []
                for a in archs:
                    if self.oracle.remaining <= 0 and self.oracle.space.key(a) not in self.oracle.seen:
                        break
                    try:
                        evaluation = self.oracle.evaluate(a)
                    except NotInBenchmark:
                        self.skipped_not_in_benchmark += 1
                        continue
                    if self.oracle.used > len(self.history):
                        self._record(a, evaluation)
                    told.append(a)
                    scores.append(evaluation.score)
                self.strategy.tell(told, scores)
                self.elapsed += time.perf_counter() - start
                stalled = 0 if self.oracle.used > before else stalled + 1
                if stalled >= STALL_LIMIT:
                    raise RuntimeError(
                        f"{type(self.strategy).__name__} proposed only known or unknown architectures "
                        f"{STALL_LIMIT} times in a row after {self.oracle.used} queries; search stopped"
                    )
                self._checkpoint(rng)
                advance(self.oracle.used - before, self.history[-1] if self.history else None)
        results = self.results()
        self.write_outputs(results)
        return results

    def _charge_initial(self) -> None:
        """Evaluate the predictor's training architectures as the first queries; the strategy and
        the surrogate learn their scores like any other labels (no extra fine-tuning)."""
        archs, scores = [], []
        for a in self.initial:
            evaluation = self.oracle.evaluate(a)
            self._record(a, evaluation)
            archs.append(a)
            scores.append(evaluation.score)
        if hasattr(self.surrogate, "labelled"):
            self.surrogate.labelled.update((a.genotype, s) for a, s in zip(archs, scores))
        self.strategy.tell(archs, scores)

    def _record(self, arch, evaluation) -> None:
        best = self.history[-1]["best"] if self.history else None
        if best is None or evaluation.score > best["score"]:
            best = {"arch": str(arch), "score": evaluation.score, "report": evaluation.report}
        self.history.append(
            {
                "query": len(self.history) + 1,
                "arch": str(arch),
                "score": evaluation.score,
                "report": evaluation.report,
                "best": best,
                "elapsed_s": round(self.elapsed, 4),
            }
        )

    # --- resumption ----------------------------------------------------------------------
    def _checkpoint(self, rng: np.random.Generator) -> None:
        state = {
            "history": json.dumps(self.history),
            "seen": json.dumps({k: [e.score, e.report, e.cost] for k, e in self.oracle.seen.items()}),
            "rng": json.dumps(rng.bit_generator.state),
            "torch_rng": torch.get_rng_state(),
            "strategy": self.strategy.state_dict(),
            "surrogate": self.surrogate.state_dict() if hasattr(self.surrogate, "state_dict") else {},
            "skipped_not_in_benchmark": self.skipped_not_in_benchmark,
            "elapsed": self.elapsed,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write(self.run_dir / STATE_FILE, buffer.getvalue())

    def _restore(self, rng: np.random.Generator) -> bool:
        path = self.run_dir / STATE_FILE
        if not path.is_file():
            return False
        from lightning_nas.benchmarks.oracle import Evaluation

        state = torch.load(path, weights_only=True)
        self.history = json.loads(state["history"])
        self.oracle.seen = {k: Evaluation(s, r, c) for k, (s, r, c) in json.loads(state["seen"]).items()}
        rng.bit_generator.state = json.loads(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        self.strategy.load_state_dict(state["strategy"])
        if state["surrogate"]:
            self.surrogate.load_state_dict(state["surrogate"])
        self.skipped_not_in_benchmark = int(state["skipped_not_in_benchmark"])
        self.elapsed = float(state["elapsed"])
        return True

    # --- outputs -------------------------------------------------------------------------
    def results(self) -> dict[str, Any]:
        stats = getattr(self.strategy, "stats", None)
        final = self.history[-1]["best"] if self.history else None
        return {
            "config": self.config,
            "seed": self.seed,
            "budget": self.oracle.budget,
            "strategy": type(self.strategy).__name__,
            "queries": self.history,
            "best": final,
            "skipped_not_in_benchmark": self.skipped_not_in_benchmark,
            "strategy_stats": stats() if callable(stats) else {},
            "predictor_labels_charged": len(self.initial),
            "wall_time_s": round(self.elapsed, 3),
        }

    def write_outputs(self, results: dict[str, Any]) -> None:
        atomic_write(self.run_dir / "results.json", json.dumps(results, indent=1, default=float))
        report_names = sorted(results["queries"][0]["report"]) if results["queries"] else []
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["query", "arch", "score", *report_names, "best_arch", "best_score", *[f"best_{n}" for n in report_names]])
        for q in results["queries"]:
            writer.writerow(
                [q["query"], q["arch"], q["score"], *[q["report"][n] for n in report_names],
                 q["best"]["arch"], q["best"]["score"], *[q["best"]["report"][n] for n in report_names]]
            )
        atomic_write(self.run_dir / "queries.csv", out.getvalue())
        atomic_write(self.run_dir / "trajectory.png", trajectory_png(results, report_names))

    def _progress_bar(self, resumed: bool):
        from contextlib import contextmanager

        @contextmanager
        def bar():
            if not self.progress:
                yield lambda n, last: None
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            budget = self.oracle.budget if self.oracle.budget is not None else None
            columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TextColumn("{task.fields[best]}")]
            with Progress(*columns, transient=False) as progress:
                name = type(self.strategy).__name__ + (" (resumed)" if resumed else "")
                task = progress.add_task(name, total=budget, completed=self.oracle.used, best="")

                def advance(n: int, last: dict | None) -> None:
                    best = f"best {last['best']['score']:.3f}" if last else ""
                    progress.update(task, advance=n, best=best)

                yield advance

        return bar()


def trajectory_png(results: dict[str, Any], report_names: list[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    queries = results["queries"]
    x = [q["query"] for q in queries]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(x, [q["best"]["score"] for q in queries], label="best objective (search metric)")
    for name in report_names:
        ax.plot(x, [q["best"]["report"][name] for q in queries], label=f"{name} of best", linestyle="--")
    ax.set_xlabel("oracle queries")
    ax.set_ylabel("metric")
    ax.set_title(f"{results['strategy']} seed {results['seed']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def best_after(results: dict[str, Any], budget: int) -> dict[str, Any] | None:
    """The best-by-objective record after `budget` queries (None if the run made no query)."""
    queries = results["queries"][:budget]
    return queries[-1]["best"] if queries else None


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return float(np.mean(values)), float(np.std(values))
