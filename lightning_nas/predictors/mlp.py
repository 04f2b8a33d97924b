"""A path-encoding MLP regressor trained with MSE (the BANANAS-style baseline predictor)."""
from __future__ import annotations

import torch
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.predictors.base import Predictor


class PathMLPRegressor(Predictor):
    """MLP on `batch.path` ([B, P] binary path encoding), MSE on the z-scored target."""

    def __init__(
        self,
        path_length: int = 84,
        hidden: int = 128,
        num_layers: int = 3,
        dropout: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        max_epochs_hint: int | None = None,
    ):
        """`path_length`: length of the space's path encoding (nb201: 84, tnb101_micro: 39)."""
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {num_layers}")
        self.save_hyperparameters()
        layers: list[nn.Module] = []
        width = path_length
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.mlp = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, batch) -> torch.Tensor:
        if batch.path.shape[1] != self.hparams.path_length:
            raise ConfigError(
                f"path encodings have {batch.path.shape[1]} slots; set model path_length to that value"
            )
        return self.mlp(batch.path).squeeze(-1)
