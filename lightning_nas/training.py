"""Leaf helpers for the short, silent trainings that happen inside a search or a measurement."""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import lightning as L
import torch


def quiet_trainer(max_epochs: int, **kwargs: Any) -> L.Trainer:
    """A CPU trainer without logger, checkpoints, progress bar or validation."""
    settings = dict(max_epochs=max_epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                    num_sanity_val_steps=0)
    return L.Trainer(**{**settings, **kwargs})


@contextmanager
def quiet_lightning():
    """Fine-tuning inside a search and live training of each candidate happen often: Lightning's per-fit
    info lines (banner, seed, loader hints) would drown the search's output."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "validation_step but no val_dataloader": intended here
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `n` (None: left as they are) and restored afterwards."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
