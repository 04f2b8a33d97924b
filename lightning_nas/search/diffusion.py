"""The math of EDNAG's training-free, fitness-guided diffusion (Zhou, Yu & Tang, 2025), on a
population of continuous matrices [N, D] (`lightning_nas.search.matrix_layout`):

    x̂0(x_t^j) = Σ_i g[f(x^i)] N(x_t^j; √ᾱ_t x^i, 1-ᾱ_t) x^i  /  Σ_i g[f(x^i)] N(x_t^j; √ᾱ_t x^i, 1-ᾱ_t)   (Eq. 8)

then the DDIM update (Eq. 9), the authors' row normalisation and polynomial mutation, and selection
from parents ∪ offspring (elitism, diversity by Euclidean distance, roulette wheel).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from lightning_nas.errors import ConfigError

Genotype = tuple[int, ...]


# --- the DDIM schedule -------------------------------------------------------------------
def alpha_bar_schedule(steps: int, kind: str = "cosine", eps: float = 1e-4) -> np.ndarray:
    """ᾱ_k for k = 0..steps: ᾱ_0 = 1-eps (clean), ᾱ_steps = eps (pure noise), decreasing in k."""
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    k = np.arange(steps + 1) / steps
    if kind == "cosine":
        shape = (np.cos(np.pi * k) + 1.0) / 2.0
    elif kind == "linear":
        shape = 1.0 - k
    else:
        raise ConfigError(f"schedule must be 'cosine' or 'linear', got {kind!r}")
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
