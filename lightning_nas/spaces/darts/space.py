"""The DARTS cell space as used by NAS-Bench-301 (genotype and conventions: `darts.genotype`).

The official string is the `repr` of the DARTS `Genotype` namedtuple:
`Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5],
reduce=[...], reduce_concat=[2, 3, 4, 5])`.
"""
from __future__ import annotations

import ast
from typing import Any

import numpy as np
import torch

from lightning_nas.errors import ConfigError
from lightning_nas.spaces.base import (
    Architecture,
    InvalidArchitectureError,
    SearchSpace,
    parse_error,
    register,
    wrong_space_error,
)
from lightning_nas.spaces.darts.genotype import (
    CELLS,
    CONCAT,
    EDGES_PER_NODE,
    GENES_PER_CELL,
    GENES_PER_NODE,
    LONGEST_PATH,
    NUM_INPUTS,
    NUM_NODES,
    OPS,
    Cell,
    Genotype,
    canonical_cell,
    edge_distance,
    edge_problem,
    genotype_problem,
    join,
    split,
)

# graph node types in `to_graph`: the two cell inputs, an intermediate sum, the concat output, ops
_GRAPH_TYPES = ("c_{k-2}", "c_{k-1}", "node", "output")
_GRAPH_NODES_PER_CELL = NUM_INPUTS + NUM_NODES * EDGES_PER_NODE + NUM_NODES + 1
# every (source, target) pair an edge of a cell may connect, targets 2..5: 2 + 3 + 4 + 5 = 14
_POSSIBLE_EDGES: tuple[tuple[int, int], ...] = tuple(
    (src, dst) for dst in CONCAT for src in range(dst)
)


