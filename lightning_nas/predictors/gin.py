"""The baseline predictor: GIN over the ops-on-nodes graph, sum readout, MSE regression."""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import GIN, global_add_pool

from lightning_nas.predictors.base import Predictor


class GINRegressor(Predictor):
    def __init__(
        self,
        in_channels: int = 7,
        hidden: int = 64,
        num_layers: int = 3,
        dropout: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        max_epochs_hint: int | None = None,
    ):
        """`in_channels`: node-type one-hot size of the space (nb201: 7, tnb101_micro: 6, nb101: 5)."""
        super().__init__()
        self.save_hyperparameters()
        self.gnn = GIN(in_channels, hidden, num_layers, dropout=dropout, jk="cat")
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, batch) -> torch.Tensor:
        h = self.gnn(batch.x, batch.edge_index)
        return self.head(global_add_pool(h, batch.batch)).squeeze(-1)
