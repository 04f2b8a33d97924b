"""CTNAS (Chen et al., "Contrastive Neural Architecture Search with Neural Architecture Comparators").

Inside the search loop one round is Alg. 1 of the paper with real queries added:

1. `controller_steps` REINFORCE steps of the LSTM policy with reward NAC(a, baseline) and an entropy
   bonus; every `baseline_every` steps the baseline is updated by Alg. 2 (curriculum: among the past
   baselines and `num_derive` fresh samples, the one with the highest mean comparison score wins);
2. data exploration: `explore_pairs` pairs of policy samples are labelled by the NAC's own argmax,
   and those it is at least `pseudo_threshold` sure about join its training set;
3. `ask` returns the best new candidates by NAC score among `candidate_pool` policy samples (plus
   the baselines, and `random_candidates` uniform samples); the loop queries the oracle and `tell`
   retrains the NAC (through its `PairwiseSurrogate`) on every label gathered so far,
   pseudo-labelled pairs included.

Before the first round `initial_size` uniform samples are queried (Alg. 1, line 1), so every label
the NAC ever sees is paid for from the search budget.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from lightning_nas.errors import ConfigError
from lightning_nas.nn.controller import ArchitectureController, PolicySample, sample_valid, split_valid
from lightning_nas.search.mo_modes import CTNASMode
from lightning_nas.search.strategy import Strategy
from lightning_nas.search.surrogate import PairwiseSurrogate, as_numpy
from lightning_nas.spaces.base import Architecture, SearchSpace

INVALID_SAMPLE_POLICIES = ("penalise", "resample")


def curriculum_baseline(probabilities: torch.Tensor) -> int:
    """Alg. 2: index of the candidate with the highest mean P[i beats j] over the others (j != i).
    Ties go to the later candidate, as the algorithm's `s_i >= s_hat` does."""
    n = probabilities.size(0)
    if n == 1:
        return 0
    off_diagonal = probabilities * (1 - torch.eye(n, dtype=probabilities.dtype))
    scores = off_diagonal.sum(dim=1) / (n - 1)
    return int(n - 1 - torch.argmax(scores.flip(0)))