class DARTSSpace(SearchSpace):
    name = "darts"
    ops = OPS

    def __init__(self, max_path_length: int = 3) -> None:
        """`max_path_length` truncates the path encoding (see `path_encoding`); 1..4."""
        if not 1 <= max_path_length <= LONGEST_PATH:
            raise ConfigError(f"max_path_length must be in 1..{LONGEST_PATH}, got {max_path_length}")
        self.max_path_length = max_path_length

    # --- identity ------------------------------------------------------------------------
    def is_valid(self, a: Architecture) -> bool:
        return a.space == self.name and genotype_problem(a.genotype) is None

    def check(self, a: Architecture) -> None:
        if a.space != self.name:
            raise wrong_space_error(self.name, a)
        problem = genotype_problem(a.genotype)
        if problem is not None:
            raise InvalidArchitectureError(f"invalid {self.name} genotype {a.genotype}: {problem}")

    def canonical(self, a: Architecture) -> str:
        """The official string of `canonicalize(a)`: one key per isomorphism class."""
        return self.to_string(self.canonicalize(a))

    def canonicalize(self, a: Architecture) -> Architecture:
        """The smallest genotype isomorphic to `a` (edges of a node sorted, nodes relabelled)."""
        self.check(a)
        cells = [canonical_cell(cell) for cell in split(a.genotype)]
        return self.make(join(cells))

    # --- string forms --------------------------------------------------------------------
    def to_genotype(self, a: Architecture) -> Genotype:
        """The DARTS `Genotype` of `a` (what DARTS / NB301 model builders take)."""
        self.check(a)
        normal, reduce = (
            [(OPS[op], source) for node in cell for source, op in node] for cell in split(a.genotype)
        )
        return Genotype(normal, list(CONCAT), reduce, list(CONCAT))

    def to_string(self, a: Architecture) -> str:
        return repr(self.to_genotype(a))

    def from_genotype(self, genotype: Any, text: str | None = None) -> Architecture:
        """Accepts any object with the four `Genotype` fields (e.g. the DARTS namedtuple)."""
        text = repr(genotype) if text is None else text
        missing = [f for f in Genotype._fields if not hasattr(genotype, f)]
        if missing:
            raise parse_error(self.name, text, f"missing field(s) {', '.join(missing)}")
        genes: list[int] = []
        for cell in CELLS:
            concat = getattr(genotype, f"{cell}_concat")
            if not isinstance(concat, (list, tuple, range)) or list(concat) != list(CONCAT):
                why = f"{cell}_concat must be {list(CONCAT)} (NB301 concatenates every node), got {concat!r}"
                raise parse_error(self.name, text, why)
            genes.extend(self._cell_genes(cell, getattr(genotype, cell), text))
        return self.make(genes)

    def from_string(self, s: str) -> Architecture:
        if not isinstance(s, str):
            raise InvalidArchitectureError(f"a {self.name} architecture string must be a str, not {type(s).__name__}")
        fields = _genotype_call_fields(self.name, s)
        values = {name: _literal(self.name, s, name, node) for name, node in fields.items()}
        return self.from_genotype(Genotype(**values), text=s)

    def _cell_genes(self, cell: str, edges: Any, text: str) -> list[int]:
        count = NUM_NODES * EDGES_PER_NODE
        if not isinstance(edges, (list, tuple)) or len(edges) != count:
            raise parse_error(self.name, text, f"{cell} must be a list of {count} (op, input) pairs, got {edges!r}")
        genes: list[int] = []
        for k, edge in enumerate(edges):
            problem = edge_problem(k, edge, genes)
            if problem is not None:
                raise parse_error(self.name, text, f"{cell} edge {k} {edge!r} (node {k // 2 + NUM_INPUTS}): {problem}")
            genes += [int(edge[1]), OPS.index(edge[0])]
        return genes

    # --- variation -----------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Architecture:
        """Uniform over valid genotypes: distinct inputs per node, ops uniform (as NB301 / BANANAS)."""
        genes: list[int] = []
        for _cell in CELLS:
            for i in range(NUM_NODES):
                sources = rng.choice(i + NUM_INPUTS, size=EDGES_PER_NODE, replace=False)
                ops = rng.integers(len(OPS), size=EDGES_PER_NODE)
                genes += [int(sources[0]), int(ops[0]), int(sources[1]), int(ops[1])]
        return self.make(genes)

    def neighbours(self, a: Architecture) -> list[Architecture]:
        """Change one op (6 x 16 edges) or one input to another free one (24): 120 in all."""
        self.check(a)
        out = []
        for position in range(len(a.genotype)):
            for value in self._alternatives(a.genotype, position):
                g = list(a.genotype)
                g[position] = value
                out.append(self.make(g))
        return out

    def _alternatives(self, genotype: tuple[int, ...], position: int) -> list[int]:
        current = genotype[position]
        if position % 2 == 1:  # an op gene
            return [op for op in range(len(OPS)) if op != current]
        node = (position % GENES_PER_CELL) // GENES_PER_NODE
        partner = position + 2 if position % GENES_PER_NODE == 0 else position - 2
        return [s for s in range(node + NUM_INPUTS) if s not in (current, genotype[partner])]

    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
        """Uniform per node: each intermediate node (both of its edges) comes from either parent."""
        self.check(a)
        self.check(b)
        take_a = rng.random(len(CELLS) * NUM_NODES) < 0.5
        genes = []
        for n, from_a in enumerate(take_a):
            parent = a if from_a else b
            genes.extend(parent.genotype[n * GENES_PER_NODE:(n + 1) * GENES_PER_NODE])
        return self.make(genes)

    def edit_distance(self, a: Architecture, b: Architecture) -> int:
        """Changed inputs and ops, with the two edges of each node matched up at best."""
        self.check(a)
        self.check(b)
        total = 0
        for cell_a, cell_b in zip(split(a.genotype), split(b.genotype)):
            for (e1, e2), (f1, f2) in zip(cell_a, cell_b):
                straight = edge_distance(e1, f1) + edge_distance(e2, f2)
                crossed = edge_distance(e1, f2) + edge_distance(e2, f1)
                total += min(straight, crossed)
        return total

    def choices(self) -> list[int]:
        """Per gene: inputs of node i have i + 2 options, ops 7. Inputs of a node must also differ,
        which cardinalities cannot say: check `is_valid` when filling genes independently."""
        per_cell = []
        for i in range(NUM_NODES):
            per_cell += [i + NUM_INPUTS, len(OPS)] * EDGES_PER_NODE
        return per_cell * len(CELLS)

    # --- encodings -----------------------------------------------------------------------
    def to_graph(self, a: Architecture):
        """Ops on nodes, both cells as a disjoint union (normal first, 15 nodes each).

        Per cell: c_{k-2}, c_{k-1}, one node per edge op, one sum node per intermediate node,
        the concat output. Features: one-hot type over [c_{k-2}, c_{k-1}, node, output, *OPS]
        followed by a cell flag (0 normal, 1 reduce)."""
        from torch_geometric.data import Data

        self.check(a)
        types, edges = [], []
        for c, cell in enumerate(split(a.genotype)):
            cell_types, cell_edges = _cell_graph(cell)
            offset = c * _GRAPH_NODES_PER_CELL
            types += cell_types
            edges += [(s + offset, t + offset) for s, t in cell_edges]
        one_hot = torch.nn.functional.one_hot(torch.tensor(types), len(_GRAPH_TYPES) + len(OPS)).float()
        flag = torch.repeat_interleave(torch.arange(len(CELLS), dtype=torch.float32), _GRAPH_NODES_PER_CELL)
        x = torch.cat([one_hot, flag.unsqueeze(1)], dim=1)
        edge_index = torch.tensor(edges, dtype=torch.long).t().contiguous()
        return Data(x=x, edge_index=edge_index)

    def path_encoding(self, a: Architecture) -> np.ndarray:
        """BANANAS-style binary path encoding, one block per (cell, input).

        A path is the op sequence from one cell input to an intermediate node (every node feeds
        the concat output). Each block has one slot per op sequence of length 1..max_path_length
        and, when max_path_length < 4, one shared slot for all longer paths (BANANAS'
        `long_paths=False` truncation: length-4 paths alone would need 7^4 = 2401 slots per block).
        Default length: 4 x (7 + 49 + 343 + 1) = 1600; untruncated 4 x 2800 = 11200."""
        self.check(a)
        block = self._path_block_size()
        encoding = np.zeros(len(CELLS) * NUM_INPUTS * block, dtype=np.float32)
        for c, cell in enumerate(split(a.genotype)):
            for source, ops in _cell_paths(cell):
                encoding[(c * NUM_INPUTS + source) * block + self._path_slot(ops)] = 1.0
        return encoding

    def _path_block_size(self) -> int:
        k = len(OPS)
        overflow = 1 if self.max_path_length < LONGEST_PATH else 0
        return sum(k**n for n in range(1, self.max_path_length + 1)) + overflow

    def _path_slot(self, ops: tuple[int, ...]) -> int:
        k = len(OPS)
        if len(ops) > self.max_path_length:
            return self._path_block_size() - 1
        index = 0
        for op in ops:
            index = index * k + op
        return sum(k**n for n in range(1, len(ops))) + index

    def adjacency_encoding(self, a: Architecture) -> np.ndarray:
        """Per cell: the 14 possible edges (targets 2..5) as 0/1, then a one-hot op per possible
        edge (zeros when absent); normal then reduce, 2 x (14 + 98) = 224. Edge order is free."""
        self.check(a)
        blocks = []
        for cell in split(a.genotype):
            adjacency = np.zeros(len(_POSSIBLE_EDGES), dtype=np.float32)
            ops = np.zeros((len(_POSSIBLE_EDGES), len(OPS)), dtype=np.float32)
            for i, node in enumerate(cell):
                for source, op in node:
                    e = _POSSIBLE_EDGES.index((source, i + NUM_INPUTS))
                    adjacency[e] = 1.0
                    ops[e, op] = 1.0
            blocks += [adjacency, ops.ravel()]
        return np.concatenate(blocks)

    def codec(self):
        from lightning_nas.spaces.darts.codec import DartsCodec

        return DartsCodec(self)

    def network(self, a: Architecture, num_classes: int = 10, in_channels: int = 3, **options):
        """The network NAS-Bench-301 trains (`lightning_nas.spaces.darts.network.darts_network`):
        options `channels` (C, 32), `layers` (8), `input_size`, `auxiliary`, `affine`, `pool_bn`."""
        from lightning_nas.spaces.darts.network import darts_network

        return darts_network(self.to_genotype(a), num_classes, in_channels=in_channels, **options)


