"""The G-VAE codec of the cell-on-edges spaces."""
from __future__ import annotations

import torch
from torch_geometric.data import Data

from lightning_nas.spaces.base import Architecture, SearchSpace
from lightning_nas.spaces.cell_on_edges.dag import EDGES, NUM_NODES
from lightning_nas.spaces.codec import REPAIRED, VALID, Decoded, DecoderOutput, GraphCodec, most_probable


class CellOnEdgesCodec(GraphCodec):
    """NB201 / TNB101-micro: 4 nodes typed by their order, all 6 edges present, op = edge type
    (the paper's "node attributes = node orders, edge attributes = operator types")."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.num_nodes = NUM_NODES
        self.num_node_types = NUM_NODES
        self.num_edge_types = len(space.ops)
        self.slots = EDGES
        self.node_features = NUM_NODES
        self.edge_features = len(space.ops)

    def encoder_graph(self, a: Architecture) -> Data:
        """The 4-node cell itself, `edge_attr` one-hot ops."""
        self.space.check(a)
        edge_index = torch.tensor(EDGES, dtype=torch.long).t().contiguous()
        edge_attr = torch.nn.functional.one_hot(torch.tensor(a.genotype), len(self.space.ops)).float()
        return Data(x=torch.eye(NUM_NODES), edge_index=edge_index, edge_attr=edge_attr)

    def targets(self, a: Architecture) -> tuple[list[int], list[int], list[int]]:
        return list(range(self.num_nodes)), [1] * len(self.slots), list(a.genotype)

    def decode(self, out: DecoderOutput) -> list[Decoded]:
        return [self._decode_one(nodes, edges, types) for nodes, edges, types in most_probable(out)]

    def _decode_one(self, nodes: torch.Tensor, edges: torch.Tensor, types: torch.Tensor) -> Decoded:
        arch = self.space.make(types.tolist())
        # the cell's wiring is fixed: a wrong node order or a missing edge is repaired by ignoring it
        fixed = bool((nodes == torch.arange(self.num_nodes)).all()) and bool((edges > 0.5).all())
        return Decoded(arch, VALID if fixed else REPAIRED)
