"""Lightning callbacks the fit configs use."""
from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint


class ModelCheckpoint(LightningModelCheckpoint):
    """Lightning's ModelCheckpoint, except that with `save_last` the last checkpoint follows every
    epoch. Since Lightning 2.6 a monitored checkpoint writes `last.ckpt` only when a top-k checkpoint
    is written at the same step, so after an epoch that did not improve, `fit --ckpt_path last`
    would resume from an older epoch. Here `last.ckpt` is written again at the end of every training
    epoch (after the epoch's validation), through the Trainer's public `save_checkpoint`."""

    _newest_step: int | None = None  # the step of the last `last.ckpt` written here

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.save_last is True and not trainer.fast_dev_run and not trainer.sanity_checking:
            self._save_newest(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last is not True:
            super().on_train_end(trainer, pl_module)
        elif trainer.global_step != self._newest_step and not trainer.fast_dev_run:
            self._save_newest(trainer)  # stopped inside an epoch (max_steps, max_time)

    def _save_newest(self, trainer: pl.Trainer) -> None:
        metrics = {**trainer.callback_metrics, "epoch": torch.tensor(trainer.current_epoch),
                   "step": torch.tensor(trainer.global_step)}
        self.last_model_path = self.format_checkpoint_name(metrics, self.CHECKPOINT_NAME_LAST)  # part of the state
        trainer.save_checkpoint(self.last_model_path, self.save_weights_only)
        self._newest_step = trainer.global_step
