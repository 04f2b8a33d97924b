"""The base of every architecture-performance predictor."""
from __future__ import annotations

import lightning as L
import torch
from torchmetrics.regression import KendallRankCorrCoef


class Predictor(L.LightningModule):
    """Subclasses implement `forward(batch) -> Tensor[B]` (higher = predicted better) and
    `loss(scores, y)`. Kendall tau is measured over the whole validation / test epoch."""

    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.0, max_epochs_hint: int | None = None):
        super().__init__()
        self.val_tau = KendallRankCorrCoef()
        self.test_tau = KendallRankCorrCoef()

    def loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

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

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if not self.hparams.get("max_epochs_hint"):
            return optimizer
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.hparams.max_epochs_hint)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
