"""NAS-Bench-101: cells of at most 7 vertices and 9 edges, ops on the vertices.

Genotype (26 ints): the 21 upper-triangular bits of the 7x7 adjacency matrix, row-major
((0,1), (0,2), ..., (0,6), (1,2), ..., (5,6)), then the op index of vertices 1..5 in the
benchmark's `available_ops` order: 0 = conv3x3-bn-relu, 1 = conv1x1-bn-relu, 2 = maxpool3x3
(the same integers label the ops in the module hash). Vertex 0 is the input, vertex 6 the output.

Vertices off every input->output path are pruned, as the benchmark's `ModelSpec` does, so many
genotypes share one cell; `key` / `canonical` give the benchmark's module hash of the pruned cell.
A genotype is valid when, after pruning, the input reaches the output with at most 9 edges.

String form: ``nb101:<n*n matrix bits, row-major>:<n op names, input first, output last>``, e.g.
``nb101:0110000...0:input,conv3x3-bn-relu,...,output``; `to_string` always writes the 7x7 genotype
(pruned vertices included) so that strings round-trip; `from_string` also reads smaller matrices.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from lightning_nas.spaces.base import Architecture, InvalidArchitectureError, SearchSpace, register, wrong_space_error
from lightning_nas.spaces.nb101.cells import (
    EDGES,
    INPUT,
    INPUT_LABEL,
    MAX_EDGES,
    NUM_CELLS,
    NUM_INTERMEDIATE,
    NUM_VERTICES,
    OPS,
    OUTPUT,
    OUTPUT_LABEL,
    cell_table,
    module_hash,
    prune,
)
from lightning_nas.spaces.nb101.network import nb101_network

GENOTYPE_LENGTH = len(EDGES) + NUM_INTERMEDIATE
#: BANANAS path encoding: one slot per op sequence of length 0..5 over the 3 ops
PATH_SLOTS = sum(len(OPS) ** k for k in range(NUM_INTERMEDIATE + 1))
_PREFIX = "nb101:"
#: crossover retries before it gives up and returns the first parent
CROSSOVER_TRIES = 100


def genotype_matrix(genotype: Sequence[int]) -> np.ndarray:
    """The 7x7 adjacency matrix written in a genotype."""
    matrix = np.zeros((NUM_VERTICES, NUM_VERTICES), dtype=np.int64)
    for bit, (src, dst) in zip(genotype, EDGES):
        matrix[src, dst] = bit
    return matrix


@lru_cache(maxsize=1 << 16)
def _pruned(genotype: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """(pruned matrix, hash labels) of a well-formed genotype, or None when it is not a valid cell."""
    cell = prune(genotype_matrix(genotype), (INPUT_LABEL, *genotype[len(EDGES) :], OUTPUT_LABEL))
    if cell is None or cell[0].sum() > MAX_EDGES:
        return None
    pruned, labels = cell
    pruned.setflags(write=False)  # shared through the cache
    return pruned, tuple(labels)


@lru_cache(maxsize=1 << 16)
def _hash_of(pruned_bytes: bytes, n: int, labels: tuple[int, ...]) -> str:
    return module_hash(np.frombuffer(pruned_bytes, dtype=np.int64).reshape(n, n), labels)


class NB101Space(SearchSpace):
    name = "nb101"
    ops = OPS

    # --- identity ------------------------------------------------------------------------
    def _well_formed(self, a: Architecture) -> bool:
        g = a.genotype
        return (
            a.space == self.name
            and len(g) == GENOTYPE_LENGTH
            and all(bit in (0, 1) for bit in g[: len(EDGES)])
            and all(0 <= op < len(OPS) for op in g[len(EDGES) :])
        )

    def is_valid(self, a: Architecture) -> bool:
        return self._well_formed(a) and _pruned(a.genotype) is not None

    def spec(self, a: Architecture) -> tuple[np.ndarray, list[str]]:
        """The pruned cell as the benchmark stores it: (n x n matrix, n op names incl. input/output)."""
        matrix, labels = self._cell(a)
        return matrix.copy(), [_label_name(label) for label in labels]

    def check(self, a: Architecture) -> None:
        self._cell(a)

    def _cell(self, a: Architecture) -> tuple[np.ndarray, tuple[int, ...]]:
        if a.space != self.name:
            raise wrong_space_error(self.name, a)
        if not self._well_formed(a):
            raise InvalidArchitectureError(self.why_invalid(a))
        cell = _pruned(a.genotype)
        if cell is None:
            reason = self.why_invalid(a)
            raise InvalidArchitectureError(f"{self.to_string(a, check=False)} is not a valid cell: {reason}")
        return cell

    def why_invalid(self, a: Architecture) -> str:
        """Why `a` is not a cell of the space ('' if it is one)."""
        if not self._well_formed(a):
            return (
                f"not an {self.name} genotype: {a!r}; expected {len(EDGES)} edge bits (0/1) "
                f"followed by {NUM_INTERMEDIATE} op indices in 0..{len(OPS) - 1}"
            )
        cell = prune(genotype_matrix(a.genotype), range(NUM_VERTICES))
        if cell is None:
            return "no path leads from the input to the output"
        edges = int(cell[0].sum())
        return f"{edges} edges after pruning, at most {MAX_EDGES} allowed" if edges > MAX_EDGES else ""

    def key(self, a: Architecture) -> str:
        """The benchmark's module hash of the pruned cell."""
        matrix, labels = self._cell(a)
        return _hash_of(matrix.tobytes(), matrix.shape[0], labels)

    def canonical(self, a: Architecture) -> str:
        return self.key(a)

    # --- strings and other constructors ---------------------------------------------------
    def to_string(self, a: Architecture, check: bool = True) -> str:
        if check:
            self._cell(a)
        bits = "".join(str(int(b)) for b in genotype_matrix(a.genotype).ravel())
        names = [INPUT, *(OPS[op] for op in a.genotype[len(EDGES) :]), OUTPUT]
        return f"{_PREFIX}{bits}:{','.join(names)}"

    def from_string(self, s: str) -> Architecture:
        text = s.strip()
        parts = text.split(":")
        if len(parts) != 3 or parts[0] + ":" != _PREFIX:
            raise InvalidArchitectureError(
                f"malformed {self.name} architecture string {s!r}: expected "
                f"'{_PREFIX}<n*n matrix of 0/1, row-major>:<n comma-separated ops, input first, output last>'"
            )
        return self.from_matrix(parts[1], parts[2].split(","))

    def from_matrix(self, matrix: np.ndarray | Sequence[Sequence[int]] | str, ops: Sequence[str]) -> Architecture:
        """An architecture from an n x n (n <= 7) upper-triangular matrix and its n op names.

        `matrix` may be a row-major 0/1 string (the `matrix` column of the NB101 tables). A smaller
        cell is placed in the 7-vertex frame with its output at vertex 6; unused op slots get op 0.
        """
        adjacency = _parse_matrix(matrix, len(ops))
        n = adjacency.shape[0]
        names = [op.strip() for op in ops]
        if names[0] != INPUT or names[-1] != OUTPUT:
            raise InvalidArchitectureError(f"ops must start with {INPUT!r} and end with {OUTPUT!r}, got {names}")
        unknown = [op for op in names[1:-1] if op not in OPS]
        if unknown:
            raise InvalidArchitectureError(f"unknown NAS-Bench-101 op(s) {unknown}; known: {', '.join(OPS)}")
        frame = [*range(n - 1), NUM_VERTICES - 1]  # cell vertex -> frame vertex
        full = np.zeros((NUM_VERTICES, NUM_VERTICES), dtype=np.int64)
        full[np.ix_(frame, frame)] = adjacency
        op_indices = [OPS.index(op) for op in names[1:-1]] + [0] * (NUM_VERTICES - n)
        a = self.make([*(full[src, dst] for src, dst in EDGES), *op_indices])
        reason = self.why_invalid(a)
        if reason:
            bits = "".join(str(int(b)) for b in adjacency.ravel())
            raise InvalidArchitectureError(f"matrix {bits} ({n}x{n}), ops {','.join(names)}: not a valid cell: {reason}")
        return a

    def from_key(self, key: str) -> Architecture:
        """The enumeration's representative of the cell with this module hash."""
        table = cell_table()
        i = table.index(key.strip())
        if i is None:
            raise InvalidArchitectureError(
                f"{key!r} is not the module hash of any of the {NUM_CELLS:,} NAS-Bench-101 cells"
            )
        return self.make(table.genotypes[i])

    # --- variation -----------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Architecture:
        """The benchmark's random spec: uniform edge bits and ops, rejected until valid.

        Uniform over valid genotypes, hence not uniform over unique cells (cells that many
        genotypes prune to, e.g. small ones, come up more often); `enumerate` gives the cells.
        """
        while True:
            a = self.make([*rng.integers(2, size=len(EDGES)), *rng.integers(len(OPS), size=NUM_INTERMEDIATE)])
            if self.is_valid(a):
                return a

    def neighbours(self, a: Architecture, distinct: bool = False) -> list[Architecture]:
        """Every valid genotype one edit away: one edge bit flipped or one op changed.

        Edits of pruned vertices give the same cell again; they are kept unless `distinct`, which
        drops neighbours with `a`'s hash and keeps the first of each other hash.
        """
        self._cell(a)
        out = []
        for i in range(GENOTYPE_LENGTH):
            for value in range(2 if i < len(EDGES) else len(OPS)):
                if value != a.genotype[i]:
                    g = list(a.genotype)
                    g[i] = value
                    b = self.make(g)
                    if self.is_valid(b):
                        out.append(b)
        return self._distinct(a, out) if distinct else out

    def _distinct(self, a: Architecture, archs: list[Architecture]) -> list[Architecture]:
        seen = {self.key(a)}
        kept = []
        for b in archs:
            if self.key(b) not in seen:
                seen.add(self.key(b))
                kept.append(b)
        return kept

    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
        """Uniform crossover over the genotype, redrawn until the child is valid (else `a`)."""
        self._cell(a)
        self._cell(b)
        for _ in range(CROSSOVER_TRIES):
            take_a = rng.random(GENOTYPE_LENGTH) < 0.5
            child = self.make(np.where(take_a, a.genotype, b.genotype))
            if self.is_valid(child):
                return child
        return a

    def edit_distance(self, a: Architecture, b: Architecture) -> int:
        """Hamming distance between genotypes (isomorphic cells may be far apart)."""
        return int(sum(x != y for x, y in zip(a.genotype, b.genotype)))

    def choices(self) -> list[int]:
        return [2] * len(EDGES) + [len(OPS)] * NUM_INTERMEDIATE

    def enumerate(self) -> Iterator[Architecture]:
        """Every unique cell (423,624), one representative each, sorted by module hash."""
        for genotype in cell_table().genotypes.tolist():
            yield Architecture(self.name, tuple(genotype))

    # --- encodings and capabilities ------------------------------------------------------
    def to_graph(self, a: Architecture):
        """The pruned cell: node types one-hot over [input, output, *OPS], edges as in the matrix."""
        from torch_geometric.data import Data

        matrix, labels = self._cell(a)
        types = torch.tensor([_node_type(label) for label in labels])
        x = torch.nn.functional.one_hot(types, 2 + len(OPS)).float()
        edge_index = torch.as_tensor(np.stack(np.nonzero(matrix)), dtype=torch.long)
        return Data(x=x, edge_index=edge_index)

    def path_encoding(self, a: Architecture) -> np.ndarray:
        """BANANAS path encoding: 364 slots, one per op sequence (length 0..5) of an input->output path."""
        matrix, labels = self._cell(a)
        encoding = np.zeros(PATH_SLOTS, dtype=np.float32)
        for path in _paths(matrix, labels):
            offset = sum(len(OPS) ** k for k in range(len(path)))
            index = 0
            for op in path:
                index = index * len(OPS) + op
            encoding[offset + index] = 1.0
        return encoding

    def adjacency_encoding(self, a: Architecture) -> np.ndarray:
        """The pruned cell in the 7-vertex frame (output at 6): 21 edge bits, then 5 one-hot ops
        (all zero for an unused vertex) -> 36 floats. Genotypes of one pruned cell share it."""
        matrix, labels = self._cell(a)
        n = matrix.shape[0]
        frame = [*range(n - 1), NUM_VERTICES - 1]
        full = np.zeros((NUM_VERTICES, NUM_VERTICES), dtype=np.float32)
        full[np.ix_(frame, frame)] = matrix
        ops = np.zeros((NUM_INTERMEDIATE, len(OPS)), dtype=np.float32)
        ops[np.arange(n - 2), list(labels[1:-1])] = 1.0
        rows, cols = zip(*EDGES)
        return np.concatenate([full[list(rows), list(cols)], ops.ravel()])

    def network(self, a: Architecture, num_classes: int = 10, in_channels: int = 3, **options) -> nn.Module:
        """The benchmark's network; options `stem_channels` (128), `num_stacks` (3), `modules_per_stack` (3)."""
        matrix, ops = self.spec(a)
        return nb101_network(matrix, ops, num_classes, in_channels=in_channels, **options)

    def codec(self):
        from lightning_nas.spaces.nb101.codec import NB101Codec

        return NB101Codec(self)


