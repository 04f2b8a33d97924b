"""EDNAG: Evolutionary Diffusion-based Neural Architecture Generation (Zhou, Yu & Tang, 2025).

A population of N continuous matrices (one row per genotype position, one column per option of
that position; positions with fewer options are padded and masked) is denoised from Gaussian
noise over a DDIM schedule. No score network: the predicted clean sample x̂0 of each member is
the fitness-weighted estimate of the paper's Eq. 8,

    x̂0(x_t^j) = Σ_i g[f(x^i)] N(x_t^j; √ᾱ_t x^i, 1-ᾱ_t) x^i  /  Σ_i g[f(x^i)] N(x_t^j; √ᾱ_t x^i, 1-ᾱ_t),

followed by the DDIM update of Eq. 9, mutation noise, and selection from parents ∪ offspring
(elitism, roulette wheel, diversity by Euclidean distance). Architectures are read off by argmax
per row; decodes the space rejects are repaired (the next-best option of the least certain row,
else argmax under growing Gumbel noise) or re-drawn from the space, and both are counted.

Fitness comes from a `Surrogate` (`fitness="predictor"`: any trained predictor; `fitness="proxy"`:
a data-free zero-cost proxy of the freshly initialised network); only the top-ranked generated
architectures go to the oracle, and every oracle call counts against the loop's budget. With
`fitness="oracle"` each generation's unknown members are sent to the loop for evaluation
instead (each one a budgeted query).
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from lightning_nas.search.strategy import Strategy
from lightning_nas.spaces.base import Architecture, SearchSpace

Genotype = tuple[int, ...]
REPAIR_TRIES = 32  # Gumbel-perturbed decodes tried before an invalid member is re-drawn


@contextmanager
def torch_threads(n: int | None):
    """Scoring a generation means ~100 tiny batches (<= 2N graphs): intra-op threads only add
    contention there, so they are capped for the run and restored afterwards."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(min(n, before))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- the DDIM schedule -------------------------------------------------------------------
def alpha_bar_schedule(steps: int, kind: str = "cosine", eps: float = 1e-4) -> np.ndarray:
    """ᾱ_k for k = 0..steps: ᾱ_0 = 1-eps (clean), ᾱ_steps = eps (pure noise), decreasing in k."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    k = np.arange(steps + 1) / steps
    if kind == "cosine":
        shape = (np.cos(np.pi * k) + 1.0) / 2.0
    elif kind == "linear":
        shape = 1.0 - k
    else:
        raise ValueError(f"schedule must be 'cosine' or 'linear', got {kind!r}")
    return eps + (1.0 - 2.0 * eps) * shape


def ddim_sigma(abar_t: float, abar_prev: float, eta: float) -> float:
    """σ_t = eta · the DDPM posterior standard deviation, capped so the DDIM direction term stays real."""
    ddpm = math.sqrt((1.0 - abar_prev) / (1.0 - abar_t) * (1.0 - abar_t / abar_prev))
    return min(eta * ddpm, math.sqrt(1.0 - abar_prev))


# --- the fitness-guided estimate of x0 (Eq. 8) and the DDIM step (Eq. 9) ------------------
def fitness_density(fitness: np.ndarray, temperature: float) -> np.ndarray:
    """g[f]: the log of an exponential (Boltzmann) density over standardised fitness, best = 0.

    Standardising makes `temperature` mean the same for any metric or predictor scale."""
    f = np.asarray(fitness, dtype=np.float64)
    spread = f.std()
    z = (f - f.max()) / (spread if spread > 0 else 1.0)
    return z / temperature


def estimate_x0(x: np.ndarray, log_density: np.ndarray, abar_t: float) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 8 for every member j at once: returns x̂0 [N, D] and the weights w[j, i] (rows sum to 1)."""
    sq_dist = ((x[:, None, :] - math.sqrt(abar_t) * x[None, :, :]) ** 2).sum(-1)
    logits = log_density[None, :] - sq_dist / (2.0 * (1.0 - abar_t))
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights @ x, weights


