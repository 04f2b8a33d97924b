"""What a strategy sees of a predictor: the `Surrogate` protocol and the narrow protocols some need.

A strategy names the protocol it needs (`Strategy.surrogate_protocol`) and `Strategy.setup`
refuses a surrogate that does not implement it, so strategies reach predictors only through these
methods.
Implementations: `lightning_nas.search.surrogates` (trained predictors) and
`lightning_nas.proxies.oracle.ProxySurrogate` (a zero-cost proxy). A class that subclasses
`Surrogate` inherits the defaults below (no randomness, no state, charged labels ignored).

Two optional attributes, read through `untrained` and `fit_records` below (a proxy has neither):
`untrained`, None for a surrogate that is ready, else why its predictor was never trained (and what
would train it); and `fit_records()`, the fits the surrogate made inside the run (results.json)."""
from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from lightning_nas.spaces.base import Architecture


@runtime_checkable
class Surrogate(Protocol):
    """Scores architectures (higher = predicted better) and learns from the labels the search gathers."""

    def setup(self, rng: np.random.Generator) -> None:
        """Called by the loop before the strategy's setup: a surrogate that needs randomness (a
        proxy's network initialisation) draws its seed from the search's `rng` here."""

    def score(self, archs: Sequence[Architecture]) -> torch.Tensor: ...

    def update(self, archs: Sequence[Architecture], y: Sequence[float]) -> None:
        """New labels from the oracle; a surrogate that learns from labels does so here."""

    def record(self, archs: Sequence[Architecture], y: Sequence[float]) -> None:
        """Labels charged to the search before it starts (the predictor's own training labels):
        remembered for later updates, nothing is learnt now."""

    def state_dict(self) -> dict[str, Any]:
        """What changes during a search, as tensors / numbers / strings / lists."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@runtime_checkable
class PairwiseSurrogate(Surrogate, Protocol):
    """A comparator, P[a better than b] (CTNAS), that can learn from pairs it labelled itself."""

    def compare(self, first: Sequence[Architecture], second: Sequence[Architecture]) -> torch.Tensor:
        """P[first_i better than second_i] for aligned lists."""

    def compare_all(self, rows: Sequence[Architecture], columns: Sequence[Architecture]) -> torch.Tensor:
        """[len(rows), len(columns)]: P[rows_i better than columns_j]."""

    @property
    def learns_pseudo_pairs(self) -> bool:
        """Whether pseudo-labelled pairs enter its training at all."""

    def set_pseudo_pairs(self, first: Sequence[Architecture], second: Sequence[Architecture],
                         labels: Sequence[float]) -> None:
        """Pairs labelled by the comparator itself (1: first is better), replacing the last set."""


@runtime_checkable
class LatentSurrogate(Surrogate, Protocol):
    """A continuous latent space with a decoder and a differentiable accuracy predictor on it (CR-LSO)."""

    @property
    def latent_std(self) -> torch.Tensor:
        """[d] spread of the latent cloud per dimension (the unit of steps)."""

    def embed(self, archs: Sequence[Architecture]) -> torch.Tensor:
        """[n, d] latent points of architectures."""

    def decode(self, points: torch.Tensor) -> list:
        """One decode verdict per latent point (`lightning_nas.nn.gvae.Decoded`)."""

    def ascent(self, z: torch.Tensor) -> torch.Tensor:
        """[d] gradient of the predicted accuracy at the latent point `z`."""

    def warm_start(self) -> list[Architecture]:
        """The architectures the predictor was fitted on (a search pays for their labels).
        A latent surrogate that may come unfitted also has `fitted` (bool) and
        `fit(archs, y, epochs, pool_size, seed)`, to be fitted on the search's first labels."""

    def standardise(self, y: torch.Tensor) -> torch.Tensor:
        """Labels on the scale the predictor was fitted on."""

    def finetune(self, z: torch.Tensor, target: torch.Tensor, epochs: int, lr: float,
                 betas: tuple[float, float], batch_size: int, latent_noise: float,
                 generator: torch.Generator, restart: bool) -> float:
        """Fit the predictor to (latent point, target) pairs, starting from the fitted predictor when
        `restart`, else from the last fine-tune; returns the last epoch's mean loss."""


@runtime_checkable
class GainSurrogate(Surrogate, Protocol):
    """Predicted gains of moving from one architecture to others (Delta-NAS)."""

    def gains(self, base: Architecture, candidates: Sequence[Architecture]) -> torch.Tensor:
        """Predicted gain of each candidate over `base`."""

    def fit_gains(self, archs: Sequence[Architecture], y: np.ndarray, max_edit: int | None,
                  epochs: int | None, batch_size: int, rng: np.random.Generator) -> bool:
        """Fine-tune on the real gains between labelled architectures at most `max_edit` edits apart
        (`epochs` None: the search's `finetune_epochs`); the seed of the fine-tune is drawn from
        `rng` only when there is something to fit. Returns whether it fitted."""


def untrained(surrogate: Surrogate | None) -> str | None:
    """None if `surrogate` can guide a search as it is, else why its predictor was never trained."""
    return getattr(surrogate, "untrained", None)


def fit_records(surrogate: Surrogate | None) -> list[dict[str, Any]]:
    """The fits `surrogate` made of its predictor inside the run, for results.json."""
    records = getattr(surrogate, "fit_records", None)
    return records() if callable(records) else []


def as_numpy(scores: torch.Tensor) -> np.ndarray:
    return scores.detach().cpu().numpy().astype(np.float64)