def _label_name(label: int) -> str:
    return INPUT if label == INPUT_LABEL else OUTPUT if label == OUTPUT_LABEL else OPS[label]


def _node_type(label: int) -> int:
    return 0 if label == INPUT_LABEL else 1 if label == OUTPUT_LABEL else 2 + label


def _paths(matrix: np.ndarray, labels: Sequence[int]) -> list[list[int]]:
    """Op sequences of every input->output path (vertices are in topological order)."""
    n = matrix.shape[0]
    into: list[list[list[int]]] = [[[]]] + [[] for _ in range(n - 1)]
    for v in range(n - 1):
        step = [] if v == 0 else [labels[v]]
        for w in np.flatnonzero(matrix[v]).tolist():
            into[w].extend(path + step for path in into[v])
    return into[n - 1]


def _parse_matrix(matrix: np.ndarray | Sequence[Sequence[int]] | str, num_ops: int) -> np.ndarray:
    if isinstance(matrix, str):
        text = matrix.strip()
        if not text or set(text) - {"0", "1"}:
            raise InvalidArchitectureError(f"matrix string {matrix!r} must contain only 0 and 1")
        n = int(round(len(text) ** 0.5))
        if n * n != len(text):
            raise InvalidArchitectureError(f"matrix string of length {len(text)} is not a square n*n matrix")
        adjacency = np.array([int(c) for c in text], dtype=np.int64).reshape(n, n)
    else:
        adjacency = np.asarray(matrix, dtype=np.int64)
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise InvalidArchitectureError(f"matrix of shape {adjacency.shape} is not square")
    n = adjacency.shape[0]
    if not 2 <= n <= NUM_VERTICES:
        raise InvalidArchitectureError(f"a NAS-Bench-101 cell has 2..{NUM_VERTICES} vertices, got {n}")
    if num_ops != n:
        raise InvalidArchitectureError(f"{num_ops} ops given for a {n}x{n} matrix; give one op per vertex")
    if not np.isin(adjacency, (0, 1)).all():
        raise InvalidArchitectureError("matrix entries must be 0 or 1")
    if np.tril(adjacency).any():
        raise InvalidArchitectureError(
            "matrix must be strictly upper triangular (every edge goes from a lower to a higher vertex)"
        )
    return adjacency


NB101 = register(NB101Space())
