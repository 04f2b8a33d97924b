"""DCL-ENAS networks: the soft encoder (GIN node attention + transformer path attention) and the score head.

The soft encoder reads the one featurisation of `encodings.graph.to_batch`: the op graph (`x`,
`edge_index`, `batch`) and the path encoding (`path`, [B, P] binary). Node attention = GIN layers
followed by attention pooling (`torch_geometric.nn.AttentionalAggregation`); path attention = a
`torch.nn.TransformerEncoder` over one token per path present in the cell plus a summary token.
The two views are concatenated and projected into one embedding (`embed`), which stage 1 trains
against the hard encoder's clusters and stage 2 feeds to the score head (concat -> project -> full -> score).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import AttentionalAggregation, GINConv

from lightning_nas.errors import ConfigError

READOUTS = ("attention", "sum")


class NodeAttention(nn.Module):
    """GIN message passing over the op graph, pooled by a learned per-node attention gate.

    `bidirectional`: messages also flow against the edges, so each op node sees what follows it as
    well as what feeds it (the path view keeps the direction).
    LayerNorm rather than GIN's BatchNorm: an embedding must not depend on the rest of its batch
    (stage 1 encodes the K medoids as a batch of their own; a surrogate scores any number).
    `readout`: "attention" (the paper's: a softmax gate, so a weighted mean of the nodes) or "sum" (our
    extension: GIN's sum readout, Xu et al. 2019, each node weighted by its gate times the node count;
    benchmarks/results/settings/dcl_enas_readout.md)."""

    def __init__(self, node_features: int, hidden: int, layers: int, dropout: float, bidirectional: bool = False,
                 readout: str = "attention"):
        super().__init__()
        if readout not in READOUTS:
            raise ConfigError(f"readout must be one of {', '.join(READOUTS)}, got {readout!r}")
        self.bidirectional, self.readout = bidirectional, readout
        dims = [node_features] + [hidden] * layers
        self.convs = nn.ModuleList(GINConv(_mlp(d_in, hidden), train_eps=True) for d_in in dims[:-1])
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.pool = AttentionalAggregation(gate_nn=nn.Linear(hidden, 1))

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        if self.bidirectional:
            edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)  # a DAG: no edge is doubled
        for conv, norm in zip(self.convs, self.norms):
            x = self.dropout(torch.relu(norm(conv(x, edge_index))))
        pooled = self.pool(x, batch, dim_size=num_graphs)
        if self.readout == "sum":
            pooled = pooled * torch.bincount(batch, minlength=num_graphs).unsqueeze(1).to(pooled.dtype)
        return pooled


class PathAttention(nn.Module):
    """Self-attention over the paths present in each cell (tokens = learned Path-id embeddings)."""

    def __init__(self, path_length: int, hidden: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.path_length = path_length
        self.tokens = nn.Embedding(path_length + 1, hidden)  # last row: the summary token
        layer = nn.TransformerEncoderLayer(
            hidden, heads, dim_feedforward=2 * hidden, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, path: Tensor) -> Tensor:
        if path.shape[1] != self.path_length:
            raise ConfigError(
                f"path encodings have {path.shape[1]} slots but the encoder was built for {self.path_length}; "
                "set path_length to the search space's path-encoding length"
            )
        present = path > 0.5
        count = present.sum(1)
        width = max(int(count.max()), 1)
        # present Path-ids first (stable order), then padding; a summary token leads every sequence
        order = torch.argsort((~present).to(torch.int8), dim=1, stable=True)[:, :width]
        padding = torch.arange(width, device=path.device).unsqueeze(0) >= count.unsqueeze(1)
        summary = torch.full_like(order[:, :1], self.path_length)
        ids = torch.cat([summary, order], dim=1)
        mask = torch.cat([torch.zeros_like(padding[:, :1]), padding], dim=1)
        out = self.encoder(self.tokens(ids), src_key_padding_mask=mask)
        return out[:, 0]


class SoftEncoder(nn.Module):
    """Both attention views, concatenated and projected into one architecture embedding."""

    def __init__(
        self,
        node_features: int,
        path_length: int,
        hidden: int = 64,
        embed_dim: int = 64,
        gin_layers: int = 3,
        transformer_layers: int = 2,
        heads: int = 4,
        dropout: float = 0.0,
        bidirectional: bool = False,
        readout: str = "attention",
    ):
        super().__init__()
        self.node_attention = NodeAttention(node_features, hidden, gin_layers, dropout, bidirectional, readout)
        self.path_attention = PathAttention(path_length, hidden, transformer_layers, heads, dropout)
        self.project = nn.Linear(2 * hidden, embed_dim)

    def concat(self, batch) -> Tensor:
        nodes = self.node_attention(batch.x, batch.edge_index, batch.batch, batch.num_graphs)
        paths = self.path_attention(batch.path)
        return torch.cat([nodes, paths], dim=1)

    def forward(self, batch) -> Tensor:
        """[B, embed_dim] un-normalised embedding (stage 1 normalises it, stage 2 scores it)."""
        return self.project(self.concat(batch))


class ScoreHead(nn.Module):
    """The part of the predictor after `project`: full -> score."""

    def __init__(self, embed_dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.full = nn.Sequential(nn.ReLU(), nn.Linear(embed_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.score = nn.Linear(hidden, 1)

    def forward(self, embedding: Tensor) -> Tensor:
        return self.score(self.full(embedding)).squeeze(-1)


def _mlp(d_in: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
