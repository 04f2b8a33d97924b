"""NAS-Bench-101 cells: pruning, the official module hash, and the enumeration of every unique cell.

A cell is a DAG of at most 7 vertices (input, up to 5 ops, output) and at most 9 edges. The
benchmark keys a cell by `graph_util.hash_module`: an MD5 fingerprint of the pruned matrix and its
labels (input -1, output -2, op i = its index in `OPS`), refined Weisfeiler-Lehman style for as many
rounds as there are vertices. `module_hash` reproduces that algorithm bit for bit.

Enumerating the 423,624 unique cells never hashes the ~1.3M labelled graphs one by one: the
graphs are built with numpy, grouped by a vectorised 64-bit version of the same refinement (same
inputs at every round, so graphs with equal MD5 hashes always share a group), and only one graph
per group is hashed with MD5. The table is cached on disk, keyed by hash.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence, TypeVar

import numpy as np

#: op names in the benchmark's `available_ops` order; the index is the op's label in the hash
OPS: tuple[str, ...] = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
INPUT, OUTPUT = "input", "output"
INPUT_LABEL, OUTPUT_LABEL = -1, -2
NUM_VERTICES = 7
NUM_INTERMEDIATE = NUM_VERTICES - 2
MAX_EDGES = 9
#: the upper-triangular slots of the 7x7 matrix, row-major: (0,1), (0,2), ..., (5,6)
EDGES: tuple[tuple[int, int], ...] = tuple(itertools.combinations(range(NUM_VERTICES), 2))
#: unique cells of the space, as counted by the benchmark's authors
NUM_CELLS = 423_624

CACHE_ENV = "LIGHTNING_NAS_CACHE"
CACHE_FILE = "nb101_cells.npz"
CACHE_VERSION = 1

logger = logging.getLogger(__name__)

T = TypeVar("T")


# --- one cell ----------------------------------------------------------------------------
def on_path_vertices(matrix: np.ndarray) -> list[int] | None:
    """The vertices on some input->output path, in order, or None when input cannot reach output.

    Same rule as the benchmark's `ModelSpec` pruning: keep what is reachable from the input and
    reaches the output. `matrix` must be strictly upper triangular (a DAG in topological order).
    """
    adj = np.asarray(matrix).astype(bool)
    n = adj.shape[0]
    from_input = [False] * n
    from_input[0] = True
    for v in range(n):
        if from_input[v]:
            for w in np.flatnonzero(adj[v]).tolist():
                from_input[w] = True
    to_output = [False] * n
    to_output[n - 1] = True
    for v in range(n - 2, -1, -1):
        to_output[v] = any(to_output[w] for w in np.flatnonzero(adj[v]).tolist())
    if not to_output[0]:
        return None
    return [v for v in range(n) if from_input[v] and to_output[v]]


def prune(matrix: np.ndarray, labels: Sequence[T]) -> tuple[np.ndarray, list[T]] | None:
    """The cell without its vertices off every input->output path, with the kept vertices' labels
    (the benchmark's `ModelSpec` pruning, done before hashing and before building); None when the
    input cannot reach the output."""
    kept = on_path_vertices(matrix)
    if kept is None:
        return None
    return np.asarray(matrix)[np.ix_(kept, kept)], [labels[v] for v in kept]


def module_hash(matrix: np.ndarray, labels: Sequence[int]) -> str:
    """The benchmark's module hash of an (already pruned) cell; labels: -1 input, -2 output, op index."""
    adj = np.asarray(matrix).astype(bool)
    n = adj.shape[0]
    if adj.shape != (n, n) or len(labels) != n:
        raise ValueError(f"matrix of shape {adj.shape} does not fit {len(labels)} labels")
    ins = [np.flatnonzero(adj[:, v]).tolist() for v in range(n)]
    outs = [np.flatnonzero(adj[v]).tolist() for v in range(n)]
    return _md5_refinement(ins, outs, [int(x) for x in labels])


def _md5_refinement(ins: list[list[int]], outs: list[list[int]], labels: list[int]) -> str:
    # the hot loop of the enumeration (~24M digests): kept flat on purpose
    md5 = hashlib.md5
    n = len(labels)
    # the seed string is Python's repr of the (out-degree, in-degree, label) tuple
    hashes = [md5(str((len(outs[v]), len(ins[v]), labels[v])).encode()).hexdigest() for v in range(n)]
    for _ in range(n):
        hashes = [
            md5(
                (
                    "".join(sorted([hashes[w] for w in ins[v]]))
                    + "|"
                    + "".join(sorted([hashes[w] for w in outs[v]]))
                    + "|"
                    + hashes[v]
                ).encode()
            ).hexdigest()
            for v in range(n)
        ]
    return md5(str(sorted(hashes)).encode()).hexdigest()


# --- the enumeration ---------------------------------------------------------------------
@dataclass(frozen=True)
class CellTable:
    """Every unique cell, sorted by hash. `genotypes[i]`: 21 edge bits + 5 op indices of cell i,
    with the pruned cell's vertices first, the output at vertex 6 and unused op slots 0."""

    hashes: np.ndarray  # (N,) bytes 'S32', sorted
    genotypes: np.ndarray  # (N, 26) uint8

    def __len__(self) -> int:
        return len(self.hashes)

    def index(self, key: str) -> int | None:
        needle = np.bytes_(key.encode("ascii", "replace"))
        i = int(np.searchsorted(self.hashes, needle))
        return i if i < len(self.hashes) and self.hashes[i] == needle else None


def _full_dags(n: int) -> np.ndarray:
    """All n-vertex upper-triangular matrices with <= MAX_EDGES edges and no dangling vertex
    (every vertex but the output has an out-edge, every vertex but the input an in-edge)."""
    slots = list(itertools.combinations(range(n), 2))
    codes = np.arange(2 ** len(slots), dtype=np.uint32)
    codes = codes[np.bitwise_count(codes) <= MAX_EDGES]
    bits = ((codes[:, None] >> np.arange(len(slots), dtype=np.uint32)) & 1).astype(np.uint8)
    matrices = np.zeros((len(codes), n, n), dtype=np.uint8)
    rows, cols = zip(*slots)
    matrices[:, list(rows), list(cols)] = bits
    has_out = matrices[:, :-1, :].any(axis=2).all(axis=1)
    has_in = matrices[:, :, 1:].any(axis=1).all(axis=1)
    return matrices[has_out & has_in]


def _labelings(n: int) -> np.ndarray:
    """(3**(n-2), n) int8: every op assignment with the input/output labels at the ends."""
    ops = np.array(list(itertools.product(range(len(OPS)), repeat=n - 2)), dtype=np.int8)
    ops = ops.reshape(len(OPS) ** (n - 2), n - 2)  # also for n == 2: one empty assignment
    ends = np.ones((len(ops), 1), dtype=np.int8)
    return np.concatenate([ends * INPUT_LABEL, ops, ends * OUTPUT_LABEL], axis=1)


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_SALT_IN, _SALT_OUT = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD1B54A32D192ED03)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective scramble of uint64 (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _fingerprints(matrices: np.ndarray, labelings: np.ndarray) -> np.ndarray:
    """(G, L) uint64: the module-hash refinement with 64-bit mixing instead of MD5.

    Each round sees what the MD5 round sees (the multisets of in- and out-neighbour states and the
    own state), so equal MD5 hashes imply equal fingerprints; sums of scrambled states stand in
    for the sorted concatenations.
    """
    n = matrices.shape[1]
    adj = matrices.astype(np.uint64)
    out_deg = matrices.sum(axis=2).astype(np.uint64)[:, None, :]
    in_deg = matrices.sum(axis=1).astype(np.uint64)[:, None, :]
    label = (labelings.astype(np.int64) + 2).astype(np.uint64)[None, :, :]
    state = _mix(out_deg * np.uint64(64) + in_deg * np.uint64(8) + label + np.uint64(1))
    for _ in range(n):
        from_in = np.einsum("gwv,glw->glv", adj, _mix(state ^ _SALT_IN))
        from_out = np.einsum("gvw,glw->glv", adj, _mix(state ^ _SALT_OUT))
        state = _mix(_mix(_mix(state) ^ from_in) ^ from_out)
    return _mix(state).sum(axis=2)


def _embed_genotypes(matrices: np.ndarray, labelings: np.ndarray) -> np.ndarray:
    """Genotypes of n-vertex cells placed in the 7-vertex frame (output moved to vertex 6)."""
    n = matrices.shape[1]
    frame = [*range(n - 1), NUM_VERTICES - 1]  # cell vertex -> frame vertex
    big = np.zeros((len(matrices), NUM_VERTICES, NUM_VERTICES), dtype=np.uint8)
    big[:, np.array(frame)[:, None], np.array(frame)[None, :]] = matrices
    rows, cols = zip(*EDGES)
    ops = np.zeros((len(matrices), NUM_INTERMEDIATE), dtype=np.uint8)
    ops[:, : n - 2] = labelings[:, 1:-1]
    return np.concatenate([big[:, list(rows), list(cols)], ops], axis=1)


def _unique_cells_of_size(n: int, chunk: int = 512) -> tuple[list[str], np.ndarray]:
    """(module hashes, genotypes) of one representative per group of n-vertex labelled graphs."""
    matrices, labelings = _full_dags(n), _labelings(n)
    prints = np.concatenate(
        [_fingerprints(matrices[i : i + chunk], labelings).ravel() for i in range(0, len(matrices), chunk)]
    )
    _, first = np.unique(prints, return_index=True)
    first.sort()
    graph_of, labeling_of = np.divmod(first, len(labelings))
    neighbours = [
        ([np.flatnonzero(m[:, v]).tolist() for v in range(n)], [np.flatnonzero(m[v]).tolist() for v in range(n)])
        for m in matrices
    ]
    label_lists = labelings.tolist()
    hashes = [_md5_refinement(*neighbours[g], label_lists[k]) for g, k in zip(graph_of.tolist(), labeling_of.tolist())]
    return hashes, _embed_genotypes(matrices[graph_of], labelings[labeling_of])


def build_cell_table(max_vertices: int = NUM_VERTICES) -> CellTable:
    """Enumerate every unique cell of up to `max_vertices` vertices from scratch (all of them:
    about a minute of one core)."""
    hashes: list[str] = []
    genotypes = []
    for n in range(2, max_vertices + 1):
        h, g = _unique_cells_of_size(n)
        hashes += h
        genotypes.append(g)
    keys = np.array(hashes, dtype="S32")
    order = np.argsort(keys, kind="stable")
    table = CellTable(keys[order], np.concatenate(genotypes)[order])
    if len(np.unique(table.hashes)) != len(table):
        raise RuntimeError("two NAS-Bench-101 groups share a module hash: the enumeration is broken")
    return table


# --- the on-disk cache ---------------------------------------------------------------------
def cache_dir() -> Path:
    """`$LIGHTNING_NAS_CACHE` if set, else `~/.cache/lightning_nas`."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lightning_nas"


def _read_cache(path: Path, rows: int = NUM_CELLS) -> CellTable | None:
    """The cached table, or None when the file is missing, of another version, or damaged."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION:
                return None
            table = CellTable(z["hashes"], z["genotypes"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
    if len(table) != rows or table.genotypes.shape != (rows, len(EDGES) + NUM_INTERMEDIATE):
        return None
    return table


def _write_cache(path: Path, table: CellTable) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, version=np.array(CACHE_VERSION), hashes=table.hashes, genotypes=table.genotypes)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shareable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@lru_cache(maxsize=4)
def _load(path: Path) -> CellTable:
    table = _read_cache(path)
    if table is None:  # missing, stale or damaged: rebuild and replace atomically
        logger.info("enumerating the %d NAS-Bench-101 cells once (about a minute); caching them in %s", NUM_CELLS, path)
        table = build_cell_table()
        if len(table) != NUM_CELLS:
            raise RuntimeError(f"enumerated {len(table)} NAS-Bench-101 cells, expected {NUM_CELLS}")
        _write_cache(path, table)
    return table


def cell_table() -> CellTable:
    """The table of every unique cell, from the disk cache (built on first use)."""
    return _load(cache_dir() / CACHE_FILE)
