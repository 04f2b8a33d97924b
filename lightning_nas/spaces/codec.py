"""The `GraphCodec` protocol: how the G-VAE of CR-LSO sees one search space.

A codec builds the encoder's input graph and the decoder's targets for an architecture, and turns
decoder outputs back into an architecture with an explicit verdict: `valid` (decoded as is),
`repaired` (fixed to satisfy the space's rules) or `invalid` (cannot be fixed; no architecture).
Spaces offer one through their `codec()` capability; the G-VAE model (`lightning_nas.nn.gvae`)
is built from the codec's sizes.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch_geometric.data import Batch, Data

from lightning_nas.spaces.base import Architecture, SearchSpace

IGNORE = -100  # edge-type target of a slot without an edge (cross-entropy's ignore_index)

VALID, REPAIRED, INVALID = "valid", "repaired", "invalid"


@dataclass(frozen=True)
class Decoded:
    arch: Architecture | None
    status: str  # VALID, REPAIRED or INVALID


@dataclass
class DecoderOutput:
    node_logits: torch.Tensor  # [B, N, node types]
    edge_logits: torch.Tensor  # [B, S] one per possible edge slot
    type_logits: torch.Tensor  # [B, S, edge types] (edge types = 0: ops live on nodes)


class GraphCodec(ABC):
    """Architecture <-> (encoder graph, decoder targets) for one search space."""

    space: SearchSpace
    num_nodes: int
    num_node_types: int
    num_edge_types: int
    #: the possible (source, target) edge slots, in the order of the decoder's edge outputs
    slots: tuple[tuple[int, int], ...]
    node_features: int
    edge_features: int

    def graph(self, a: Architecture) -> Data:
        """Encoder input with the decoder targets attached as `node_target` [1, N],
        `edge_target` [1, S] (0/1) and `type_target` [1, S] (`IGNORE` where no edge)."""
        data = self.encoder_graph(a)
        nodes, edges, types = self.targets(a)
        data.node_target = torch.tensor([nodes], dtype=torch.long)
        data.edge_target = torch.tensor([edges], dtype=torch.float32)
        data.type_target = torch.tensor([types], dtype=torch.long)
        return data

    def batch(self, archs: Sequence[Architecture]) -> Batch:
        return Batch.from_data_list([self.graph(a) for a in archs])

    @abstractmethod
    def encoder_graph(self, a: Architecture) -> Data: ...

    @abstractmethod
    def targets(self, a: Architecture) -> tuple[list[int], list[int], list[int]]: ...

    @abstractmethod
    def decode(self, out: DecoderOutput) -> list[Decoded]:
        """One verdict per graph of the decoder's batch."""


def most_probable(out: DecoderOutput) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per graph: node-type argmax [N], edge probabilities [S], edge-type argmax [S] (zeros when
    the codec has no edge types)."""
    nodes = out.node_logits.argmax(-1).cpu()
    edges = torch.sigmoid(out.edge_logits).cpu()
    types = out.type_logits.argmax(-1).cpu() if out.type_logits.shape[-1] else torch.zeros_like(edges, dtype=torch.long)
    return zip(nodes, edges, types)
