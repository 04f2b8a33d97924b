"""The graph VAE of CR-LSO (Sec. III-A to III-C).

Encoder: message passing with residual node updates and edge features (Eq. 3-4),

    h_v' = R(h_v) + sum_{u -> v} M([h_v, h_u, e_uv]),

sum readout over nodes (Eq. 5), then two linear heads for the posterior mean and log-variance.
Decoder: an MLP that outputs the whole graph at once (after GraphVAE, Simonovsky & Komodakis 2018):
node-type logits, edge-existence logits over every possible edge slot, and edge-type logits.

A `GraphCodec` ties the G-VAE to one search space: it builds the encoder's input graph and the
decoder's targets for an architecture, and turns decoder outputs back into an architecture with an
explicit verdict: `valid` (decoded as is), `repaired` (fixed to satisfy the space's rules) or
`invalid` (cannot be fixed; no architecture).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch_geometric.data import Batch, Data
from torch_geometric.nn import MessagePassing, global_add_pool

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


# --- codecs: one per kind of space ---------------------------------------------------------
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
    def decode_one(self, nodes: torch.Tensor, edges: torch.Tensor, types: torch.Tensor) -> Decoded:
        """`nodes` [N] node-type argmax, `edges` [S] edge probabilities, `types` [S] edge-type argmax."""

    def decode(self, out: DecoderOutput) -> list[Decoded]:
        nodes = out.node_logits.argmax(-1).cpu()
        edges = torch.sigmoid(out.edge_logits).cpu()
        types = out.type_logits.argmax(-1).cpu() if self.num_edge_types else torch.zeros_like(edges, dtype=torch.long)
        return [self.decode_one(n, e, t) for n, e, t in zip(nodes, edges, types)]


class CellOnEdgesCodec(GraphCodec):
    """NB201 / TNB101-micro: 4 nodes typed by their order, all 6 edges present, op = edge type
    (the paper's "node attributes = node orders, edge attributes = operator types")."""

    def __init__(self, space: SearchSpace):
        from lightning_nas.spaces.cell_on_edges import EDGES, NUM_NODES

        self.space = space
        self.num_nodes = NUM_NODES
        self.num_node_types = NUM_NODES
        self.num_edge_types = len(space.ops)
        self.slots = EDGES
        self.node_features = NUM_NODES
        self.edge_features = len(space.ops)

    def encoder_graph(self, a: Architecture) -> Data:
        return self.space.to_graph(a, ops_on="edges")

    def targets(self, a: Architecture) -> tuple[list[int], list[int], list[int]]:
        return list(range(self.num_nodes)), [1] * len(self.slots), list(a.genotype)

    def decode_one(self, nodes, edges, types) -> Decoded:
        arch = self.space.make(types.tolist())
        # the cell's wiring is fixed: a wrong node order or a missing edge is repaired by ignoring it
        fixed = bool((nodes == torch.arange(self.num_nodes)).all()) and bool((edges > 0.5).all())
        return Decoded(arch, VALID if fixed else REPAIRED)


class DartsCodec(GraphCodec):
    """DARTS / NB301: both cells as one 12-node graph (per cell c_{k-2}, c_{k-1}, 4 intermediate
    nodes; the concat output is fixed and left out). 14 possible edges per cell, op = edge type.
    A decoded intermediate node must have exactly two inputs: otherwise its two most probable
    input edges are taken (repaired)."""

    def __init__(self, space: SearchSpace):
        from lightning_nas.spaces import darts

        self.space = space
        self._darts = darts
        per_cell = darts.NUM_INPUTS + darts.NUM_NODES
        self._per_cell = per_cell
        self.num_nodes = per_cell * len(darts.CELLS)
        self.num_node_types = self.num_nodes
        self.num_edge_types = len(darts.OPS)
        self.slots = tuple(
            (src + c * per_cell, dst + c * per_cell)
            for c in range(len(darts.CELLS))
            for dst in range(darts.NUM_INPUTS, per_cell)
            for src in range(dst)
        )
        self._slot_index = {slot: i for i, slot in enumerate(self.slots)}
        self.node_features = self.num_nodes
        self.edge_features = len(darts.OPS)

    def _edges(self, a: Architecture) -> list[tuple[int, int, int]]:
        """(source, target, op) in graph node numbering."""
        out = []
        for c, cell in enumerate(self._darts._split(a.genotype)):
            for i, node in enumerate(cell):
                dst = c * self._per_cell + self._darts.NUM_INPUTS + i
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

    def decode_one(self, nodes, edges, types) -> Decoded:
        d = self._darts
        repaired = not bool((nodes == torch.arange(self.num_nodes)).all())
        genes: list[int] = []
        for c in range(len(d.CELLS)):
            for i in range(d.NUM_NODES):
                dst = c * self._per_cell + d.NUM_INPUTS + i
                slots = [self._slot_index[(c * self._per_cell + src, dst)] for src in range(d.NUM_INPUTS + i)]
                probs = edges[slots]
                repaired |= int((probs > 0.5).sum()) != d.EDGES_PER_NODE
                chosen = sorted(torch.topk(probs, d.EDGES_PER_NODE).indices.tolist())
                for src in chosen:
                    genes += [src, int(types[slots[src]])]
        arch = self.space.make(genes)
        if not self.space.is_valid(arch):
            return Decoded(None, INVALID)
        return Decoded(arch, REPAIRED if repaired else VALID)


class NB101Codec(GraphCodec):
    """NB101: the 7-vertex frame of the genotype, ops on nodes (types: input, the 3 ops, output),
    21 upper-triangular edge slots, no edge types (the paper's "no edge types for NB101").

    Decoding keeps vertex 0 as input and vertex 6 as output and takes the best op for vertices
    1..5 (a vertex decoded as input / output is repaired). A graph with no input->output path gets
    its most probable missing edges added, one with more than 9 edges (after pruning) loses its
    least probable ones; what is still invalid after that is rejected."""

    def __init__(self, space: SearchSpace):
        from lightning_nas.spaces import nb101_cells

        self.space = space
        self._cells = nb101_cells
        self.num_nodes = nb101_cells.NUM_VERTICES
        self.num_node_types = len(nb101_cells.OPS) + 2  # input, ops, output
        self.num_edge_types = 0
        self.slots = nb101_cells.EDGES
        self.node_features = self.num_node_types
        self.edge_features = 0
        self._output_type = self.num_node_types - 1

    def _node_types(self, a: Architecture) -> list[int]:
        ops = a.genotype[len(self.slots) :]
        return [0, *(1 + op for op in ops), self._output_type]

    def encoder_graph(self, a: Architecture) -> Data:
        bits = a.genotype[: len(self.slots)]
        edges = [slot for slot, bit in zip(self.slots, bits) if bit]
        edge_index = torch.tensor(edges, dtype=torch.long).reshape(-1, 2).t().contiguous()
        x = F.one_hot(torch.tensor(self._node_types(a)), self.num_node_types).float()
        return Data(x=x, edge_index=edge_index)

    def targets(self, a: Architecture) -> tuple[list[int], list[int], list[int]]:
        return self._node_types(a), list(a.genotype[: len(self.slots)]), [IGNORE] * len(self.slots)

    def decode(self, out: DecoderOutput) -> list[Decoded]:
        types = out.node_logits.argmax(-1).cpu()
        ops = out.node_logits[:, 1:-1, 1:-1].argmax(-1).cpu()  # best op of vertices 1..5
        probs = torch.sigmoid(out.edge_logits).cpu()
        return [self._decode_one(t, o, p) for t, o, p in zip(types, ops, probs)]

    def decode_one(self, nodes, edges, types) -> Decoded:
        raise NotImplementedError("NB101Codec decodes from the logits: use decode()")

    def _decode_one(self, types: torch.Tensor, ops: torch.Tensor, probs: torch.Tensor) -> Decoded:
        expected_ends = int(types[0]) == 0 and int(types[-1]) == self._output_type
        repaired = not expected_ends or bool(((types[1:-1] == 0) | (types[1:-1] == self._output_type)).any())
        bits = (probs > 0.5).long().tolist()
        op_genes = ops.tolist()
        for _ in range(len(self.slots)):
            arch = self.space.make(bits + op_genes)
            if self.space.is_valid(arch):
                return Decoded(arch, REPAIRED if repaired else VALID)
            repaired = True
            matrix = np.zeros((self.num_nodes, self.num_nodes), dtype=np.int64)
            for (src, dst), bit in zip(self.slots, bits):
                matrix[src, dst] = bit
            kept = self._cells.on_path_vertices(matrix)
            if kept is None:  # no path: add the most probable missing edge
                absent = [i for i, bit in enumerate(bits) if not bit]
                if not absent:
                    break
                bits[max(absent, key=lambda i: float(probs[i]))] = 1
            else:  # too many edges on the kept vertices: drop the least probable of them
                inside = [i for i, (src, dst) in enumerate(self.slots) if bits[i] and src in kept and dst in kept]
                bits[min(inside, key=lambda i: float(probs[i]))] = 0
        return Decoded(None, INVALID)


def codec_for(space: SearchSpace) -> GraphCodec:
    from lightning_nas.spaces.cell_on_edges import CellOnEdgesSpace

    if isinstance(space, CellOnEdgesSpace):
        return CellOnEdgesCodec(space)
    if space.name == "darts":
        return DartsCodec(space)
    if space.name == "nb101":
        return NB101Codec(space)
    raise ValueError(f"the G-VAE has no graph codec for the {space.name!r} space (known: nb201, tnb101_micro, nb101, darts)")


# --- encoder -------------------------------------------------------------------------------
class ResidualEdgeConv(MessagePassing):
    """CR-LSO Eq. 3-4: h_v' = R(h_v) + sum over incoming edges of M([h_v, h_u, e_uv])."""

    def __init__(self, in_channels: int, out_channels: int, edge_features: int):
        super().__init__(aggr="add", flow="source_to_target")
        self.residual = nn.Sequential(nn.Linear(in_channels, out_channels), nn.LeakyReLU(), nn.Linear(out_channels, out_channels))
        self.message_mlp = nn.Sequential(nn.Linear(2 * in_channels + edge_features, out_channels), nn.LeakyReLU())

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.propagate(edge_index, x=x, edge_attr=edge_attr)

    def message(self, x_i: torch.Tensor, x_j: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        return self.message_mlp(torch.cat([x_i, x_j, edge_attr], dim=-1))


class GraphEncoder(nn.Module):
    """Residual edge-feature GNN with a sum readout: graph batch -> [B, hidden]."""

    def __init__(self, node_features: int, edge_features: int, hidden: int = 512, num_layers: int = 3):
        super().__init__()
        self.edge_features = edge_features
        widths = [node_features] + [hidden] * num_layers
        self.convs = nn.ModuleList(ResidualEdgeConv(i, o, edge_features) for i, o in zip(widths[:-1], widths[1:]))

    def forward(self, batch: Batch) -> torch.Tensor:
        edge_attr = batch.edge_attr if self.edge_features else batch.x.new_zeros(batch.edge_index.shape[1], 0)
        h = batch.x
        for conv in self.convs:
            h = conv(h, batch.edge_index, edge_attr)
        return global_add_pool(h, batch.batch, size=batch.num_graphs)


# --- decoder -------------------------------------------------------------------------------
class GraphDecoder(nn.Module):
    """z -> node types, edge existence and edge types of the whole graph at once."""

    def __init__(self, codec: GraphCodec, latent_dim: int, hidden: int = 512, num_layers: int = 3):
        super().__init__()
        self.n, self.s = codec.num_nodes, len(codec.slots)
        self.node_types, self.edge_types = codec.num_node_types, codec.num_edge_types
        layers: list[nn.Module] = []
        width = latent_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(width, hidden), nn.LeakyReLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, self.n * self.node_types + self.s * (1 + self.edge_types))

    def forward(self, z: torch.Tensor) -> DecoderOutput:
        flat = self.out(self.body(z))
        nodes, edges, types = flat.split([self.n * self.node_types, self.s, self.s * self.edge_types], dim=-1)
        b = z.shape[0]
        return DecoderOutput(nodes.reshape(b, self.n, self.node_types), edges, types.reshape(b, self.s, self.edge_types))


def reconstruction_loss(out: DecoderOutput, batch: Batch) -> torch.Tensor:
    """Cross-entropy on node types, BCE on edge existence, cross-entropy on the types of real edges."""
    loss = F.cross_entropy(out.node_logits.flatten(0, 1), batch.node_target.flatten())
    loss = loss + F.binary_cross_entropy_with_logits(out.edge_logits, batch.edge_target)
    if out.type_logits.shape[-1]:
        loss = loss + F.cross_entropy(out.type_logits.flatten(0, 1), batch.type_target.flatten(), ignore_index=IGNORE)
    return loss


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|G) || N(0, I)) averaged over batch and latent dimensions (the scale the authors'
    beta is given in: 0.005 on NB201, 0.1 on NB101)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).mean()


