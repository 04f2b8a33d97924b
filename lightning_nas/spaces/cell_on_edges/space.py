"""Cells with ops on the six edges of a 4-node DAG: the NAS-Bench-201 shape (also TransNAS-Bench-101 micro).

Genotype: one op index per edge, edges in the official order 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2.
"""
from __future__ import annotations

from functools import cached_property, lru_cache

import numpy as np
import torch

from lightning_nas.spaces.base import Architecture
from lightning_nas.spaces.cell_on_edges.dag import EDGES, NUM_NODES, ROUTES
from lightning_nas.spaces.choices import ChoiceSpace



class CellOnEdgesSpace(ChoiceSpace):
    #: op names in index order; index 0 must be the zero op ("none")
    ops: tuple[str, ...]
    none_op = 0
    skip_op = 1

    def choices(self) -> list[int]:
        return [len(self.ops)] * len(EDGES)

    # --- identity ------------------------------------------------------------------------
    def canonical(self, a: Architecture) -> str:
        """The computed function as an expression: isomorphic or equivalent cells share it."""
        return _canonical(a.genotype, self.none_op, self.skip_op, self.ops)

    def representative(self, a: Architecture) -> Architecture:
        self.check(a)
        return self.make(self._representatives[a.genotype])

    @cached_property
    def _representatives(self) -> dict[tuple[int, ...], tuple[int, ...]]:
        classes: dict[str, list[tuple[int, ...]]] = {}
        for a in self.enumerate():
            classes.setdefault(self.canonical(a), []).append(a.genotype)
        out = {}
        for members in classes.values():
            # the member with the most zero ops (its dead ops removed), then the smallest genotype
            chosen = min(members, key=lambda m: (-m.count(self.none_op), m))
            out.update(dict.fromkeys(members, chosen))
        return out

    # --- encodings and capabilities ------------------------------------------------------
    def to_graph(self, a: Architecture):
        """Ops on nodes: input, one node per edge op, output; node types one-hot over [input, output, *ops]."""
        from torch_geometric.data import Data

        self.check(a)
        types = torch.tensor([0, *[2 + op for op in a.genotype], 1])
        x = torch.nn.functional.one_hot(types, 2 + len(self.ops)).float()
        return Data(x=x, edge_index=_OP_NODE_EDGE_INDEX.clone())

    def path_encoding(self, a: Architecture) -> np.ndarray:
        """BANANAS-style: one slot per op sequence of length 1..3 over the non-zero ops."""
        self.check(a)
        k = len(self.ops) - 1
        encoding = np.zeros(sum(k**n for n in range(1, 4)), dtype=np.float32)
        for route in ROUTES:
            seq = [a.genotype[e] for e in route]
            if self.none_op in seq:
                continue
            offset = sum(k**n for n in range(1, len(seq)))
            index = 0
            for op in seq:
                index = index * k + (op - 1)
            encoding[offset + index] = 1.0
        return encoding

    def codec(self):
        from lightning_nas.spaces.cell_on_edges.codec import CellOnEdgesCodec

        return CellOnEdgesCodec(self)


def _op_node_edges() -> torch.Tensor:
    # node 0 = input, node 1 + e = op of cell edge e, node 7 = output
    edges = []
    for e, (src, dst) in enumerate(EDGES):
        if src == 0:
            edges.append((0, 1 + e))
        for f, (src2, _) in enumerate(EDGES):
            if src2 == dst:
                edges.append((1 + e, 1 + f))
        if dst == NUM_NODES - 1:
            edges.append((1 + e, 1 + len(EDGES)))
    return torch.tensor(edges, dtype=torch.long).t().contiguous()


_OP_NODE_EDGE_INDEX = _op_node_edges()


@lru_cache(maxsize=None)
def _canonical(genotype: tuple[int, ...], none_op: int, skip_op: int, ops: tuple[str, ...]) -> str:
    # each node's value as a sorted tuple of summed terms; () is the constant zero
    def render(terms: tuple[str, ...]) -> str:
        return terms[0] if len(terms) == 1 else "[" + "+".join(terms) + "]"

    nodes: list[tuple[str, ...]] = [("x",)]
    for dst in range(1, NUM_NODES):
        terms: list[str] = []
        for e, (src, d) in enumerate(EDGES):
            if d != dst or genotype[e] == none_op or not nodes[src]:
                continue
            if genotype[e] == skip_op:
                terms.extend(nodes[src])
            else:
                terms.append(f"{ops[genotype[e]]}({render(nodes[src])})")
        nodes.append(tuple(sorted(terms)))
    return render(nodes[-1]) if nodes[-1] else "zero"
