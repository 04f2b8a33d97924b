"""EDNAG: Evolutionary Diffusion-based Neural Architecture Generation (Zhou, Yu & Tang, 2025).

A population of N continuous matrices (`lightning_nas.search.matrix_layout`) is denoised from
Gaussian noise over a DDIM schedule. No score network: the predicted clean sample x̂0 of each
member is the fitness-weighted estimate of the paper's Eq. 8, followed by the DDIM update of Eq. 9,
mutation noise, and selection from parents ∪ offspring (`lightning_nas.search.diffusion`).
Architectures are read off by argmax per row; decodes the space rejects are repaired or re-drawn,
and both are counted.

Fitness comes from a `Surrogate` (`fitness="predictor"`: any trained predictor; `fitness="proxy"`:
a data-free zero-cost proxy of the freshly initialised network, built by the search runner); only
the top-ranked generated architectures go to the oracle, and every oracle call counts against the
loop's budget. With `fitness="oracle"` each generation's unknown members are sent to the loop for
evaluation instead (each one a budgeted query).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from lightning_nas.errors import ConfigError
from lightning_nas.search.diffusion import (
    Genotype,
    alpha_bar_schedule,
    ddim_sigma,
    ddim_step,
    estimate_x0,
    fitness_density,
    normalize_rows,
    polynomial_mutation,
    select_survivors,
    worst_for_unknown,
)
from lightning_nas.search.matrix_layout import DecodeStats, MatrixDecoder
from lightning_nas.search.mo_modes import EDNAGMode
from lightning_nas.search.strategy import Strategy
from lightning_nas.search.surrogate import Surrogate, as_numpy
from lightning_nas.spaces.base import Architecture, SearchSpace
from lightning_nas.training import torch_threads


@dataclass
class Generation:
    """A denoising run in progress: the population `x` [N, D] with its genotypes and fitness (None
    until known) at step `k` (from T down to 0), and the offspring of step k awaiting fitness."""

    x: np.ndarray
    genotypes: list[Genotype]
    fitness: np.ndarray | None
    k: int
    offspring_x: np.ndarray | None = None
    offspring: list[Genotype] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "x": self.x.tolist(),
            "genotypes": [list(g) for g in self.genotypes],
            "fitness": None if self.fitness is None else self.fitness.tolist(),
            "k": self.k,
            "offspring_x": None if self.offspring_x is None else self.offspring_x.tolist(),
            "offspring": None if self.offspring is None else [list(g) for g in self.offspring],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Generation:
        def array(values):
            return None if values is None else np.asarray(values, dtype=np.float64)

        offspring = state["offspring"]
        return cls(array(state["x"]), [tuple(g) for g in state["genotypes"]], array(state["fitness"]),
                   int(state["k"]), array(state["offspring_x"]),
                   None if offspring is None else [tuple(g) for g in offspring])


class EDNAG(Strategy):
    """Training-free fitness-guided denoising (Eqs. 8–9) with elitism / roulette / diversity selection.

    fitness: "predictor" (the surrogate scores every generation; only the best-ranked generated
    architectures are asked of the oracle), "proxy" (the same with a data-free zero-cost proxy,
    `proxy` / `proxy_network`, instead of a trained predictor) or "oracle" (each generation's new
    members are asked of the oracle, each one a query).
    guidance / selection: switch off fitness guidance (g ≡ 1) or selection (offspring replace
    parents) for the paper's ablation. random_start: in predictor mode, the first labels (until the
    oracle has answered that many) come from random architectures instead of an untrained predictor's
    ranking, which clusters them in one corner of the space. Defaults are the paper's (T=100, σ=0.8,
    N=30, 10/70/20 %) and the authors' code (cosine ᾱ, Boltzmann g with temperature 1, polynomial
    mutation 0.6 / 5).
    """

    warm_start_hint = "; set strategy.init_args.random_start (e.g. 10) and finetune: true to train it first"
    mo: EDNAGMode | None = None  # the multi-objective mode (search/mo_modes.py)

    def __init__(
        self,
        fitness: str = "predictor",
        steps: int = 100,
        population_size: int = 30,
        noise_scale: float = 0.8,
        schedule: str = "cosine",
        alpha_eps: float = 1e-4,
        temperature: float = 1.0,
        mutation_rate: float = 0.6,
        mutation_eta: float = 5.0,
        elite_share: float = 0.1,
        roulette_share: float = 0.7,
        diversity_share: float = 0.2,
        normalize: bool = True,
        guidance: bool = True,
        selection: bool = True,
        finetune: bool = True,
        dedup_canonical: bool = True,
        proxy: str = "synflow",
        proxy_network: dict | None = None,
        score_threads: int | None = 1,
        random_start: int = 0,
        table_draws: bool | None = None,
    ):
        if fitness not in ("predictor", "oracle", "proxy"):
            raise ConfigError(f"fitness must be 'predictor', 'oracle' or 'proxy', got {fitness!r}")
        if population_size < 2:
            raise ConfigError(f"population_size must be >= 2, got {population_size}")
        if noise_scale < 0:
            raise ConfigError(f"noise_scale (σ) must be >= 0, got {noise_scale}")
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        if not 0 <= mutation_rate <= 1:
            raise ConfigError(f"mutation_rate must lie in [0, 1], got {mutation_rate}")
        shares = (elite_share, roulette_share, diversity_share)
        if min(shares) < 0 or abs(sum(shares) - 1.0) > 1e-6:
            raise ConfigError(f"elite_share + roulette_share + diversity_share must be 1 (each >= 0), got {shares}")
        self.fitness_mode, self.steps, self.population_size = fitness, steps, population_size
        self.noise_scale, self.temperature = noise_scale, temperature
        self.mutation_rate, self.mutation_eta = mutation_rate, mutation_eta
        self.shares = shares
        self.normalize, self.guidance, self.selection = normalize, guidance, selection
        self.finetune, self.dedup_canonical = finetune, dedup_canonical
        self.alpha_bar = alpha_bar_schedule(steps, schedule, alpha_eps)
        self.surrogate_protocol = None if fitness == "oracle" else Surrogate
        if fitness == "proxy":  # training-free end to end: a zero-cost proxy is the fitness
            self.proxy_surrogate = {"proxy": proxy, "network": proxy_network}
        if score_threads is not None and score_threads < 1:
            raise ConfigError(f"score_threads must be >= 1 or null (leave torch's setting), got {score_threads}")
        self.score_threads = score_threads
        if random_start < 0:
            raise ConfigError(f"random_start must be >= 0, got {random_start}")
        self.random_start = random_start
        self.table_draws = bool(table_draws)  # under table_only: fresh samples drawn from the table's rows
        self._reset_state()

    def _reset_state(self) -> None:
        self.known: dict[Genotype, float] = {}  # oracle answers (tell), by genotype; NaN = no answer
        self.pending: set[Genotype] = set()  # oracle mode: asked, not yet told
        self.asked: set[str] = set()  # canonical forms already sent to the oracle
        self.candidates: list[Genotype] = []  # predictor mode: ranked, not yet asked
        self.scored: dict[Genotype, float] = {}  # predictor mode: surrogate scores of this generation run
        self.run: Generation | None = None  # the generation in progress
        self.runs_done = 0
        self.generation_seconds: list[float] = []

    def warm_start_size(self) -> int:
        """Random cells first, then a predictor fine-tuned on them ranks the generations."""
        return self.random_start if self.fitness_mode == "predictor" and self.finetune else 0

    def setup(self, space: SearchSpace, rng: np.random.Generator, surrogate: Surrogate | None = None) -> None:
        super().setup(space, rng, surrogate)
        self.decoder = MatrixDecoder(space)
        self._reset_state()

    def use_objectives(self, objectives) -> None:
        if self.fitness_mode == "oracle":
            raise ConfigError("EDNAG's multi-objective mode guides the denoising with a predictor or a proxy: "
                              "set fitness: predictor or proxy")
        self.mo = EDNAGMode(objectives, self.surrogate, type(self).__name__)

    # --- Strategy protocol -----------------------------------------------------------------
    def ask(self, n: int) -> list[Architecture]:
        if self.fitness_mode == "oracle":
            return self._ask_oracle(n)
        return self._ask_predicted(n)

    def tell(self, archs: Sequence[Architecture], scores: Sequence[float]) -> None:
        told = {a.genotype for a in archs}
        for g in self.pending - told:  # asked but not answered (not in the benchmark): worst fitness
            self.known.setdefault(g, math.nan)
        self.pending = set()
        for a, s in zip(archs, scores):
            self.known[a.genotype] = float(s)
            self.asked.add(self._identity(a))
        if self.fitness_mode == "predictor" and self.finetune and archs:
            self.surrogate.update(list(archs), [float(s) for s in scores])
            self.candidates = []  # the predictor changed: generate afresh with it

    # --- predictor mode: generate, then hand the best-ranked to the oracle ----------------
    def _ask_predicted(self, n: int) -> list[Architecture]:
        if len(self.known) < self.random_start:  # a predictor without labels ranks arbitrarily
            return self._fresh_samples(min(n, self.random_start - len(self.known)))
        if not self.candidates:
            self.candidates = self.generate()
        out = []
        while self.candidates and len(out) < n:
            out.append(self.space.make(self.candidates.pop(0)))
        if not out:  # everything generated was asked already: fall back to fresh samples
            out = self._fresh_samples(n)
        return out

    def generate(self) -> list[Genotype]:
        """One complete denoising run with surrogate fitness; every generated architecture not yet
        asked, best predicted first (one per canonical form)."""
        start = time.perf_counter()
        self.scored = {}
        if self.mo is not None:
            self.mo.draw_weights(self.rng)  # this run's weights over the objectives
        self._start_run()
        # scoring a generation means ~100 tiny batches (<= 2N graphs): intra-op threads only add
        # contention there, so they are capped (never raised) for the scoring
        cap = None if self.score_threads is None else min(self.score_threads, torch.get_num_threads())
        with torch_threads(cap):
            missing = self._drive()
        if missing:
            raise RuntimeError("a surrogate-scored generation asked for oracle answers; this is a bug")
        ranked = sorted(self.scored, key=lambda g: -self.scored[g])
        if self.mo is not None:  # greedy hypervolume improvement over the recorded front, for the first
            # population_size (a greedy step costs a pass over every generated cell); the rest by predicted score
            scored = list(self.scored)
            order = self.mo.select([self.space.make(g) for g in scored], np.array([self.scored[g] for g in scored]),
                                   self.population_size)
            head = [scored[i] for i in order]
            chosen = set(head)
            ranked = head + [g for g in ranked if g not in chosen]
        self.generation_seconds.append(time.perf_counter() - start)
        out, identities = [], set(self.asked)
        for g in ranked:
            a = self.space.make(g)
            identity = self._identity(a)
            if identity not in identities and self.answerable(a):
                identities.add(identity)
                out.append(g)
        return out

    # --- oracle mode: each generation's unknown members are the queries -------------------
    def _ask_oracle(self, n: int) -> list[Architecture]:
        for _ in range(2):
            if self.run is None:
                self._start_run()
            missing = self._drive()
            if missing:
                self.pending = set(missing[:n])
                return [self.space.make(g) for g in missing[:n]]
            self.run = None  # finished without needing anything new: start a fresh run
        return self._fresh_samples(n)

    # --- the generation state machine --------------------------------------------------------
    def _start_run(self) -> None:
        x = self.rng.standard_normal((self.population_size, self.decoder.layout.dim))
        x, genotypes = self.decoder.decode(x, self.rng)
        self.run = Generation(x, genotypes, None, self.steps)

    def _drive(self) -> list[Genotype]:
        """Advance the run as far as known fitness allows; returns the genotypes that still need
        an oracle answer ([] when the run has finished)."""
        run = self.run
        while True:
            if run.fitness is None:
                f, missing = self._fitness(run.genotypes)
                if missing:
                    return missing
                run.fitness = f
            if run.k == 0:
                self.runs_done += 1
                return []
            if run.offspring_x is None:
                run.offspring_x, run.offspring = self._offspring(run.x, run.fitness, run.k)
            fo, missing = self._fitness(run.offspring)
            if missing:
                return missing
            self._survive(run, fo)

    def _offspring(self, x: np.ndarray, f: np.ndarray, k: int) -> tuple[np.ndarray, list[Genotype]]:
        abar_t, abar_prev = self.alpha_bar[k], self.alpha_bar[k - 1]
        log_g = fitness_density(f, self.temperature) if self.guidance else np.zeros(len(f))
        x0, _ = estimate_x0(x, log_g, abar_t)
        sigma = ddim_sigma(abar_t, abar_prev, self.noise_scale)
        child = ddim_step(x, x0, abar_t, abar_prev, sigma, self.rng.standard_normal(x.shape))
        if self.normalize:
            child = normalize_rows(child)
        bounds = (0.0, 1.0) if self.normalize else (float(child.min()), float(child.max()))
        child = polynomial_mutation(child, self.rng, self.mutation_rate, self.mutation_eta, *bounds)
        if self.normalize:
            child = normalize_rows(child)
        return self.decoder.decode(child, self.rng)

    def _survive(self, run: Generation, fo: np.ndarray) -> None:
        if self.selection:
            pool_x = np.concatenate([run.x, run.offspring_x])
            pool_f = np.concatenate([run.fitness, fo])
            pool_g = run.genotypes + run.offspring
            keep = select_survivors(pool_x, pool_f, pool_g, self.population_size, self.shares, self.rng)
            run.x, run.fitness, run.genotypes = pool_x[keep], pool_f[keep], [pool_g[i] for i in keep]
        else:
            run.x, run.fitness, run.genotypes = run.offspring_x, fo, run.offspring
        run.offspring_x = run.offspring = None
        run.k -= 1

    # --- fitness -------------------------------------------------------------------------------
    def _fitness(self, genotypes: list[Genotype]) -> tuple[np.ndarray, list[Genotype]]:
        if self.fitness_mode == "oracle":
            missing = list(dict.fromkeys(g for g in genotypes if g not in self.known))
            if missing:
                return np.empty(0), missing
            return worst_for_unknown(np.array([self.known[g] for g in genotypes])), []
        new = list(dict.fromkeys(g for g in genotypes if g not in self.scored))
        if new:
            scores = self.surrogate.score([self.space.make(g) for g in new])
            for g, s in zip(new, as_numpy(scores).tolist()):
                self.scored[g] = s
        predicted = np.array([self.scored[g] for g in genotypes])
        if self.mo is not None:
            return self.mo.fitness([self.space.make(g) for g in genotypes], predicted), []
        return predicted, []

    # --- helpers -------------------------------------------------------------------------------
    def _identity(self, a: Architecture) -> str:
        return self.space.canonical(a) if self.dedup_canonical else self.space.key(a)

    def _fresh_samples(self, n: int) -> list[Architecture]:
        """Random architectures neither asked nor known; within one call they may repeat (the
        oracle answers a repeat for free)."""
        known = self.asked | {self._identity(self.space.make(g)) for g in self.known}
        return self.sample_unseen(n, known, self._identity, distinct=False) or [self.sample()]

    def stats(self) -> dict[str, Any]:
        s = self.decoder.stats
        return {
            "generation_runs": self.runs_done,
            "decoded": s.decoded,
            "repaired": s.repaired,
            "redrawn": s.redrawn,
        }

    def timings(self) -> dict[str, Any]:
        times = self.generation_seconds
        return {"generation_seconds_mean": float(np.mean(times)) if times else None}

    # --- resumption ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        s = self.decoder.stats
        return {
            "known_genotypes": [list(g) for g in self.known],
            "known_scores": list(self.known.values()),
            "asked": sorted(self.asked),
            "pending": [list(g) for g in self.pending],
            "candidates": [list(g) for g in self.candidates],
            "run": self.run.state_dict() if self.run is not None else {},
            "runs_done": self.runs_done,
            "decode_stats": [s.decoded, s.repaired, s.redrawn],
            "generation_seconds": list(self.generation_seconds),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.known = {tuple(g): float(v) for g, v in zip(state["known_genotypes"], state["known_scores"])}
        self.asked = set(state["asked"])
        self.pending = {tuple(g) for g in state["pending"]}
        self.candidates = [tuple(g) for g in state["candidates"]]
        self.run = Generation.from_state(state["run"]) if state["run"] else None
        self.runs_done = int(state["runs_done"])
        self.decoder.stats = DecodeStats(*[int(v) for v in state["decode_stats"]])
        self.generation_seconds = [float(v) for v in state["generation_seconds"]]