class GVAE(nn.Module):
    def __init__(
        self,
        codec: GraphCodec,
        latent_dim: int = 64,
        hidden: int = 512,
        encoder_layers: int = 3,
        decoder_hidden: int = 512,
        decoder_layers: int = 3,
    ):
        super().__init__()
        self.codec = codec
        self.latent_dim = latent_dim
        self.encoder = GraphEncoder(codec.node_features, codec.edge_features, hidden, encoder_layers)
        self.mu_head = nn.Linear(hidden, latent_dim)
        self.logvar_head = nn.Linear(hidden, latent_dim)
        self.decoder = GraphDecoder(codec, latent_dim, decoder_hidden, decoder_layers)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(batch)
        return self.mu_head(h), self.logvar_head(h)

    def sample_posterior(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    @torch.no_grad()
    def embed(self, archs: Sequence[Architecture], batch_size: int = 2048) -> torch.Tensor:
        """Posterior means of `archs`: [len(archs), latent_dim]."""
        device = self.mu_head.weight.device
        chunks = [
            self.encode(self.codec.batch(archs[i : i + batch_size]).to(device))[0]
            for i in range(0, len(archs), batch_size)
        ]
        return torch.cat(chunks) if chunks else torch.zeros(0, self.latent_dim, device=device)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> list[Decoded]:
        return self.codec.decode(self.decoder(z))
