"""GCN feature extractor of an architecture graph (the NAC's f(X, A) in CTNAS, Eq. 4).

Node types arrive one-hot (`to_graph`), so a bias-free linear layer is exactly an op-embedding
table. The paper writes two GCN layers; the authors' code uses four layers of width 128, each
with a residual connection, and averages the node features into one vector per graph.
"""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import GCNConv, global_mean_pool

from lightning_nas.errors import ConfigError


class GCNEncoder(nn.Module):
    """op embedding -> `num_layers` x (GCNConv, + residual, ReLU) -> mean pooling.

    Messages follow the cell's edge direction (an op node sees its inputs); `bidirectional` adds
    the reverse edges. `normalize=True` is GCN's self loops + symmetric degree normalisation;
    `False` sums the neighbours unnormalised, as the authors' code does (they multiply by A + I;
    here the residual connection carries the node's own features)."""

    def __init__(
        self,
        in_channels: int,
        hidden: int = 128,
        num_layers: int = 4,
        residual: bool = True,
        normalize: bool = False,
        bidirectional: bool = False,
    ):
        super().__init__()
        if in_channels < 1 or hidden < 1:
            raise ConfigError(f"in_channels and hidden must be positive, got {in_channels} and {hidden}")
        if num_layers < 1:
            raise ConfigError(f"a GCN needs at least one layer, got num_layers={num_layers}")
        self.embedding = nn.Linear(in_channels, hidden, bias=False)
        self.convs = nn.ModuleList(GCNConv(hidden, hidden, normalize=normalize) for _ in range(num_layers))
        self.bidirectional = bidirectional
        self.residual = residual
        self.out_channels = hidden

    def node_features(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = self.embedding(x)
        if self.bidirectional:
            edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
        for conv in self.convs:
            out = conv(h, edge_index)
            h = torch.relu(out + h if self.residual else out)
        return h

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        """[num_nodes, in_channels] node types -> [num_graphs, hidden] graph features."""
        if batch is None:
            batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
        return global_mean_pool(self.node_features(x, edge_index), batch)
