"""The graph VAE of CR-LSO (Sec. III-A to III-C).

Encoder: message passing with residual node updates and edge features (Eq. 3-4),

    h_v' = R(h_v) + sum_{u -> v} M([h_v, h_u, e_uv]),

sum readout over nodes (Eq. 5), then two linear heads for the posterior mean and log-variance.
Decoder: an MLP that outputs the whole graph at once (after GraphVAE, Simonovsky & Komodakis 2018):
node-type logits, edge-existence logits over every possible edge slot, and edge-type logits.

A `GraphCodec` (`lightning_nas.spaces.codec`, offered by a space's `codec()`) ties the G-VAE to
one search space: the encoder's graphs, the decoder's targets and sizes, and decoding.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch_geometric.data import Batch
from torch_geometric.nn import MessagePassing, global_add_pool

from lightning_nas.spaces.base import Architecture
from lightning_nas.spaces.codec import IGNORE, Decoded, DecoderOutput, GraphCodec

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