def ddim_step(x: np.ndarray, x0: np.ndarray, abar_t: float, abar_prev: float, sigma: float,
              noise: np.ndarray) -> np.ndarray:
    """Eq. 9: x_{t-1} = √ᾱ_{t-1} x̂0 + √(1-ᾱ_{t-1}-σ²) ε̂ + σ ε, with ε̂ = (x_t - √ᾱ_t x̂0)/√(1-ᾱ_t)."""
    eps_hat = (x - math.sqrt(abar_t) * x0) / math.sqrt(1.0 - abar_t)
    direction = math.sqrt(max(1.0 - abar_prev - sigma**2, 0.0))
    return math.sqrt(abar_prev) * x0 + direction * eps_hat + sigma * noise


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Min-max scale each member to [0, 1] (the authors' code does this after mutation and
    selection; argmax decoding is unchanged, the kernel scale stays fixed)."""
    low, high = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    return (x - low) / np.where(high > low, high - low, 1.0)


def polynomial_mutation(x: np.ndarray, rng: np.random.Generator, rate: float, eta: float,
                        low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """Deb's polynomial mutation of every entry of a `rate` fraction of the members (bounded)."""
    out = x.copy()
    chosen = rng.random(len(x)) < rate
    if not chosen.any():
        return out
    y = np.clip(x[chosen], low, high)
    span = high - low
    d1, d2 = (y - low) / span, (high - y) / span
    mu = rng.random(y.shape)
    power = 1.0 / (eta + 1.0)
    left = (2 * mu + (1 - 2 * mu) * (1 - d1) ** (eta + 1)) ** power - 1
    right = 1 - (2 * (1 - mu) + (2 * mu - 1) * (1 - d2) ** (eta + 1)) ** power
    out[chosen] = y + np.where(mu <= 0.5, left, right) * span
    return out


def worst_for_unknown(fitness: np.ndarray) -> np.ndarray:
    """Members the oracle could not answer (NaN) rank below every answered one."""
    missing = np.isnan(fitness)
    if not missing.any():
        return fitness
    finite = fitness[~missing]
    floor = finite.min() - (finite.std() if len(finite) > 1 else 0.0) - 1.0 if len(finite) else 0.0
    return np.where(missing, floor, fitness)


# --- selection from parents ∪ offspring ---------------------------------------------------
def select_survivors(x: np.ndarray, fitness: np.ndarray, genotypes: Sequence[Genotype], n: int,
                     shares: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """Indices of the `n` survivors: elitism (distinct genotypes, best first), then the most distant
    members (sum of Euclidean distances to the pool), then roulette wheel without replacement."""
    elite_share, _, diversity_share = shares
    n_elite, n_diverse = int(round(elite_share * n)), int(round(diversity_share * n))
    chosen: list[int] = []
    seen: set[Genotype] = set()
    for i in np.argsort(-fitness, kind="stable"):
        if len(chosen) == n_elite:
            break
        if genotypes[i] not in seen:
            seen.add(genotypes[i])
            chosen.append(int(i))
    taken = np.zeros(len(x), dtype=bool)
    taken[chosen] = True
    spread = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)).sum(1)
    for i in np.argsort(-spread, kind="stable"):
        if len(chosen) == n_elite + n_diverse:
            break
        if not taken[i]:
            taken[i] = True
            chosen.append(int(i))
    rest = np.flatnonzero(~taken)
    f = fitness[rest]
    # the authors' wheel: fitness rescaled to [0.1, 1] so that no member has zero chance
    wheel = 0.1 + 0.9 * (f - f.min()) / (f.max() - f.min()) if f.max() > f.min() else np.ones_like(f)
    picks = rng.choice(rest, size=n - len(chosen), replace=False, p=wheel / wheel.sum())
    return np.concatenate([np.asarray(chosen, dtype=np.int64), picks.astype(np.int64)])


# --- the matrix view of a space -----------------------------------------------------------
class MatrixLayout:
    """Rows = genotype positions, columns = options; stored flat (only real options), padded for argmax."""

    def __init__(self, choices: Sequence[int]):
        if not choices or min(choices) < 1:
            raise ValueError(f"space.choices() must list a positive option count per position, got {choices}")
        self.choices = np.asarray(choices, dtype=np.int64)
        self.dim = int(self.choices.sum())
        width = int(self.choices.max())
        offsets = np.concatenate([[0], np.cumsum(self.choices)[:-1]])
        cols = np.arange(width)[None, :]
        # padded entries point at an extra column holding -inf, so argmax never picks them
        self.index = np.where(cols < self.choices[:, None], offsets[:, None] + cols, self.dim)
        self.offsets = offsets

    def padded(self, x: np.ndarray) -> np.ndarray:
        pad = np.full((len(x), 1), -np.inf)
        return np.concatenate([x, pad], axis=1)[:, self.index]

    def decode(self, x: np.ndarray) -> np.ndarray:
        return self.padded(x).argmax(axis=2)

    def encode(self, genotypes: np.ndarray) -> np.ndarray:
        out = np.zeros((len(genotypes), self.dim))
        out[np.arange(len(genotypes))[:, None], self.offsets[None, :] + np.asarray(genotypes)] = 1.0
        return out


