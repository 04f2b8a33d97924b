"""The matrix view of a search space (EDNAG's population members) and decoding it back to valid
architectures: one row per genotype position, one column per option of that position (positions
with fewer options are padded and masked); an architecture is read off by argmax per row."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lightning_nas.errors import ConfigError
from lightning_nas.search.diffusion import Genotype
from lightning_nas.spaces.base import SearchSpace

REPAIR_TRIES = 32  # Gumbel-perturbed decodes tried before an invalid member is re-drawn


class MatrixLayout:
    """Rows = genotype positions, columns = options; stored flat (only real options), padded for argmax."""

    def __init__(self, choices: Sequence[int]):
        if not choices or min(choices) < 1:
            raise ConfigError(f"space.choices() must list a positive option count per position, got {choices}")
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


class MatrixDecoder:
    """Reads genotypes off members with explicit validity handling: a decode the space rejects is
    repaired (the next-best option of the least certain row, else argmax under growing Gumbel noise)
    or re-drawn from the space, and both are counted in `stats`."""

    def __init__(self, space: SearchSpace):
        self.space, self.layout = space, MatrixLayout(space.choices())
        self.stats = DecodeStats()
        self.valid_cache: dict[Genotype, bool] = {}

    def decode(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[Genotype]]:
        """The members' genotypes; rows of `x` whose decode was repaired or re-drawn are edited in
        place so that they decode to the genotype returned."""
        genotypes = self.layout.decode(x)
        out: list[Genotype] = []
        for j in range(len(x)):
            self.stats.decoded += 1
            g = tuple(int(v) for v in genotypes[j])
            if not self._valid(g):
                repaired = self._repair(x[j], g, rng)
                if repaired is not None:
                    self.stats.repaired += 1
                    g = repaired
                else:
                    self.stats.redrawn += 1
                    g = self.space.sample(rng).genotype
                    low, high = x[j].min(), x[j].max()
                    x[j] = low + (high - low) * self.layout.encode(np.array([g]))[0]
            out.append(g)
        return x, out

    def _valid(self, g: Genotype) -> bool:
        if g not in self.valid_cache:
            self.valid_cache[g] = self.space.is_valid(self.space.make(g))
        return self.valid_cache[g]

    def _repair(self, row: np.ndarray, g: Genotype, rng: np.random.Generator) -> Genotype | None:
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
            noisy = padded + scale * spread * rng.gumbel(size=padded.shape)
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
