"""The base of every architecture-performance predictor."""
from __future__ import annotations

import lightning as L
import torch
from torchmetrics.regression import KendallRankCorrCoef


class Predictor(L.LightningModule):
    """Subclasses implement `forward(batch) -> Tensor[B]` (higher = predicted better) and may
    override `loss(scores, y)` (default: MSE). Kendall tau is measured over the whole validation / test epoch.
    Subclasses save hyper-parameters `lr`, `weight_decay` and optionally `max_epochs_hint` (cosine
    decay over that many epochs) and `betas`; `parameter_groups` says what the optimizer trains."""

    def __init__(self):
        super().__init__()
        self.val_tau = KendallRankCorrCoef()
        self.test_tau = KendallRankCorrCoef()

    def loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Regression on the z-scored target; ranking and comparison predictors override it."""
        return torch.nn.functional.mse_loss(scores, y)

    def training_step(self, batch, batch_idx):
        loss = self.loss(self(batch), batch.y)
        self.log("train_loss", loss, batch_size=batch.num_graphs, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.val_tau.update(self(batch), batch.y)
        self.log("val_tau", self.val_tau, batch_size=batch.num_graphs, prog_bar=True)

    def test_step(self, batch, batch_idx):
        self.test_tau.update(self(batch), batch.y)
        self.log("test_tau", self.test_tau, batch_size=batch.num_graphs)

    def predict_step(self, batch, batch_idx):
        return self(batch)

    def parameter_groups(self):
        return self.parameters()

    def configure_optimizers(self):
        hp = self.hparams
        betas = tuple(hp.get("betas", (0.9, 0.999)))
        optimizer = torch.optim.Adam(self.parameter_groups(), lr=hp.lr, betas=betas, weight_decay=hp.weight_decay)
        if not hp.get("max_epochs_hint"):
            return optimizer
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=hp.max_epochs_hint)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
