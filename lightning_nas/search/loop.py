"""The one search loop: drives a Strategy against an Oracle, records, checkpoints, resumes."""
from __future__ import annotations

import io
import json
import math
import os
import random
import time
from collections import deque
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lightning_nas.benchmarks.oracle import Evaluation, NotInBenchmark, Oracle
from lightning_nas.errors import ConfigError
from lightning_nas.io import atomic_write
from lightning_nas.search.objectives import Objectives
from lightning_nas.search.journal import JOURNAL_FILE, Charge, Journal, Tail
from lightning_nas.search.outputs import write_outputs
from lightning_nas.search.ranks import Ranks
from lightning_nas.search.stopping import StopRequests
from lightning_nas.search.strategy import Strategy
from lightning_nas.search.surrogate import Surrogate, fit_records

STATE_FILE = "search_state.pt"
STALL_LIMIT = 1000  # consecutive rounds that bring nothing new before the loop stops early
#: a full checkpoint is written once the work since the last one is 1/CHECKPOINT_SHARE times as long as
#: writing the last one took: its cost stays this share of the search's time however long the history
CHECKPOINT_SHARE = 0.05


class SearchLoop:
    """Owns the budget (through the oracle), the RNGs, the history and the checkpoints.

    Each round appends the oracle's answers to `search_journal.jsonl`; the full state (python, numpy
    and torch RNG states, strategy and surrogate state, history) goes to `search_state.pt`, written
    atomically, whenever that costs at most `CHECKPOINT_SHARE` of the work since the last one, so a
    query costs the same at the 10,000th as at the 100th (`lightning_nas.search.journal`). A loop
    started on a run directory that holds them continues where it stopped and ends with the same
    results.json as an uninterrupted run. SIGINT / SIGTERM stop it after the round in progress,
    with a checkpoint (`StopRequests`). Under DDP every rank runs the loop: rank 0 writes the files,
    and new candidates are evaluated once, shared out among the ranks when the oracle's evaluations
    are costly.

    A charged answer without a finite score (a table cell whose objective is blank or NaN) uses
    budget but is neither recorded nor told to the strategy (`skipped_without_objective`); under
    `table_only` such cells are not offered at all. A search that can query nothing more (every
    answerable cell queried, or `STALL_LIMIT` rounds without a new query) ends early with its
    results and says why (`stopped_early`). Each query, and what the strategy and the predictor
    report of a round (`round_metrics()`), goes to `loggers` (Lightning loggers)."""

    checkpoint_share = CHECKPOINT_SHARE

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
        loggers: Sequence[Logger] = (),
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
        self.loggers = list(loggers) if self.ranks.is_zero else []
        self._logging = False  # whether the loggers have had the run's settings
        self.history: list[dict[str, Any]] = []
        self.query_seconds: list[float] = []  # wall clock at each query, for timing.json
        self.skipped_not_in_benchmark = 0
        self.skipped_without_objective = 0
        self.stalled = 0  # rounds in a row without a new query
        self.stopped_early: str | None = None
        self.elapsed = 0.0
        self.journal = Journal(self.run_dir / JOURNAL_FILE, self.identity())
        self._unjournaled: list[Charge] = []
        self._replay: deque[Charge] = deque()  # journaled answers still to be charged again after a restart
        self._replay_elapsed: float | None = None
        self._work = 0.0  # seconds of rounds since the last full checkpoint
        self._unsaved = False  # whether the state moved on since the last full checkpoint
        self._checkpoint_cost = 0.0  # seconds the last full checkpoint took

    # --- the loop ------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        random.seed(self.seed)
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        if self.surrogate is not None:
            self.surrogate.setup(rng)
        self.strategy.setup(self.oracle.space, rng, self.surrogate)
        if self.table_only:
            self.strategy.restrict(self.oracle.contains, self.oracle.draw, self.oracle.answerable)
        if self.objectives is not None:
            self.objectives.check(self.ranks.size)
            self.strategy.use_objectives(self.objectives)
        status = "failed"
        try:
            checkpointed, journaled = self._restore(rng)
            self._start_logging()
            if not checkpointed and self.initial:
                self._charge_initial()
                self._after_round(rng, 0.0)
            with self.stops, self._progress_bar(checkpointed or journaled) as advance:
                while self.oracle.remaining > 0 and not self._stop_early():
                    start, before = time.perf_counter(), self.oracle.used
                    try:
                        self._round()
                    except SIGTERMException:  # a Lightning fine-tune inside the round saw SIGTERM first
                        if not self.stops.requested:
                            raise
                        raise self._stopped(checkpointed=before) from None
                    self.stalled = 0 if self.oracle.used > before else self.stalled + 1
                    self._after_round(rng, time.perf_counter() - start)
                    advance(self.oracle.used - before, self.history[-1] if self.history else None)
                    self.stops.signum = self.ranks.broadcast(self.stops.signum)  # rank 0 decides for all
                    if self.stops.requested and self.oracle.remaining > 0:
                        if not self._replay:  # (during a replay the journal still holds what is to come)
                            self._checkpoint(rng)
                        raise self._stopped(checkpointed=self.oracle.used)
            if self._unsaved:
                self._checkpoint(rng)
            results = self.results()
            if self.ranks.is_zero:
                write_outputs(self.run_dir, results, self.timing())
            status = "success"
            return results
        finally:
            self.journal.close()
            for logger in self.loggers:
                logger.finalize(status)

    def _round(self) -> None:
        archs = self.strategy.ask(int(min(self.ask_batch, self.oracle.remaining)))
        self._share_out(archs)
        told, scores = [], []
        for a in archs:
            if self.oracle.remaining <= 0 and self.oracle.space.key(a) not in self.oracle.seen:
                break
            evaluation = self._query(a)
            if evaluation is not None and math.isfinite(evaluation.score):
                told.append(a)
                scores.append(evaluation.score)
        self.strategy.tell(told, scores)

    def _query(self, arch) -> Evaluation | None:
        """The oracle's answer for `arch`, charged and recorded when new; None when it is skipped
        for free (not in the table; under table_only, not offered)."""
        key = self.oracle.space.key(arch)
        if key not in self.oracle.seen:
            if self.table_only and not self.oracle.contains(arch):
                self.skipped_not_in_benchmark += 1
                return None
            self._check_replay(arch, key)
        before = self.oracle.used
        try:
            evaluation = self.oracle.evaluate(arch, key)
        except NotInBenchmark:
            self.skipped_not_in_benchmark += 1
            return None
        if self.oracle.used > before:
            self._charged(arch, key, evaluation)
        return evaluation

    def _stop_early(self) -> bool:
        """Whether nothing more can be queried; `stopped_early` says why."""
        if self.stopped_early is not None:  # a finished run asked again
            return True
        capacity = self.oracle.capacity(self.table_only)
        if self.oracle.used >= capacity:
            self.stopped_early = (f"every architecture the {'table can answer' if self.table_only else 'table holds'} "
                                  f"({capacity}) has been queried")
        elif self.stalled and getattr(self.strategy, "pool_exhausted", False):
            self.stopped_early = (f"{type(self.strategy).__name__} has queried every architecture of the table it "
                                  "would propose (it counts cells that are one architecture, such as isomorphic "
                                  "ones, once)")
        elif self.stalled >= STALL_LIMIT:
            self.stopped_early = (
                f"{type(self.strategy).__name__} proposed only architectures already queried or that the oracle "
                f"cannot answer, {STALL_LIMIT} rounds in a row"
                + ("" if self.table_only else " (a table that holds part of its space? set table_only: true)")
            )
        self._unsaved |= self.stopped_early is not None  # the final checkpoint says why
        return self.stopped_early is not None

    def _share_out(self, archs: list) -> None:
        """With several ranks, answer the round's new architectures once for all of them: each rank
        evaluates its share when evaluations are costly (live training), otherwise rank 0 answers."""
        if self.ranks.size == 1:
            return
        key, oracle = self.oracle.space.key, self.oracle
        new = list({key(a): a for a in archs if key(a) not in oracle.seen and key(a) not in oracle.prefetched}
                   .values())
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
            evaluation = self._query(a)
            if evaluation is not None and math.isfinite(evaluation.score):
                archs.append(a)
                scores.append(evaluation.score)
        if self.surrogate is not None:
            self.surrogate.record(archs, scores)
        self.strategy.tell(archs, scores)

    def _charged(self, arch, key: str, evaluation: Evaluation) -> None:
        """A new charge: into the journal (unless replayed from it), and into the history when it has a score."""
        if self._replay:
            seconds = self._replay.popleft().seconds
        else:
            seconds = round(self.elapsed, 4)
            self._unjournaled.append(Charge(key, evaluation, seconds))
        if not math.isfinite(evaluation.score):
            self.skipped_without_objective += 1
            return
        best = self.history[-1]["best"] if self.history else None
        if best is None or evaluation.score > best["score"]:
            best = {"arch": str(arch), "score": evaluation.score, "report": evaluation.report}
        entry = {"query": self.oracle.used, "arch": str(arch), "score": evaluation.score,
                 "report": evaluation.report, "best": best}
        if self.objectives is not None:
            self.objectives.annotate(entry, arch, evaluation)
        self.history.append(entry)
        self.query_seconds.append(seconds)
        self._log_query(self.history[-1])

    def _after_round(self, rng: np.random.Generator, seconds: float) -> None:
        """Clock, journal, loggers, and a full checkpoint when one is due."""
        start = time.perf_counter()
        self.elapsed += seconds
        if self._replay_elapsed is not None and not self._replay:  # the replay is over: the clock of the run
            self.elapsed, self._replay_elapsed = max(self.elapsed, self._replay_elapsed), None
        if self.ranks.is_zero and self._unjournaled:
            first = self.oracle.used - len(self._unjournaled)
            self.journal.append(first, self._unjournaled, round(self.elapsed, 4))
        self._unjournaled = []
        self._log_round()
        self._work += seconds + time.perf_counter() - start
        self._unsaved = True
        if not self._replay and self._work * self.checkpoint_share >= self._checkpoint_cost:
            self._checkpoint(rng)

    def _check_replay(self, arch, key: str) -> None:
        """A restarted search must ask again what the journal says it asked; a config changed since would not."""
        if not self._replay or key == self._replay[0].key:
            return
        if key in self.oracle.prefetched or self.oracle.contains(arch):
            raise ConfigError(
                f"the search resumed from {self.run_dir} went another way than before it stopped (query "
                f"{self.oracle.used + 1} is {arch} now, {self._replay[0].key} in {self.journal.path}): resume with "
                "the same config and arguments (e.g. ask_batch), or give another --run_dir"
            )

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
        """The full state; it empties the journal."""
        self._work, self._unsaved = 0.0, False
        if not self.ranks.is_zero:
            return
        start = time.perf_counter()
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
            "skipped_without_objective": self.skipped_without_objective,
            "stalled": self.stalled,
            "stopped_early": self.stopped_early or "",
            "elapsed": self.elapsed,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write(self.run_dir / STATE_FILE, buffer.getvalue())
        self.journal.start()
        self._checkpoint_cost = time.perf_counter() - start

    def _restore(self, rng: np.random.Generator) -> tuple[bool, bool]:
        """Load the checkpoint, if any, and hand the journal's later answers to the oracle, to be
        charged again as the rounds after the checkpoint are run again. Whether there was a
        checkpoint, and whether the journal held answers beyond it."""
        path = self.run_dir / STATE_FILE
        saved = self.ranks.broadcast(self._read_saved(path) if self.ranks.is_zero else None)
        state, tail = saved
        charged = len(json.loads(state["seen"])) if state is not None else 0
        made = charged + len(tail.charges)
        if self.oracle.budget is not None and made > self.oracle.budget:
            raise ConfigError(
                f"{path} holds a search with {made} queries, more than the budget of {self.oracle.budget}: "
                f"raise --budget to at least {made}, or give another --run_dir"
            )
        if state is not None:
            self._load(state, rng)
        self.oracle.prefetched.update({c.key: c.evaluation for c in tail.charges})
        self._replay = deque(tail.charges)
        self._replay_elapsed = tail.elapsed if tail.charges else None
        return state is not None, bool(tail.charges)

    def _load(self, state: dict[str, Any], rng: np.random.Generator) -> None:
        self.history = json.loads(state["history"])
        if self.objectives is not None:
            self.objectives.restore(self.history)
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
        self.skipped_without_objective = int(state.get("skipped_without_objective", 0))  # absent in older ones
        self.stalled = int(state.get("stalled", 0))
        self.stopped_early = state.get("stopped_early") or None
        self.elapsed = float(state["elapsed"])

    def _read_saved(self, path: Path) -> tuple[dict[str, Any] | None, Tail]:
        state = self._read_state(path)
        charged = len(json.loads(state["seen"])) if state is not None else 0
        return state, self.journal.after(charged)

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

    # --- loggers -------------------------------------------------------------------------
    def _start_logging(self) -> None:
        """The queries a resumed run made before (a logger starts afresh)."""
        for record in self.history:
            self._log_query(record)

    def _log(self, metrics: dict[str, float], step: int) -> None:
        """To every logger; the run's settings first (so a search that fails before its first query
        leaves no log)."""
        if not self._logging:
            for logger in self.loggers:
                logger.log_hyperparams({"strategy": type(self.strategy).__name__, "seed": self.seed,
                                        "budget": self.oracle.budget, **self.config})
            self._logging = True
        for logger in self.loggers:
            logger.log_metrics(metrics, step=step)

    def _log_query(self, record: dict[str, Any]) -> None:
        if self.loggers:
            self._log({"score": record["score"], **record["report"], "best_score": record["best"]["score"],
                       **{f"best_{k}": v for k, v in record["best"]["report"].items()}}, record["query"])

    def _log_round(self) -> None:
        """What the strategy and its predictor report of the round just ended (e.g. a fine-tune's loss)."""
        if not self.loggers:
            return
        metrics = {}
        for part in (self.strategy, self.surrogate):
            report = getattr(part, "round_metrics", None)
            metrics.update(report() if callable(report) else {})
        if metrics:
            self._log(metrics, self.oracle.used)

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
            "skipped_without_objective": self.skipped_without_objective,
            "stopped_early": self.stopped_early,
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

