"""Delta-NAS search (Sridhar & Chen, Alg. 2): a population that climbs by predicted gains.

A population of `population_size` architectures starts at random. In each iteration every
member proposes its neighbour (one edit away) with the largest predicted gain F(member, n); the
loop queries the oracle for the proposals and tells the scores back. `accept="always"` moves
every member to its proposal (Alg. 2 as written); `accept="improvement"` moves it only when the
queried score beats the member's, else the member proposes its next-best neighbour next time
(queried neighbours are never proposed again). A member is re-sampled at random ("re-sampling
helps avoid the issue of getting stuck in local minima", Sec. 4.2) when no neighbour has a
predicted gain above `min_gain` (a predicted local optimum: Alg. 2's convergence), when all its
neighbours are queried, or after `patience` rejected proposals in a row.

The gain comes from a `GainSurrogate` (the `DifferencePredictor`'s), or, for any other surrogate
(an absolute predictor, a proxy), from score differences. With `finetune`, every `finetune_every`
labels a gain surrogate is fine-tuned on the real differences of the queried architectures that
are at most `finetune_max_edit` edits apart, any other on all labels (`update`).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from lightning_nas.errors import ConfigError
from lightning_nas.search.mo_modes import DeltaNASMode
from lightning_nas.search.strategy import Strategy
from lightning_nas.search.surrogate import GainSurrogate, Surrogate
from lightning_nas.spaces.base import Architecture, SearchSpace

ACCEPT_RULES = ("always", "improvement")


class DeltaNAS(Strategy):
    surrogate_protocol = Surrogate
    mo: DeltaNASMode | None = None  # the multi-objective mode (search/mo_modes.py)

    def __init__(
        self,
        population_size: int = 10,
        accept: str = "improvement",
        min_gain: float | None = 0.0,
        patience: int | None = None,
        finetune: bool = True,
        finetune_max_edit: int | None = 1,
        finetune_every: int | None = None,
        finetune_epochs: int | None = None,
        finetune_batch_size: int = 64,
        table_draws: bool | None = None,
    ):
        """`table_draws`: under `table_only`, members are (re-)sampled as uniform draws of the table's
        rows (`Strategy.table_draws`)."""
        if population_size < 1:
            raise ConfigError(f"population_size must be >= 1, got {population_size}")
        if accept not in ACCEPT_RULES:
            raise ConfigError(f"accept must be one of {', '.join(ACCEPT_RULES)}, got {accept!r}")
        if patience is not None and patience < 1:
            raise ConfigError(f"patience must be >= 1 or null (never), got {patience}")
        self.population_size, self.accept, self.min_gain, self.patience = population_size, accept, min_gain, patience
        self.finetune, self.finetune_max_edit = finetune, finetune_max_edit
        self.finetune_every = finetune_every or population_size
        self.finetune_epochs, self.finetune_batch_size = finetune_epochs, finetune_batch_size
        self.table_draws = bool(table_draws)
        self._reset()

    def _reset(self) -> None:
        self.members: list[Architecture | None] = [None] * self.population_size  # None: draw a new one
        self.member_scores: list[float] = [math.nan] * self.population_size
        self.rejections: list[int] = [0] * self.population_size
        self.cursor = 0
        self.labels: dict[str, tuple[Architecture, float]] = {}  # benchmark key -> (arch, score)
        self.dead: set[str] = set()  # proposed but never told (e.g. not in the benchmark table)
        self.pending: list[tuple[int, Architecture, str]] = []  # (member, proposal, "step" | "sample")
        self.labels_at_finetune = 0
        self.counts = {"steps_accepted": 0, "steps_rejected": 0, "resamples": 0, "finetunes": 0}

    def setup(self, space: SearchSpace, rng: np.random.Generator, surrogate: Surrogate | None = None) -> None:
        super().setup(space, rng, surrogate)
        self._reset()
        self._gain_fn = surrogate.gains if isinstance(surrogate, GainSurrogate) else self._score_difference

    def use_objectives(self, objectives) -> None:
        self.mo = DeltaNASMode(objectives, self.surrogate, type(self).__name__, self.population_size)

    def _score_difference(self, base: Architecture, candidates: Sequence[Architecture]) -> torch.Tensor:
        scores = self.surrogate.score([base, *candidates]).double()
        return scores[1:] - scores[0]

    # --- ask -------------------------------------------------------------------------------
    def ask(self, n: int) -> list[Architecture]:
        self.pending = []
        for _ in range(min(n, self.population_size)):
            member = self.cursor
            self.cursor = (self.cursor + 1) % self.population_size
            proposal = self._step(member) if self.members[member] is not None else None
            kind = "step"
            if proposal is None:
                self.members[member] = None
                proposal, kind = self._fresh_sample(), "sample"
            self.pending.append((member, proposal, kind))
        return [a for _, a, _ in self.pending]

    def _taken(self) -> set[str]:
        return set(self.labels) | self.dead | {self.space.key(a) for _, a, _ in self.pending}

    def _step(self, member: int) -> Architecture | None:
        """The unqueried neighbour with the largest predicted gain, or None (re-sample the member)."""
        base = self.members[member]
        taken = self._taken() | {self.space.key(base)}
        candidates, keys = [], set()
        for a in self.space.neighbours(base):
            key = self.space.key(a)
            if key not in taken and key not in keys:
                keys.add(key)
                candidates.append(a)
        if not candidates:
            return None
        gains = torch.as_tensor(self._gain_fn(base, candidates), dtype=torch.float64)
        if self.mo is not None:  # the member's scalarised change (search/mo_modes.py)
            gains = self.mo.utility(member, base, candidates, gains)
        best = int(torch.argmax(gains))
        if self.min_gain is not None and float(gains[best]) <= self.min_gain:
            return None
        return candidates[best]

    def _fresh_sample(self) -> Architecture:
        return (self.sample_unseen(1, self._taken()) or [self.sample()])[0]

    # --- tell ------------------------------------------------------------------------------
    def tell(self, archs: Sequence[Architecture], scores: Sequence[float]) -> None:
        told = {self.space.key(a): float(s) for a, s in zip(archs, scores)}
        for a in archs:
            self.labels[self.space.key(a)] = (a, told[self.space.key(a)])
        for member, proposal, kind in self.pending:
            key = self.space.key(proposal)
            if key not in told:
                self.dead.add(key)
                continue
            self._move(member, proposal, told[key], kind)
        self.pending = []
        if self.finetune and len(self.labels) - self.labels_at_finetune >= self.finetune_every:
            self._finetune()

    def _move(self, member: int, proposal: Architecture, score: float, kind: str) -> None:
        if kind == "sample":
            self.counts["resamples"] += int(not math.isnan(self.member_scores[member]))  # not the first draw
            self.members[member], self.member_scores[member], self.rejections[member] = proposal, score, 0
            return
        better = score > self.member_scores[member] if self.mo is None else \
            self.mo.improves(member, proposal, self.members[member])
        if self.accept == "always" or better:
            self.members[member], self.member_scores[member], self.rejections[member] = proposal, score, 0
            self.counts["steps_accepted"] += 1
            return
        self.counts["steps_rejected"] += 1
        self.rejections[member] += 1
        if self.patience is not None and self.rejections[member] >= self.patience:
            self.members[member] = None

    def _finetune(self) -> None:
        """A gain surrogate: on real differences of close labelled pairs (or, in absolute mode, on
        the labels); any other surrogate: its own `update` with every label so far."""
        archs = [a for a, _ in self.labels.values()]
        y = np.array([s for _, s in self.labels.values()])
        self.labels_at_finetune = len(self.labels)
        if not isinstance(self.surrogate, GainSurrogate):
            self.surrogate.update(archs, y.tolist())
            return
        if self.surrogate.fit_gains(archs, y, self.finetune_max_edit, self.finetune_epochs,
                                    self.finetune_batch_size, self.rng):
            self.counts["finetunes"] += 1

    # --- resumption ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        present = [m is not None for m in self.members]
        return {
            "members": [list(m.genotype) if m is not None else [] for m in self.members],
            "present": present,
            "member_scores": list(self.member_scores),
            "rejections": list(self.rejections),
            "cursor": self.cursor,
            "label_genotypes": self._pack([a for a, _ in self.labels.values()]),
            "label_scores": [s for _, s in self.labels.values()],
            "dead": sorted(self.dead),
            "labels_at_finetune": self.labels_at_finetune,
            "counts": [self.counts[k] for k in sorted(self.counts)],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.members = [self.space.make(g) if p else None for g, p in zip(state["members"], state["present"])]
        self.member_scores = [float(s) for s in state["member_scores"]]
        self.rejections = [int(r) for r in state["rejections"]]
        self.cursor = int(state["cursor"])
        archs = self._unpack(state["label_genotypes"])
        self.labels = {self.space.key(a): (a, float(s)) for a, s in zip(archs, state["label_scores"])}
        self.dead = set(state["dead"])
        self.labels_at_finetune = int(state["labels_at_finetune"])
        self.counts = dict(zip(sorted(self.counts), (int(c) for c in state["counts"])))
        self.pending = []

    def stats(self) -> dict[str, Any]:
        return {**self.counts, "labels": len(self.labels), "not_in_benchmark": len(self.dead)}
