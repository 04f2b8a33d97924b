"""The protocol every search method implements. The `SearchLoop` owns budget, RNG, history, checkpoints."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from lightning_nas.spaces.base import Architecture, SearchSpace


class Surrogate(Protocol):
    """What a strategy sees of a trained predictor: higher score = predicted better."""

    def score(self, archs: Sequence[Architecture]) -> torch.Tensor: ...

    def update(self, archs: Sequence[Architecture], y: Sequence[float]) -> None: ...


class Strategy(ABC):
    """ask -> the loop evaluates through its oracle -> tell. No file or benchmark access here."""

    #: set by strategies that cannot run without a predictor (`model:` in the search config)
    needs_surrogate: bool = False
    _answerable: Callable[[Architecture], bool] | None = None

    def restrict(self, answerable: Callable[[Architecture], bool]) -> None:
        """Propose only architectures for which `answerable` holds (the search's `table_only`)."""
        self._answerable = answerable

    def answerable(self, a: Architecture) -> bool:
        """Strategies that rank candidates pick only answerable ones; the loop skips the rest for free."""
        return self._answerable is None or self._answerable(a)

    def setup(self, space: SearchSpace, rng: np.random.Generator, surrogate: Surrogate | None = None) -> None:
        if self.needs_surrogate and surrogate is None:
            raise ValueError(f"{type(self).__name__} needs a trained predictor: give `model:` and `ckpt_path:`")
        self.space, self.rng, self.surrogate = space, rng, surrogate

    @abstractmethod
    def ask(self, n: int) -> list[Architecture]:
        """Up to `n` architectures to evaluate next (fewer is fine; at least one)."""

    @abstractmethod
    def tell(self, archs: Sequence[Architecture], scores: Sequence[float]) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors/numbers/strings/lists only, so `torch.load(weights_only=True)` reads it."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    # helpers for (de)serialising architectures in state dicts
    def _pack(self, archs: Sequence[Architecture]) -> list[list[int]]:
        return [list(a.genotype) for a in archs]

    def _unpack(self, genotypes: Sequence[Sequence[int]]) -> list[Architecture]:
        return [self.space.make(g) for g in genotypes]
