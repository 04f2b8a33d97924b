"""The one search loop: drives a Strategy against an Oracle, records, checkpoints, resumes."""
from __future__ import annotations

import io
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning.pytorch.utilities.exceptions import SIGTERMException

from lightning_nas.benchmarks.oracle import Evaluation, NotInBenchmark, Oracle
from lightning_nas.errors import ConfigError
from lightning_nas.io import atomic_write
from lightning_nas.search.objectives import Objectives
from lightning_nas.search.outputs import write_outputs
from lightning_nas.search.ranks import Ranks
from lightning_nas.search.stopping import StopRequests
from lightning_nas.search.strategy import Strategy
from lightning_nas.search.surrogate import Surrogate, fit_records

STATE_FILE = "search_state.pt"
STALL_LIMIT = 1000  # consecutive asks that bring nothing new before the loop gives up


class SearchLoop:
    """Owns the budget (through the oracle), the RNGs, the history and the checkpoints.

    After each round `search_state.pt` is rewritten atomically; a loop started on a run
    directory that holds one continues where it stopped and ends with the same results.json as an
    uninterrupted run (python, numpy and torch RNG states, strategy and surrogate state are restored).
    SIGINT / SIGTERM stop it after the round in progress is checkpointed (`StopRequests`).
    Under DDP every rank runs the loop: rank 0 writes the files, and new candidates are evaluated
    once, shared out among the ranks when the oracle's evaluations are costly."""

    def __init__(
        self,
        strategy: Strategy,
        oracle: Oracle,
        run_dir: str | os.PathLike,
        seed: int = 0,
        ask_batch: int = 1,
        surrogate: Surrogate | None = None,
        config: dict | None = None,
        progress: bool = True,
        initial: list | None = None,
        stop_requests: StopRequests | None = None,
        table_only: bool = False,
        fits: list[dict[str, Any]] | None = None,
        objectives: Objectives | None = None,
    ):
        if ask_batch < 1:
            raise ConfigError(f"ask_batch must be >= 1, got {ask_batch}")
        self.strategy, self.oracle, self.surrogate = strategy, oracle, surrogate
        self.run_dir, self.seed, self.ask_batch = Path(run_dir), seed, ask_batch
        self.config = config or {}
        self.ranks = Ranks()
        self.progress = progress and self.ranks.is_zero
        self.stops = stop_requests or StopRequests()
        self.initial = initial or []  # architectures charged first (a predictor's training labels)
        self.table_only = table_only
        self.fits = fits or []  # the fits the predictor came from (lightning_nas.search.fits)
        self.objectives = objectives  # several objectives or constraints (search/objectives.py)
        self.history: list[dict[str, Any]] = []
        self.query_seconds: list[float] = []  # wall clock at each query, for timing.json
        self.skipped_not_in_benchmark = 0
        self.elapsed = 0.0

    # --- the loop ------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        random.seed(self.seed)
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        if self.surrogate is not None:
            self.surrogate.setup(rng)
        self.strategy.setup(self.oracle.space, rng, self.surrogate)
        if self.table_only:
            self.strategy.restrict(self.oracle.contains, self.oracle.draw)
        if self.objectives is not None:
            self.objectives.check(self.ranks.size)
            self.strategy.use_objectives(self.objectives)
        resumed = self._restore(rng)
        if not resumed and self.initial:
            self._charge_initial()
        with self.stops, self._progress_bar(resumed) as advance:
            stalled = 0
            while self.oracle.remaining > 0:
                start, before = time.perf_counter(), self.oracle.used
                try:
                    self._round()
                except SIGTERMException:  # a Lightning fine-tune inside the round saw SIGTERM first
                    if not self.stops.requested:
                        raise
                    raise self._stopped(checkpointed=before) from None
                self.elapsed += time.perf_counter() - start
                stalled = 0 if self.oracle.used > before else stalled + 1
                if stalled >= STALL_LIMIT:
                    raise RuntimeError(
                        f"{type(self.strategy).__name__} proposed only known or unknown architectures "
                        f"{STALL_LIMIT} times in a row after {self.oracle.used} queries; search stopped"
                    )
                self._checkpoint(rng)
                advance(self.oracle.used - before, self.history[-1] if self.history else None)
                self.stops.signum = self.ranks.broadcast(self.stops.signum)  # rank 0 decides for all
                if self.stops.requested and self.oracle.remaining > 0:
                    raise self._stopped(checkpointed=self.oracle.used)
        results = self.results()
        if self.ranks.is_zero:
            write_outputs(self.run_dir, results, self.timing())
        return results

    def _round(self) -> None:
        archs = self.strategy.ask(int(min(self.ask_batch, self.oracle.remaining)))
        self._share_out(archs)
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

    def _share_out(self, archs: list) -> None:
        """With several ranks, answer the round's new architectures once for all of them: each rank
        evaluates its share when evaluations are costly (live training), otherwise rank 0 answers."""
        if self.ranks.size == 1:
            return
        key = self.oracle.space.key
        new = list({key(a): a for a in archs if key(a) not in self.oracle.seen}.values())
        new = new[: int(min(len(new), self.oracle.remaining))]
        if self.oracle.shard_evaluations:
            answers: dict[str, Evaluation | None] = {}
            for part in self.ranks.gather({key(a): self.oracle.answer(a) for a in new[self.ranks.rank :: self.ranks.size]}):
                answers.update(part)
        else:
            answers = self.ranks.broadcast({key(a): self.oracle.answer(a) for a in new} if self.ranks.is_zero else None)
        self.oracle.prefetched.update({k: e for k, e in answers.items() if e is not None})

    def _stopped(self, checkpointed: int):
        return self.stops.stop(checkpointed, self.oracle.budget, str(self.run_dir), self.ranks.is_zero)

    def _charge_initial(self) -> None:
        """Evaluate the predictor's training architectures as the first queries; the strategy and
        the surrogate learn their scores like any other labels (no extra fine-tuning)."""
        self._share_out(self.initial)
        archs, scores = [], []
        for a in self.initial:
            evaluation = self.oracle.evaluate(a)
            self._record(a, evaluation)
            archs.append(a)
            scores.append(evaluation.score)
        if self.surrogate is not None:
            self.surrogate.record(archs, scores)
        self.strategy.tell(archs, scores)

    def _record(self, arch, evaluation) -> None:
        best = self.history[-1]["best"] if self.history else None
        if best is None or evaluation.score > best["score"]:
            best = {"arch": str(arch), "score": evaluation.score, "report": evaluation.report}
        entry = {"query": len(self.history) + 1, "arch": str(arch), "score": evaluation.score,
                 "report": evaluation.report, "best": best}
        if self.objectives is not None:
            self.objectives.annotate(entry, arch, evaluation)
        self.history.append(entry)
        self.query_seconds.append(round(self.elapsed, 4))

    # --- resumption ----------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed by this loop."""
        objective = getattr(self.oracle, "objective_name", None) or type(self.oracle).__name__
        identity = {"strategy": type(self.strategy).__name__, "space": self.oracle.space.name,
                    "objective": objective, "seed": self.seed}
        if self.objectives is not None:
            identity["objectives"] = self.objectives.identity()
        return identity

    def _checkpoint(self, rng: np.random.Generator) -> None:
        if not self.ranks.is_zero:
            return
        state = {
            "identity": json.dumps(self.identity()),
            "history": json.dumps(self.history),
            "query_seconds": json.dumps(self.query_seconds),
            "seen": json.dumps({k: [e.score, e.report, e.cost] for k, e in self.oracle.seen.items()}),
            "rng": json.dumps(rng.bit_generator.state),
            "python_rng": json.dumps(random.getstate()),
            "torch_rng": torch.get_rng_state(),
            "strategy": self.strategy.state_dict(),
            "surrogate": self.surrogate.state_dict() if self.surrogate is not None else {},
            "skipped_not_in_benchmark": self.skipped_not_in_benchmark,
            "elapsed": self.elapsed,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write(self.run_dir / STATE_FILE, buffer.getvalue())

    def _restore(self, rng: np.random.Generator) -> bool:
        path = self.run_dir / STATE_FILE
        state = self.ranks.broadcast(self._read_state(path) if self.ranks.is_zero else None)
        if state is None:
            return False
        self.history = json.loads(state["history"])
        if self.objectives is not None:
            self.objectives.restore(self.history)
        if self.oracle.budget is not None and len(self.history) > self.oracle.budget:
            raise ConfigError(
                f"{path} holds a search with {len(self.history)} queries, more than the budget of "
                f"{self.oracle.budget}: raise --budget to at least {len(self.history)}, or give another --run_dir"
            )
        self.query_seconds = json.loads(state["query_seconds"])
        self.oracle.seen = {k: Evaluation(s, r, c) for k, (s, r, c) in json.loads(state["seen"]).items()}
        rng.bit_generator.state = json.loads(state["rng"])
        version, internal, gauss = json.loads(state["python_rng"])
        random.setstate((version, tuple(internal), gauss))
        torch.set_rng_state(state["torch_rng"])
        self.strategy.load_state_dict(state["strategy"])
        if state["surrogate"]:
            self.surrogate.load_state_dict(state["surrogate"])
        self.skipped_not_in_benchmark = int(state["skipped_not_in_benchmark"])
        self.elapsed = float(state["elapsed"])
        return True

    def _read_state(self, path: Path) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        try:
            state = torch.load(path, weights_only=True)
            saved = json.loads(state["identity"])
        except Exception as e:  # a file from another program or an older version of this one
            raise ConfigError(
                f"{path} is not a search checkpoint this version can resume ({type(e).__name__}): "
                "give another --run_dir, or delete that file to start afresh"
            ) from None
        if saved != self.identity():
            differs = ", ".join(f"{k} {saved.get(k)!r} there, {v!r} here" for k, v in self.identity().items() if saved.get(k) != v)
            raise ConfigError(
                f"{path} belongs to another search ({differs}): give another --run_dir, "
                "or delete that file to start afresh"
            )
        return state

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
            "strategy_stats": dict(sorted(stats().items())) if callable(stats) else {},
            "predictor_labels_charged": len(self.initial),
            "fits": [*self.fits, *fit_records(self.surrogate)],
            **({"objectives": self.objectives.summary()} if self.objectives is not None else {}),
        }

    def timing(self) -> dict[str, Any]:
        timings = getattr(self.strategy, "timings", None)
        return {"wall_time_s": round(self.elapsed, 3), "ranks": self.ranks.size, "query_elapsed_s": self.query_seconds,
                "strategy": timings() if callable(timings) else {},
                **({"costs": self.objectives.timing()} if self.objectives is not None else {})}

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
                    best = f"best {last['best']['score']:.3f}" if last and last["best"] else ""
                    progress.update(task, advance=n, best=best)

                yield advance

        return bar()