# --- featurisation helpers ----------------------------------------------------------------
def _cell_paths(cell: Cell) -> list[tuple[int, tuple[int, ...]]]:
    """Every (cell input, op sequence) path ending at an intermediate node."""
    paths_to: list[list[tuple[int, tuple[int, ...]]]] = []
    for node in cell:
        here = []
        for source, op in node:
            if source < NUM_INPUTS:
                here.append((source, (op,)))
            else:
                here += [(start, ops + (op,)) for start, ops in paths_to[source - NUM_INPUTS]]
        paths_to.append(here)
    return [path for here in paths_to for path in here]


def _cell_graph(cell: Cell) -> tuple[list[int], list[tuple[int, int]]]:
    """Node types and edges of one cell's ops-on-nodes graph (local indices)."""
    first_op = NUM_INPUTS
    first_sum = first_op + NUM_NODES * EDGES_PER_NODE
    output = first_sum + NUM_NODES
    sum_type, output_type = _GRAPH_TYPES.index("node"), _GRAPH_TYPES.index("output")
    types = [0, 1] + [0] * (NUM_NODES * EDGES_PER_NODE) + [sum_type] * NUM_NODES + [output_type]
    edges = []
    for i, node in enumerate(cell):
        for slot, (source, op) in enumerate(node):
            op_node = first_op + i * EDGES_PER_NODE + slot
            types[op_node] = len(_GRAPH_TYPES) + op
            from_node = source if source < NUM_INPUTS else first_sum + source - NUM_INPUTS
            edges += [(from_node, op_node), (op_node, first_sum + i)]
        edges.append((first_sum + i, output))
    return types, edges