class CTNAS(Strategy):
    surrogate_protocol = PairwiseSurrogate
    surrogate_hint = "the comparator lightning_nas.predictors.comparator.NeuralArchitectureComparator"
    mo: CTNASMode | None = None  # the multi-objective mode (search/mo_modes.py)

    def __init__(
        self,
        initial_size: int = 10,
        controller_steps: int = 50,
        samples_per_step: int = 16,
        hidden_size: int = 64,
        controller_lr: float = 2e-4,
        entropy_coeff: float = 5e-4,
        grad_clip: float | None = None,
        baseline_every: int = 10,
        num_derive: int = 10,
        explore_pairs: int = 100,
        pseudo_threshold: float = 0.9,
        max_pseudo_pairs: int = 2000,
        candidate_pool: int = 100,
        random_candidates: int = 0,
        invalid_samples: str = "penalise",
        invalid_reward: float = 0.0,
        max_draws: int = 50,
        table_draws: bool | None = None,
    ):
        """`table_draws` (None: off; None keeps earlier runs' recipes): under `table_only`, the uniform samples (the first `initial_size`, the
        `random_candidates`) are uniform draws of the table's rows (`Strategy.table_draws`)."""
        if invalid_samples not in INVALID_SAMPLE_POLICIES:
            raise ConfigError(f"invalid_samples must be one of {INVALID_SAMPLE_POLICIES}, got {invalid_samples!r}")
        if not 0.5 <= pseudo_threshold <= 1.0:
            raise ConfigError(f"pseudo_threshold is a confidence in [0.5, 1], got {pseudo_threshold}")
        for name, value in [("controller_steps", controller_steps), ("samples_per_step", samples_per_step),
                            ("baseline_every", baseline_every), ("num_derive", num_derive),
                            ("candidate_pool", candidate_pool), ("max_draws", max_draws)]:
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        if random_candidates < 0:
            raise ConfigError(f"random_candidates must be >= 0, got {random_candidates}")
        if initial_size < 2:
            raise ConfigError(f"initial_size must be >= 2 (the NAC learns from pairs), got {initial_size}")
        self.initial_size, self.controller_steps, self.samples_per_step = initial_size, controller_steps, samples_per_step
        self.hidden_size, self.controller_lr, self.entropy_coeff = hidden_size, controller_lr, entropy_coeff
        self.grad_clip, self.baseline_every, self.num_derive = grad_clip, baseline_every, num_derive
        self.explore_pairs, self.pseudo_threshold, self.max_pseudo_pairs = explore_pairs, pseudo_threshold, max_pseudo_pairs
        self.candidate_pool, self.invalid_samples, self.invalid_reward = candidate_pool, invalid_samples, invalid_reward
        self.max_draws = max_draws
        #: uniform samples the NAC also scores each round, so a collapsed policy cannot hide a better region
        self.random_candidates = random_candidates
        self.table_draws = bool(table_draws)

    # --- setup ---------------------------------------------------------------------------
    def warm_start_size(self) -> int:
        return self.initial_size  # Alg. 1, line 1: M labelled uniform samples train the NAC first

    def setup(self, space: SearchSpace, rng: np.random.Generator,
              surrogate: PairwiseSurrogate | None = None) -> None:
        super().setup(space, rng, surrogate)
        seed = int(rng.integers(2**62))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.controller = ArchitectureController(space.choices(), self.hidden_size)
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.optimizer = torch.optim.Adam(
            self.controller.parameters(), lr=self.controller_lr, betas=(0.5, 0.999), weight_decay=5e-4
        )
        self.seen: set[str] = set()  # keys told back (labelled)
        self.proposed: set[str] = set()  # keys ever returned by ask (an off-table cell is not retried)
        self.labelled = 0
        self.baseline: Architecture | None = None
        self.past_baselines: list[Architecture] = []
        self.pseudo: tuple[list[Architecture], list[Architecture], list[float]] = ([], [], [])
        self.counters = {"policy_steps": 0, "invalid_samples": 0, "baseline_updates": 0, "pseudo_pairs_added": 0}
        self.last_reward = float("nan")

    def use_objectives(self, objectives) -> None:
        self.mo = CTNASMode(objectives, self.surrogate, type(self).__name__)

    # --- ask / tell ----------------------------------------------------------------------
    def ask(self, n: int) -> list[Architecture]:
        if self.labelled < self.initial_size:
            return self._fresh_uniform(min(n, self.initial_size - self.labelled))
        if self.mo is not None:
            self.mo.draw_weights(self.rng)  # this round's weights over the objectives
        if self.baseline is None:
            self.baseline = self._sample(1)[0]
        for _ in range(self.controller_steps):
            self._policy_step()
            if self.counters["policy_steps"] % self.baseline_every == 0:
                self._update_baseline()
        self._explore()
        return self._best_candidates(n)

    def tell(self, archs: Sequence[Architecture], scores: Sequence[float]) -> None:
        new = [self.space.key(a) not in self.seen for a in archs]
        self.seen.update(self.space.key(a) for a in archs)
        self.labelled += sum(new)
        if archs:
            self.surrogate.update(archs, scores)

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "pseudo_pairs": len(self.pseudo[2]), "last_mean_reward": self.last_reward,
                "baseline": str(self.baseline) if self.baseline is not None else None}

    # --- the controller ------------------------------------------------------------------
    def _policy_step(self) -> None:
        """One REINFORCE step: maximise E[NAC(a, baseline)] + entropy_coeff * H(policy)."""
        self.controller.train()
        sample = self._policy_sample()
        archs, valid = split_valid(self.space, sample.genotypes)
        reward = torch.full((len(archs),), float(self.invalid_reward))
        self.counters["invalid_samples"] += int((~valid).sum())
        if valid.any():
            chosen = [a for a, ok in zip(archs, valid.tolist()) if ok]
            with torch.no_grad():
                p = self.surrogate.compare(chosen, [self.baseline] * len(chosen)).float().cpu()
                reward[valid] = p if self.mo is None else self.mo.comparison(p, chosen, [self.baseline] * len(chosen))
        loss = -(sample.log_prob * reward).mean() - self.entropy_coeff * sample.entropy.mean()
        self.optimizer.zero_grad()
        loss.backward()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.controller.parameters(), self.grad_clip)
        self.optimizer.step()
        self.counters["policy_steps"] += 1
        self.last_reward = float(reward.mean())

    def _policy_sample(self) -> PolicySample:
        """`samples_per_step` rows; with invalid_samples='resample' only valid rows are kept and the
        missing ones redrawn (each drawn invalid sample is still counted)."""
        sample = self.controller.sample(self.samples_per_step, self.generator)
        if self.invalid_samples == "penalise":
            return sample
        rows: list[PolicySample] = []
        kept = 0
        for _ in range(self.max_draws):
            _, valid = split_valid(self.space, sample.genotypes)
            self.counters["invalid_samples"] += int((~valid).sum())
            valid[torch.cumsum(valid.long(), 0) > self.samples_per_step - kept] = False
            rows.append(PolicySample(sample.genotypes[valid], sample.log_prob[valid], sample.entropy[valid]))
            kept += int(valid.sum())
            if kept == self.samples_per_step:
                break
            sample = self.controller.sample(self.samples_per_step - kept, self.generator)
        if kept == 0:
            raise ConfigError(f"the controller drew no valid {self.space.name} architecture in max_draws={self.max_draws} "
                              "rounds with invalid_samples='resample': use invalid_samples='penalise' or raise max_draws")
        return PolicySample(*(torch.cat([getattr(r, f) for r in rows]) for f in ("genotypes", "log_prob", "entropy")))

    def _sample(self, num: int) -> list[Architecture]:
        self.controller.eval()
        archs, invalid = sample_valid(self.controller, self.space, num, self.generator, self.max_draws)
        self.counters["invalid_samples"] += invalid
        return archs

    # --- curriculum baseline (Alg. 2) ----------------------------------------------------
    @torch.no_grad()
    def _update_baseline(self) -> None:
        if all(self.baseline.genotype != b.genotype for b in self.past_baselines):
            self.past_baselines.append(self.baseline)
        candidates = self.past_baselines + self._sample(self.num_derive)
        probabilities = self.surrogate.compare_all(candidates, candidates).cpu()
        if self.mo is not None:
            probabilities = self.mo.comparison(probabilities, candidates, candidates, outer=True)
        self.baseline = candidates[curriculum_baseline(probabilities)]
        self.counters["baseline_updates"] += 1

    # --- data exploration ----------------------------------------------------------------
    @torch.no_grad()
    def _explore(self) -> None:
        if self.explore_pairs < 1 or not self.surrogate.learns_pseudo_pairs:
            return
        archs = self._sample(2 * self.explore_pairs)
        first, second = archs[: self.explore_pairs], archs[self.explore_pairs :]
        p = self.surrogate.compare(first, second).cpu()
        confident = (torch.maximum(p, 1 - p) >= self.pseudo_threshold).tolist()
        distinct = [self.space.key(a) != self.space.key(b) for a, b in zip(first, second)]
        keep = [i for i, (c, d) in enumerate(zip(confident, distinct)) if c and d]
        self.pseudo = tuple(
            (old + new)[-self.max_pseudo_pairs :]
            for old, new in zip(self.pseudo, ([first[i] for i in keep], [second[i] for i in keep],
                                              [float(p[i] > 0.5) for i in keep]))
        )
        self.counters["pseudo_pairs_added"] += len(keep)
        self.surrogate.set_pseudo_pairs(*self.pseudo)

    # --- candidates for real queries ---------------------------------------------------
    @torch.no_grad()
    def _best_candidates(self, n: int) -> list[Architecture]:
        pool: dict[str, Architecture] = {}
        uniform = [self.sample() for _ in range(self.random_candidates)]
        for a in [*self._sample(self.candidate_pool), self.baseline, *self.past_baselines, *uniform]:
            pool.setdefault(self.space.key(a), a)
        fresh = [a for k, a in pool.items() if k not in self.proposed and self.answerable(a)]
        if not fresh:
            return self._fresh_uniform(n)
        scores = self.surrogate.score(fresh)
        if self.mo is not None:
            order = self.mo.select(fresh, as_numpy(scores), n)
        else:
            order = torch.argsort(scores, descending=True, stable=True).tolist()
        return self._propose([fresh[i] for i in order[:n]])

    def _propose(self, archs: list[Architecture]) -> list[Architecture]:
        self.proposed.update(self.space.key(a) for a in archs)
        return archs

    def _fresh_uniform(self, n: int) -> list[Architecture]:
        """`n` distinct uniform samples never proposed before (fewer if the tries run out)."""
        return self._propose(self.sample_unseen(n, self.proposed) or [self.sample()])

    # --- resumption ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "controller": self.controller.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "seen": sorted(self.seen),
            "proposed": sorted(self.proposed),
            "labelled": self.labelled,
            "baseline": list(self.baseline.genotype) if self.baseline is not None else [],
            "past_baselines": self._pack(self.past_baselines),
            "pseudo_first": self._pack(self.pseudo[0]),
            "pseudo_second": self._pack(self.pseudo[1]),
            "pseudo_labels": list(self.pseudo[2]),
            "counters": dict(self.counters),
            "last_reward": self.last_reward,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.seen = set(state["seen"])
        self.proposed = set(state["proposed"])
        self.labelled = int(state["labelled"])
        self.baseline = self.space.make(state["baseline"]) if state["baseline"] else None
        self.past_baselines = self._unpack(state["past_baselines"])
        self.pseudo = (self._unpack(state["pseudo_first"]), self._unpack(state["pseudo_second"]),
                       [float(t) for t in state["pseudo_labels"]])
        self.counters = {k: int(v) for k, v in state["counters"].items()}
        self.last_reward = float(state["last_reward"])
        self.surrogate.set_pseudo_pairs(*self.pseudo)
