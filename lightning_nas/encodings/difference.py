"""Difference-of-architecture (DoA) encodings for Delta-NAS (Sridhar & Chen, Sec. 3-4.1).

An architecture is encoded by a flat vector (the space's adjacency/one-hot-op encoding, its path
encoding, or both side by side); a pair (a, b) is encoded by `encode(b) - encode(a)`, so that
`difference(a, b) == -difference(b, a)` and identical architectures encode to zero. With the
adjacency encoding of a fixed-wiring cell (NB201, TNB101 micro) the encoding depends only on the
edit (which positions changed, from which op to which), which is what makes the DoA space small
(|D^1| = one slot per position and op change): many pairs share one encoding.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from lightning_nas.errors import ConfigError
from lightning_nas.spaces.base import Architecture, SearchSpace

ENCODINGS = ("adjacency", "path", "adjacency+path")

#: an edit: ((position, old value, new value), ...) sorted by position
Edit = tuple[tuple[int, int, int], ...]


def check_encoding(kind: str) -> str:
    if kind not in ENCODINGS:
        raise ConfigError(f"unknown architecture encoding {kind!r}; choose one of: {', '.join(ENCODINGS)}")
    return kind


def encode(space: SearchSpace, archs: Sequence[Architecture], kind: str = "adjacency") -> np.ndarray:
    """[len(archs), D] float32: one row per architecture."""
    check_encoding(kind)
    parts = []
    if kind in ("adjacency", "adjacency+path"):
        parts.append(lambda a: space.adjacency_encoding(a))
    if kind in ("path", "adjacency+path"):
        parts.append(lambda a: space.path_encoding(a))
    rows = [np.concatenate([np.asarray(f(a), dtype=np.float32) for f in parts]) for a in archs]
    return np.stack(rows) if rows else np.zeros((0, encoding_size(space, kind)), dtype=np.float32)


def encoding_size(space: SearchSpace, kind: str = "adjacency") -> int:
    probe = space.sample(np.random.default_rng(0))
    return int(encode(space, [probe], kind).shape[1])


def difference(space: SearchSpace, a: Architecture, b: Architecture, kind: str = "adjacency") -> np.ndarray:
    """The DoA encoding of the pair (a -> b): encode(b) - encode(a)."""
    x = encode(space, [a, b], kind)
    return x[1] - x[0]


def differences(
    space: SearchSpace, bases: Sequence[Architecture], others: Sequence[Architecture], kind: str = "adjacency"
) -> np.ndarray:
    """Row i = encode(others[i]) - encode(bases[i])."""
    if len(bases) != len(others):
        raise ValueError(f"need as many bases as others, got {len(bases)} and {len(others)}")
    return encode(space, others, kind) - encode(space, bases, kind)


def pair_input(base, other, context: bool = False):
    """The difference predictor's input for the pairs (base -> other) (numpy arrays or tensors,
    [..., D]): the difference encoding, or with `context` the sum beside it ([..., 2D]: what the
    pair shares, which the difference alone hides)."""
    if not context:
        return other - base
    concatenate = torch.cat if isinstance(base, torch.Tensor) else np.concatenate
    return concatenate([base + other, other - base], -1)


def edit_of(a: Architecture, b: Architecture) -> Edit:
    """The genotype positions where `b` differs from `a`, with old and new values."""
    return tuple((i, int(x), int(y)) for i, (x, y) in enumerate(zip(a.genotype, b.genotype)) if x != y)


def reverse(edit: Edit) -> Edit:
    return tuple((i, new, old) for i, old, new in edit)


def apply_edit(space: SearchSpace, a: Architecture, edit: Edit) -> Architecture | None:
    """`a` with the edit applied, or None when `a` does not hold the edit's old values."""
    g = list(a.genotype)
    for i, old, new in edit:
        if g[i] != old:
            return None
        g[i] = new
    return space.make(g)


def random_edit(space: SearchSpace, a: Architecture, k: int, rng: np.random.Generator) -> Edit:
    """k distinct genotype positions of `a`, each changed to another of its values (uniformly)."""
    choices = space.choices()
    if not 1 <= k <= len(choices):
        raise ConfigError(f"k (edit distance) must be in 1..{len(choices)} for the {space.name} space, got {k}")
    positions = np.sort(rng.choice(len(choices), size=k, replace=False))
    edit = []
    for i in positions.tolist():
        old = a.genotype[i]
        new = int(rng.integers(choices[i] - 1))
        edit.append((i, old, new + (new >= old)))
    return tuple(edit)


def sample_with_values(space: SearchSpace, fixed: dict[int, int], rng: np.random.Generator) -> Architecture:
    """A uniform genotype with the `fixed` positions set (may be invalid in constrained spaces)."""
    g = [int(rng.integers(c)) for c in space.choices()]
    for i, v in fixed.items():
        g[i] = v
    return space.make(g)


def neighbour_pairs(archs: Sequence[Architecture]) -> np.ndarray:
    """[P, 2] index pairs (i < j) of `archs` whose genotypes differ in exactly one position: the edges
    of the 1-edit graph over a set of architectures (as `labelled_pairs` measures edit distance)."""
    if len(archs) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    genotypes = np.array([a.genotype for a in archs], dtype=np.int64)
    words, slot, weight = _mixed_radix(genotypes)
    found = [np.zeros((0, 2), dtype=np.int64)]
    for position in range(genotypes.shape[1]):
        rest = words.copy()
        rest[:, slot[position]] -= genotypes[:, position] * weight[position]  # the key without this position
        _, group = np.unique(rest, axis=0, return_inverse=True) if rest.shape[1] > 1 else np.unique(
            rest[:, 0], return_inverse=True)
        group = group.ravel()
        order = np.argsort(group, kind="stable")
        for offset in range(1, int(np.bincount(group).max())):  # every pair inside a group (at most |choices|)
            i, j = order[:-offset], order[offset:]
            same = (group[i] == group[j]) & (genotypes[i, position] != genotypes[j, position])
            found.append(np.stack([np.minimum(i, j), np.maximum(i, j)], 1)[same])
    return np.unique(np.concatenate(found), axis=0)


def _mixed_radix(genotypes: np.ndarray) -> tuple[np.ndarray, list[int], list[int]]:
    """Genotypes packed into a few int64 words ([N, W]), and for each position its word and weight."""
    slot, weight, word, scale = [], [], 0, 1
    for base in (genotypes.max(0) + 1).tolist():
        if scale * base >= 2**62:
            word, scale = word + 1, 1
        slot.append(word)
        weight.append(scale)
        scale *= base
    words = np.zeros((len(genotypes), word + 1), dtype=np.int64)
    for position, (w, v) in enumerate(zip(slot, weight)):
        words[:, w] += genotypes[:, position] * v
    return words, slot, weight
