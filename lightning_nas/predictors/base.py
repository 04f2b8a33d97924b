"""The base of every architecture-performance predictor."""
from __future__ import annotations

from pathlib import Path

import pickle
from typing import Any

import lightning as L
import torch
from torchmetrics.regression import KendallRankCorrCoef

from lightning_nas.errors import ConfigError, MissingFileError


class TrainingDiverged(ConfigError):
    """The training loss became NaN or infinite (the learning rate or the data is at fault)."""


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

    def on_before_backward(self, loss: torch.Tensor) -> None:
        self.stop_if_diverged(loss, "training loss")

    def stop_if_diverged(self, values: torch.Tensor, what: str) -> None:
        """Raise at the first NaN / infinite loss or prediction: before the optimizer step or the
        epoch's checkpoint, so checkpoints already written stay the last good ones."""
        finite = torch.isfinite(values.detach())
        if not finite.all():
            raise TrainingDiverged(
                f"{type(self).__name__}: the {what} is {float(values.detach()[~finite].flatten()[0])} at epoch "
                f"{self.current_epoch}, step {self.global_step}: lower the learning rate (model.init_args.lr is "
                f"{self.hparams.get('lr')}) or check the data for NaN, and rerun; checkpoints already written are kept"
            )

    def training_step(self, batch, batch_idx):
        loss = self.loss(self(batch), batch.y)
        self.log("train_loss", loss, batch_size=batch.num_graphs, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        scores = self(batch)
        self.stop_if_diverged(scores, "validation prediction")
        self.val_tau.update(scores, batch.y)
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


def check_checkpoint_matches(ckpt_path: str, class_path: str, init_args: dict) -> None:
    """Raise when a predictor checkpoint was written for another model class or search space.

    LightningCLI rebuilds `model:` from a checkpoint's stored hyper-parameters, so without this a
    search would quietly run another method's predictor, or one fitted on another space."""
    if not Path(ckpt_path).is_file():
        return  # the search reports the missing file
    stored = read_checkpoint(ckpt_path).get("hyper_parameters") or {}
    stored_class = stored.get("_class_path")
    if stored_class and stored_class != class_path:
        raise ConfigError(
            f"predictor checkpoint {ckpt_path} holds a {stored_class.rsplit('.', 1)[-1]} ({stored_class}), but `model:` "
            f"is {class_path}: pass the checkpoint written by the `fit` of this method, or change `model:`"
        )
    if "space" in stored and "space" in init_args and stored["space"] != init_args["space"]:
        raise ConfigError(
            f"predictor checkpoint {ckpt_path} was fitted on the {stored['space']} space, but `model:` is for "
            f"{init_args['space']}: pass a checkpoint fitted on {init_args['space']}"
        )


def read_checkpoint(ckpt_path: str | Path) -> dict[str, Any]:
    """A predictor checkpoint's contents (on the CPU, tensors and plain data only)."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise MissingFileError(f"predictor checkpoint {path} does not exist; train one with `lightning-nas fit` first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError) as e:
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"predictor checkpoint {path} cannot be read ({problem}): "
                          "pass a checkpoint written by `lightning-nas fit`") from None
