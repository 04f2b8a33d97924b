"""The G-VAE codec of a layer-wise space: the chain graph of `to_graph`, node types decoded per position."""
from __future__ import annotations

import torch
from torch_geometric.data import Data

from lightning_nas.spaces.base import Architecture
from lightning_nas.spaces.codec import IGNORE, REPAIRED, VALID, Decoded, DecoderOutput, GraphCodec


class LayerwiseCodec(GraphCodec):
    """Nodes: input, one per position, output; the chain's edges are fixed and carry no type. A
    position decodes to its most probable own choice (repaired when another type or a missing
    chain edge was more probable), so every decoded graph is an architecture."""

    def __init__(self, space):
        self.space = space
        positions = len(space.choices())
        self.num_nodes = positions + 2
        self.num_node_types = 2 + sum(space.choices())
        self.num_edge_types = 0
        self.slots = tuple((i, i + 1) for i in range(positions + 1))
        self.node_features = self.num_node_types
        self.edge_features = 0
        self._ranges = []
        start = 2
        for count in space.choices():
            self._ranges.append((start, start + count))
            start += count

    def encoder_graph(self, a: Architecture) -> Data:
        return self.space.to_graph(a)

    def targets(self, a: Architecture) -> tuple[list[int], list[int], list[int]]:
        return self.space.node_types(a), [1] * len(self.slots), [IGNORE] * len(self.slots)

    def decode(self, out: DecoderOutput) -> list[Decoded]:
        types = out.node_logits.argmax(-1).cpu()
        probs = torch.sigmoid(out.edge_logits).cpu()
        genes = torch.stack(
            [out.node_logits[:, 1 + p, lo:hi].argmax(-1) for p, (lo, hi) in enumerate(self._ranges)], dim=1
        ).cpu()
        return [self._decode_one(t, g, e) for t, g, e in zip(types, genes, probs)]

    def _decode_one(self, types: torch.Tensor, genes: torch.Tensor, edges: torch.Tensor) -> Decoded:
        arch = self.space.make(genes.tolist())
        exact = types.tolist() == self.space.node_types(arch) and bool((edges > 0.5).all())
        return Decoded(arch, VALID if exact else REPAIRED)
