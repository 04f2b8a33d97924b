"""The DARTS cell space as used by NAS-Bench-301: a normal and a reduction cell, 7 ops, no 'none'.

Each cell has two inputs, c_{k-2} (index 0) and c_{k-1} (index 1), and four intermediate nodes
(indices 2..5). Intermediate node i sums two edges, each an op applied to an earlier node; the
cell output concatenates all four intermediate nodes (NB301 fixes `concat = [2, 3, 4, 5]`).

Genotype (32 ints): for the normal then the reduction cell, for each intermediate node,
`(input_a, op_a, input_b, op_b)`; inputs of node i are in `0..i+1`, ops index `OPS`.

Conventions (NAS-Bench-301 / DARTS):
- the two inputs of a node are distinct: NB301's ConfigSpace encodes them as an unordered pair of
  distinct predecessors (`inputs_node_normal_3 in {0_1, 0_2, 1_2}`), and the DARTS derivation keeps
  the top-2 edges from distinct predecessors. Their order is free, so the string form keeps it.
- the op order is NB301's (also BANANAS' and NASLib's), so op indices agree with their encodings.
- isomorphic cells share one canonical key: the two edges of a node are unordered, and
  intermediate nodes may be relabelled in any order the DAG allows (the concat output is then
  a channel permutation, which the next cell's 1x1 preprocessing absorbs).

The official string is the `repr` of the DARTS `Genotype` namedtuple:
`Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5],
reduce=[...], reduce_concat=[2, 3, 4, 5])`.

This module holds the genotype and its rules, shared by the space, its codec and its network.
"""
from __future__ import annotations

import itertools
import numbers
from functools import lru_cache
from typing import Any, NamedTuple, Sequence

OPS: tuple[str, ...] = (
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
CELLS: tuple[str, ...] = ("normal", "reduce")
NUM_INPUTS = 2  # c_{k-2}, c_{k-1}
NUM_NODES = 4  # intermediate nodes per cell
EDGES_PER_NODE = 2
GENES_PER_NODE = 2 * EDGES_PER_NODE
GENES_PER_CELL = NUM_NODES * GENES_PER_NODE
CONCAT: tuple[int, ...] = tuple(range(NUM_INPUTS, NUM_INPUTS + NUM_NODES))
#: the longest input->output op sequence a cell can hold (c -> n2 -> n3 -> n4 -> n5)
LONGEST_PATH = NUM_NODES

# (input, op) of one edge; two of them make a node, four nodes a cell
Edge = tuple[int, int]
Node = tuple[Edge, Edge]
Cell = tuple[Node, ...]


class Genotype(NamedTuple):
    """Field-for-field the DARTS `Genotype`; its `repr` is the official string form."""

    normal: list[tuple[str, int]]
    normal_concat: list[int]
    reduce: list[tuple[str, int]]
    reduce_concat: list[int]


def split(genotype: Sequence[int]) -> tuple[Cell, ...]:
    """Flat genes -> cells of nodes of (input, op) edges."""
    cells = []
    for c in range(len(CELLS)):
        genes = genotype[c * GENES_PER_CELL:(c + 1) * GENES_PER_CELL]
        cells.append(tuple(
            ((genes[n], genes[n + 1]), (genes[n + 2], genes[n + 3]))
            for n in range(0, GENES_PER_CELL, GENES_PER_NODE)
        ))
    return tuple(cells)


def join(cells: Sequence[Cell]) -> list[int]:
    return [gene for cell in cells for node in cell for edge in node for gene in edge]


def genotype_problem(genotype: Sequence[int]) -> str | None:
    """What makes a genotype invalid, or None."""
    if len(genotype) != len(CELLS) * GENES_PER_CELL:
        return f"expected {len(CELLS) * GENES_PER_CELL} genes, got {len(genotype)}"
    for cell_name, cell in zip(CELLS, split(genotype)):
        for i, ((s1, o1), (s2, o2)) in enumerate(cell):
            where = f"{cell_name} node {i + NUM_INPUTS}"
            if not (0 <= s1 < i + NUM_INPUTS and 0 <= s2 < i + NUM_INPUTS):
                return f"{where} reads inputs ({s1}, {s2}); allowed 0..{i + NUM_INPUTS - 1}"
            if s1 == s2:
                return f"{where} reads input {s1} twice; its two inputs must differ"
            if not (0 <= o1 < len(OPS) and 0 <= o2 < len(OPS)):
                return f"{where} has ops ({o1}, {o2}); allowed 0..{len(OPS) - 1}"
    return None


def edge_problem(k: int, edge: Any, genes_so_far: list[int]) -> str | None:
    """What is wrong with the k-th (op, input) pair of a cell, or None."""
    if not (isinstance(edge, (tuple, list)) and len(edge) == 2):
        return "must be an (op, input) pair"
    op, source = edge
    sources = k // EDGES_PER_NODE + NUM_INPUTS
    if op not in OPS:
        return f"unknown op {op!r} (NB301 ops: {', '.join(OPS)})"
    if not isinstance(source, numbers.Integral) or isinstance(source, bool) or not 0 <= source < sources:
        return f"input must be an int in 0..{sources - 1}"
    if k % EDGES_PER_NODE == 1 and source == genes_so_far[-2]:
        return f"both edges of the node read input {source}; NB301 needs two distinct inputs"
    return None


def edge_distance(e: Edge, f: Edge) -> int:
    return int(e[0] != f[0]) + int(e[1] != f[1])


@lru_cache(maxsize=1 << 16)
def canonical_cell(cell: Cell) -> Cell:
    """Smallest relabelling of the intermediate nodes that keeps every input earlier than its
    node, with each node's two edges sorted. Isomorphisms fix the cell inputs and map nodes to
    nodes, so two cells are isomorphic exactly when they share this minimum."""
    best = None
    for perm in itertools.permutations(range(NUM_NODES)):
        relabelled = _relabel(cell, perm)
        if relabelled is not None and (best is None or relabelled < best):
            best = relabelled
    assert best is not None  # the identity permutation always qualifies
    return best


def _relabel(cell: Cell, perm: tuple[int, ...]) -> Cell | None:
    """Node i becomes node perm[i]; None when that breaks the topological order."""
    def new(source: int) -> int:
        return source if source < NUM_INPUTS else perm[source - NUM_INPUTS] + NUM_INPUTS

    nodes: list[Node | None] = [None] * NUM_NODES
    for i, node in enumerate(cell):
        target = perm[i]
        edges = sorted((new(source), op) for source, op in node)
        if any(source >= target + NUM_INPUTS for source, _ in edges):
            return None
        nodes[target] = (edges[0], edges[1])
    return tuple(nodes)  # type: ignore[arg-type]
