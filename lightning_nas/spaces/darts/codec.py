"""The G-VAE codec of the DARTS space."""
from __future__ import annotations

import torch
from torch.nn import functional as F
from torch_geometric.data import Data

from lightning_nas.spaces.base import Architecture, SearchSpace
from lightning_nas.spaces.codec import (
    IGNORE,
    INVALID,
    REPAIRED,
    VALID,
    Decoded,
    DecoderOutput,
    GraphCodec,
    most_probable,
)
from lightning_nas.spaces.darts.genotype import CELLS, EDGES_PER_NODE, NUM_INPUTS, NUM_NODES, OPS, split


class DartsCodec(GraphCodec):
    """DARTS / NB301: both cells as one 12-node graph (per cell c_{k-2}, c_{k-1}, 4 intermediate
    nodes; the concat output is fixed and left out). 14 possible edges per cell, op = edge type.
    A decoded intermediate node must have exactly two inputs: otherwise its two most probable
    input edges are taken (repaired)."""

    def __init__(self, space: SearchSpace):
        self.space = space
        per_cell = NUM_INPUTS + NUM_NODES
        self._per_cell = per_cell
        self.num_nodes = per_cell * len(CELLS)
        self.num_node_types = self.num_nodes
        self.num_edge_types = len(OPS)
        self.slots = tuple(
            (src + c * per_cell, dst + c * per_cell)
            for c in range(len(CELLS))
            for dst in range(NUM_INPUTS, per_cell)
            for src in range(dst)
        )
        self._slot_index = {slot: i for i, slot in enumerate(self.slots)}
        self.node_features = self.num_nodes
        self.edge_features = len(OPS)

    def _edges(self, a: Architecture) -> list[tuple[int, int, int]]:
        """(source, target, op) in graph node numbering."""
        out = []
        for c, cell in enumerate(split(a.genotype)):
            for i, node in enumerate(cell):
                dst = c * self._per_cell + NUM_INPUTS + i
                out += [(c * self._per_cell + src, dst, op) for src, op in node]
        return out

    def encoder_graph(self, a: Architecture) -> Data:
        edges = self._edges(a)
        edge_index = torch.tensor([[s for s, _, _ in edges], [t for _, t, _ in edges]], dtype=torch.long)
        edge_attr = F.one_hot(torch.tensor([op for _, _, op in edges]), self.num_edge_types).float()
        return Data(x=torch.eye(self.num_nodes), edge_index=edge_index, edge_attr=edge_attr)

    def targets(self, a: Architecture) -> tuple[list[int], list[int], list[int]]:
        exists = [0] * len(self.slots)
        types = [IGNORE] * len(self.slots)
        for src, dst, op in self._edges(a):
            slot = self._slot_index[(src, dst)]
            exists[slot], types[slot] = 1, op
        return list(range(self.num_nodes)), exists, types

    def decode(self, out: DecoderOutput) -> list[Decoded]:
        return [self._decode_one(nodes, edges, types) for nodes, edges, types in most_probable(out)]

    def _decode_one(self, nodes: torch.Tensor, edges: torch.Tensor, types: torch.Tensor) -> Decoded:
        repaired = not bool((nodes == torch.arange(self.num_nodes)).all())
        genes: list[int] = []
        for c in range(len(CELLS)):
            for i in range(NUM_NODES):
                dst = c * self._per_cell + NUM_INPUTS + i
                slots = [self._slot_index[(c * self._per_cell + src, dst)] for src in range(NUM_INPUTS + i)]
                probs = edges[slots]
                repaired |= int((probs > 0.5).sum()) != EDGES_PER_NODE
                chosen = sorted(torch.topk(probs, EDGES_PER_NODE).indices.tolist())
                for src in chosen:
                    genes += [src, int(types[slots[src]])]
        arch = self.space.make(genes)
        if not self.space.is_valid(arch):
            return Decoded(None, INVALID)
        return Decoded(arch, REPAIRED if repaired else VALID)
