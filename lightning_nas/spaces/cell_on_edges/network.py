"""The cell of the cell-on-edges spaces as a module: one op per edge, nodes sum their inputs."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from lightning_nas.spaces.cell_on_edges.dag import EDGES, NUM_NODES
from lightning_nas.spaces.layers import SkipsDeadBranches


def _used_nodes(genotype: Sequence[int], none_op: int) -> list[bool]:
    """Which cell nodes influence the output through edges that are not the zero op."""
    used = [False] * (NUM_NODES - 1) + [True]
    for e in reversed(range(len(EDGES))):
        src, dst = EDGES[e]
        if used[dst] and genotype[e] != none_op:
            used[src] = True
    return used


class EdgeCell(SkipsDeadBranches):
    """A 4-node cell with one op per edge (NB201, TNB101 micro); `make_op(op, source node)`
    builds the module of an edge. Edges with the zero op are not built."""

    def __init__(self, genotype: Sequence[int], make_op: Callable[[int, int], nn.Module], none_op: int = 0):
        super().__init__()
        self.genotype = tuple(genotype)
        self.none_op = none_op
        # index by edge number so that the state-dict names are stable
        self.edges = nn.ModuleDict(
            {str(e): make_op(op, src) for e, (op, (src, _)) in enumerate(zip(genotype, EDGES)) if op != none_op}
        )
        self.used = _used_nodes(genotype, none_op)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [x]
        for dst in range(1, NUM_NODES):
            if not (self.used[dst] or self.every_op):
                nodes.append(None)
                continue
            terms = [self.edges[str(e)](nodes[src]) for e, (src, d) in enumerate(EDGES) if d == dst and str(e) in self.edges]
            nodes.append(torch.stack(terms).sum(0) if terms else self._zeros(x))
        return nodes[-1]

    def _zeros(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(self.zero_shape(x))

    def zero_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(x.shape)