# --- parsing -------------------------------------------------------------------------------
def _genotype_call_fields(space: str, s: str) -> dict[str, ast.expr]:
    """The four fields of a `Genotype(...)` call, given by keyword or position."""
    expected = (
        "Genotype(normal=[(op, input), ...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])"
    )
    try:
        call = ast.parse(s.strip(), mode="eval").body
    except SyntaxError as e:
        raise parse_error(space, s, f"not a Python expression ({e.msg}); expected {expected}") from None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
        raise parse_error(space, s, f"expected {expected}")
    fields: dict[str, ast.expr] = dict(zip(Genotype._fields, call.args))
    if len(call.args) > len(Genotype._fields):
        why = f"Genotype takes {len(Genotype._fields)} fields, got {len(call.args)} positional"
        raise parse_error(space, s, why)
    for keyword in call.keywords:
        if keyword.arg not in Genotype._fields:
            raise parse_error(space, s, f"unknown field {keyword.arg!r} (fields: {', '.join(Genotype._fields)})")
        if keyword.arg in fields:
            raise parse_error(space, s, f"field {keyword.arg!r} given twice")
        fields[keyword.arg] = keyword.value
    missing = [f for f in Genotype._fields if f not in fields]
    if missing:
        raise parse_error(space, s, f"missing field(s) {', '.join(missing)}")
    return fields


def _literal(space: str, s: str, field: str, node: ast.expr) -> Any:
    """A literal field value; `range(a, b)` is accepted for the concat fields (DARTS writes it)."""
    if (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
        and not node.keywords
        and all(isinstance(arg, ast.Constant) and isinstance(arg.value, int) for arg in node.args)
    ):
        return list(range(*(arg.value for arg in node.args)))  # type: ignore[misc]
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        raise parse_error(space, s, f"field {field}={ast.unparse(node)!r} is not a literal") from None


DARTS = register(DARTSSpace())