@dataclass
class DecodeStats:
    decoded: int = 0
    repaired: int = 0
    redrawn: int = 0


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
    ):
        if fitness not in ("predictor", "oracle", "proxy"):
            raise ValueError(f"fitness must be 'predictor', 'oracle' or 'proxy', got {fitness!r}")
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {population_size}")
        if noise_scale < 0:
            raise ValueError(f"noise_scale (σ) must be >= 0, got {noise_scale}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 <= mutation_rate <= 1:
            raise ValueError(f"mutation_rate must lie in [0, 1], got {mutation_rate}")
        shares = (elite_share, roulette_share, diversity_share)
        if min(shares) < 0 or abs(sum(shares) - 1.0) > 1e-6:
            raise ValueError(f"elite_share + roulette_share + diversity_share must be 1 (each >= 0), got {shares}")
        self.fitness_mode, self.steps, self.population_size = fitness, steps, population_size
        self.noise_scale, self.temperature = noise_scale, temperature
        self.mutation_rate, self.mutation_eta = mutation_rate, mutation_eta
        self.shares = shares
        self.normalize, self.guidance, self.selection = normalize, guidance, selection
        self.finetune, self.dedup_canonical = finetune, dedup_canonical
        self.alpha_bar = alpha_bar_schedule(steps, schedule, alpha_eps)
        self.needs_surrogate = fitness == "predictor"
        self.proxy, self.proxy_network = proxy, proxy_network
        if score_threads is not None and score_threads < 1:
            raise ValueError(f"score_threads must be >= 1 or null (leave torch's setting), got {score_threads}")
        self.score_threads = score_threads
        if random_start < 0:
            raise ValueError(f"random_start must be >= 0, got {random_start}")
        self.random_start = random_start
        self._reset_state()

    def _reset_state(self) -> None:
        self.known: dict[Genotype, float] = {}  # oracle answers (tell), by genotype; NaN = no answer
        self.pending: set[Genotype] = set()  # oracle mode: asked, not yet told
        self.asked: set[str] = set()  # canonical forms already sent to the oracle
        self.candidates: list[Genotype] = []  # predictor mode: ranked, not yet asked
        self.scored: dict[Genotype, float] = {}  # predictor mode: surrogate scores of this generation run
        self.run: dict[str, Any] | None = None  # the generation in progress
        self.runs_done = 0
        self.decode_stats = DecodeStats()
        self.generation_seconds: list[float] = []
        self.valid_cache: dict[Genotype, bool] = {}

    def setup(self, space: SearchSpace, rng: np.random.Generator, surrogate=None) -> None:
        if self.fitness_mode == "proxy":  # training-free end to end: a zero-cost proxy is the fitness
            from lightning_nas.proxies.oracle import ProxySurrogate

            surrogate = ProxySurrogate(space, self.proxy, seed=int(rng.integers(2**31)), network=self.proxy_network)
        super().setup(space, rng, surrogate)
        self.layout = MatrixLayout(space.choices())
        self._reset_state()

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
        self._start_run()
        with torch_threads(self.score_threads):
            missing = self._drive()
        if missing:
            raise RuntimeError("a surrogate-scored generation asked for oracle answers; this is a bug")
        ranked = sorted(self.scored, key=lambda g: -self.scored[g])
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
        x = self.rng.standard_normal((self.population_size, self.layout.dim))
        x, genotypes = self._decode(x)
        self.run = {"x": x, "g": genotypes, "f": None, "k": self.steps, "xo": None, "go": None}

    def _drive(self) -> list[Genotype]:
        """Advance the run as far as known fitness allows; returns the genotypes that still need
        an oracle answer ([] when the run has finished)."""
        run = self.run
        while True:
            if run["f"] is None:
                f, missing = self._fitness(run["g"])
                if missing:
                    return missing
                run["f"] = f
            if run["k"] == 0:
                self.runs_done += 1
                return []
            if run["xo"] is None:
                run["xo"], run["go"] = self._offspring(run["x"], run["f"], run["k"])
            fo, missing = self._fitness(run["go"])
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
        return self._decode(child)

    def _survive(self, run: dict[str, Any], fo: np.ndarray) -> None:
        if self.selection:
            pool_x = np.concatenate([run["x"], run["xo"]])
            pool_f = np.concatenate([run["f"], fo])
            pool_g = run["g"] + run["go"]
            keep = select_survivors(pool_x, pool_f, pool_g, self.population_size, self.shares, self.rng)
            run["x"], run["f"], run["g"] = pool_x[keep], pool_f[keep], [pool_g[i] for i in keep]
        else:
            run["x"], run["f"], run["g"] = run["xo"], fo, run["go"]
        run["xo"] = run["go"] = None
        run["k"] -= 1

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
            for g, s in zip(new, scores.detach().cpu().numpy().astype(np.float64).tolist()):
                self.scored[g] = s
        return np.array([self.scored[g] for g in genotypes]), []

    # --- decoding with explicit validity handling ----------------------------------------------
    def _decode(self, x: np.ndarray) -> tuple[np.ndarray, list[Genotype]]:
        genotypes = self.layout.decode(x)
        out: list[Genotype] = []
        for j in range(len(x)):
            self.decode_stats.decoded += 1
            g = tuple(int(v) for v in genotypes[j])
            if not self._valid(g):
                repaired = self._repair(x[j], g)
                if repaired is not None:
                    self.decode_stats.repaired += 1
                    g = repaired
                else:
                    self.decode_stats.redrawn += 1
                    g = self.space.sample(self.rng).genotype
                    low, high = x[j].min(), x[j].max()
                    x[j] = low + (high - low) * self.layout.encode(np.array([g]))[0]
            out.append(g)
        return x, out

    def _valid(self, g: Genotype) -> bool:
        if g not in self.valid_cache:
            self.valid_cache[g] = self.space.is_valid(self.space.make(g))
        return self.valid_cache[g]

    def _repair(self, row: np.ndarray, g: Genotype) -> Genotype | None:
        """A valid genotype close to the row, or None: first the single-row change that costs the
        least certainty, then argmax under Gumbel noise of growing scale (several rows at once).
        The row is edited (entries swapped) so that it decodes to the repair."""
        padded = self.layout.padded(row[None])[0]
        order = np.argsort(-padded, axis=1, kind="stable")
        rows = np.arange(len(g))
        margins = padded[rows, order[:, 0]] - padded[rows, order[:, 1]] if padded.shape[1] > 1 else np.zeros(len(g))
        for p in np.argsort(margins, kind="stable"):
            for option in order[p, 1 : self.layout.choices[p]]:
                candidate = g[:p] + (int(option),) + g[p + 1 :]
                if self._valid(candidate):
                    return self._write(row, g, candidate)
        spread = float(row.max() - row.min()) or 1.0
        for scale in np.geomspace(0.05, 2.0, REPAIR_TRIES):
            noisy = padded + scale * spread * self.rng.gumbel(size=padded.shape)
            candidate = tuple(int(v) for v in noisy.argmax(axis=1))
            if self._valid(candidate):
                return self._write(row, g, candidate)
        return None

    def _write(self, row: np.ndarray, old: Genotype, new: Genotype) -> Genotype:
        for p, (a, b) in enumerate(zip(old, new)):
            if a != b:
                i, j = self.layout.offsets[p] + a, self.layout.offsets[p] + b
                row[i], row[j] = row[j], row[i]
        return new

    # --- helpers -------------------------------------------------------------------------------
    def _identity(self, a: Architecture) -> str:
        return self.space.canonical(a) if self.dedup_canonical else self.space.key(a)

    def _fresh_samples(self, n: int) -> list[Architecture]:
        out: list[Architecture] = []
        for _ in range(100 * n):
            a = self.space.sample(self.rng)
            if self._identity(a) not in self.asked and a.genotype not in self.known and self.answerable(a):
                out.append(a)
                if len(out) == n:
                    break
        return out or [self.space.sample(self.rng)]

    def stats(self) -> dict[str, Any]:
        s = self.decode_stats
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
        run = self.run
        packed_run: dict[str, Any] = {}
        if run is not None:
            packed_run = {
                "x": run["x"].tolist(),
                "g": [list(g) for g in run["g"]],
                "f": None if run["f"] is None else run["f"].tolist(),
                "k": run["k"],
                "xo": None if run["xo"] is None else run["xo"].tolist(),
                "go": None if run["go"] is None else [list(g) for g in run["go"]],
            }
        s = self.decode_stats
        return {
            "known_genotypes": [list(g) for g in self.known],
            "known_scores": list(self.known.values()),
            "asked": sorted(self.asked),
            "pending": [list(g) for g in self.pending],
            "candidates": [list(g) for g in self.candidates],
            "run": packed_run,
            "runs_done": self.runs_done,
            "decode_stats": [s.decoded, s.repaired, s.redrawn],
            "generation_seconds": list(self.generation_seconds),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.known = {tuple(g): float(v) for g, v in zip(state["known_genotypes"], state["known_scores"])}
        self.asked = set(state["asked"])
        self.pending = {tuple(g) for g in state["pending"]}
        self.candidates = [tuple(g) for g in state["candidates"]]
        run = state["run"]
        self.run = None
        if run:
            self.run = {
                "x": np.asarray(run["x"], dtype=np.float64),
                "g": [tuple(g) for g in run["g"]],
                "f": None if run["f"] is None else np.asarray(run["f"], dtype=np.float64),
                "k": int(run["k"]),
                "xo": None if run["xo"] is None else np.asarray(run["xo"], dtype=np.float64),
                "go": None if run["go"] is None else [tuple(g) for g in run["go"]],
            }
        self.runs_done = int(state["runs_done"])
        self.decode_stats = DecodeStats(*[int(v) for v in state["decode_stats"]])
        self.generation_seconds = [float(v) for v in state["generation_seconds"]]
