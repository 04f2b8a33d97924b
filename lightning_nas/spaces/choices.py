"""Spaces whose genotype positions are chosen independently: every combination is an architecture.

The cell-on-edges spaces (one op per edge of a fixed DAG) and the layer-wise space (one block per
layer) share this: uniform sampling, one-position edits, uniform crossover, Hamming distance,
one-hot encoding, and enumeration while the space is small.
"""
from __future__ import annotations

import itertools
import math
from abc import abstractmethod
from typing import Iterator

import numpy as np

from lightning_nas.errors import CapabilityError
from lightning_nas.spaces.base import Architecture, SearchSpace

#: spaces with more architectures than this do not enumerate
ENUMERATE_LIMIT = 10**7


class ChoiceSpace(SearchSpace):
    @abstractmethod
    def choices(self) -> list[int]:
        """Number of options for each position of the genotype."""

    # --- identity ------------------------------------------------------------------------
    def is_valid(self, a: Architecture) -> bool:
        choices = self.choices()
        return (
            a.space == self.name
            and len(a.genotype) == len(choices)
            and all(0 <= g < c for g, c in zip(a.genotype, choices))
        )

    # --- variation -----------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Architecture:
        return self.make(rng.integers(np.array(self.choices())))

    def neighbours(self, a: Architecture) -> list[Architecture]:
        self.check(a)
        out = []
        for i, (current, options) in enumerate(zip(a.genotype, self.choices())):
            for value in range(options):
                if value != current:
                    g = list(a.genotype)
                    g[i] = value
                    out.append(self.make(g))
        return out

    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
        """Uniform: each position from either parent."""
        self.check(a)
        self.check(b)
        take_a = rng.random(len(a.genotype)) < 0.5
        return self.make(np.where(take_a, a.genotype, b.genotype))

    def edit_distance(self, a: Architecture, b: Architecture) -> int:
        self.check(a)
        self.check(b)
        return int(sum(x != y for x, y in zip(a.genotype, b.genotype)))

    def supports(self, capability: str) -> bool:
        if capability == "enumerate":
            return math.prod(self.choices()) <= ENUMERATE_LIMIT
        return super().supports(capability)

    def enumerate(self) -> Iterator[Architecture]:
        if not self.supports("enumerate"):
            raise CapabilityError(
                f"the {self.name} search space has {math.prod(self.choices()):,} architectures, too many to "
                f"enumerate (at most {ENUMERATE_LIMIT:,}): sample it instead (e.g. set a pool_size)"
            )
        for g in itertools.product(*(range(c) for c in self.choices())):
            yield self.make(g)

    # --- encodings -----------------------------------------------------------------------
    def adjacency_encoding(self, a: Architecture) -> np.ndarray:
        """The wiring is fixed, so the one-hot choice of each position says everything."""
        self.check(a)
        choices = self.choices()
        encoding = np.zeros(sum(choices), dtype=np.float32)
        encoding[np.cumsum([0, *choices[:-1]]) + np.asarray(a.genotype)] = 1.0
        return encoding
