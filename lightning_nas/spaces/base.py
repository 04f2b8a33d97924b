"""The search-space protocol every space implements, and the immutable `Architecture`.

A space describes an architecture by a `genotype`: a tuple of small ints (hashable, picklable,
storable in a `weights_only` checkpoint as a list). Every other view (string, graph, encodings,
the benchmark key) is derived by the space. All randomness comes from an explicit
`numpy.random.Generator`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from lightning_nas.errors import ConfigError


class InvalidArchitectureError(ConfigError):
    """A string or genotype that does not describe an architecture of the space (a `ValueError`)."""


def wrong_space_error(space: str, a: "Architecture") -> InvalidArchitectureError:
    shown = str(a) if a.space in _REGISTRY else repr(a)
    return InvalidArchitectureError(
        f"{shown} is not a {space} architecture but a {a.space} one: a predictor checkpoint or run directory "
        f"made for {a.space} was given to a {space} search? use one made for {space}"
    )


@dataclass(frozen=True)
class Architecture:
    space: str
    genotype: tuple[int, ...]

    def __str__(self) -> str:
        return get_space(self.space).to_string(self)


class SearchSpace(ABC):
    """One cell-based search space. Subclasses are stateless apart from caches."""

    name: str
    #: number of op choices (for one-hot node features) in `to_graph`
    ops: Sequence[str]

    # --- construction and identity -------------------------------------------------------
    def make(self, genotype: Sequence[int]) -> Architecture:
        return Architecture(self.name, tuple(int(g) for g in genotype))

    @abstractmethod
    def is_valid(self, a: Architecture) -> bool: ...

    @abstractmethod
    def canonical(self, a: Architecture) -> str:
        """Key shared by every architecture isomorphic to `a` (computes the same function)."""

    def representative(self, a: Architecture) -> Architecture:
        """The one member of `a`'s `canonical` class that stands for all of it, so that equivalent
        cells can be featurised alike. Spaces that cannot enumerate their classes return `a`."""
        return a

    def key(self, a: Architecture) -> str:
        """The benchmark's own key for `a` (NB201: the string; NB101: the module hash)."""
        return self.to_string(a)

    @abstractmethod
    def to_string(self, a: Architecture) -> str: ...

    @abstractmethod
    def from_string(self, s: str) -> Architecture:
        """Parse the official string form; raise `InvalidArchitectureError` naming the problem."""

    # --- variation -----------------------------------------------------------------------
    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Architecture: ...

    @abstractmethod
    def neighbours(self, a: Architecture) -> list[Architecture]:
        """Every valid architecture at edit distance exactly 1, in a fixed order."""

    def mutate(self, a: Architecture, rng: np.random.Generator) -> Architecture:
        """A uniformly chosen 1-edit neighbour."""
        options = self.neighbours(a)
        return options[int(rng.integers(len(options)))]

    @abstractmethod
    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture: ...

    @abstractmethod
    def edit_distance(self, a: Architecture, b: Architecture) -> int: ...

    # --- flat decision view (controllers, diffusion, one-hot encodings) ------------------
    @abstractmethod
    def choices(self) -> list[int]:
        """Number of options for each position of the genotype."""

    # --- encodings -----------------------------------------------------------------------
    @abstractmethod
    def to_graph(self, a: Architecture):
        """A torch_geometric `Data` with ops on nodes (`x` one-hot, `edge_index`)."""

    @abstractmethod
    def path_encoding(self, a: Architecture) -> np.ndarray:
        """Binary vector, one slot per possible input->output path of ops (DCL-ENAS hard encoder)."""

    @abstractmethod
    def adjacency_encoding(self, a: Architecture) -> np.ndarray:
        """Flat float vector: upper-triangular adjacency followed by one-hot ops."""

    def enumerate(self) -> Iterator[Architecture]:
        raise NotImplementedError(f"the {self.name} space is too large to enumerate")


_REGISTRY: dict[str, SearchSpace] = {}


def register(space: SearchSpace) -> SearchSpace:
    _REGISTRY[space.name] = space
    return space


def get_space(name: str) -> SearchSpace:
    if not _REGISTRY:
        import lightning_nas.spaces  # noqa: F401  (registers the built-in spaces)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown search space {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None
