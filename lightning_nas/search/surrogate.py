"""`PredictorSurrogate`: a trained predictor as strategies see it (score, update)."""
from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import numpy as np
import torch

from lightning_nas.data.datamodule import labelled_loader
from lightning_nas.encodings.graph import to_batch
from lightning_nas.training import quiet_lightning, quiet_trainer
from lightning_nas.spaces.base import Architecture, SearchSpace


class PredictorSurrogate:
    """Scores architectures with a predictor and fine-tunes it on every label the search gathers.

    `update` keeps all labels seen so far and fine-tunes on them (z-scored together) for
    `finetune_epochs` with a quiet Lightning Trainer; 0 epochs keeps the predictor frozen.
    `canonical_inputs`: featurise as the predictor's fit did (`ArchitectureDataModule`)."""

    def __init__(
        self,
        model: L.LightningModule,
        space: SearchSpace,
        finetune_epochs: int = 20,
        batch_size: int = 64,
        seed: int = 0,
        score_chunk: int = 2048,
        canonical_inputs: bool = False,
    ):
        self.model, self.space, self.canonical_inputs = model, space, canonical_inputs
        self.finetune_epochs, self.batch_size, self.seed = finetune_epochs, batch_size, seed
        self.score_chunk = score_chunk
        self.labelled: dict[tuple[int, ...], float] = {}
        self.updates = 0

    @torch.no_grad()
    def score(self, archs: Sequence[Architecture]) -> torch.Tensor:
        self.model.eval()
        out = [
            self.model(to_batch(self.space, archs[i : i + self.score_chunk], canonical=self.canonical_inputs)).float()
            for i in range(0, len(archs), self.score_chunk)
        ]
        return torch.cat(out) if out else torch.empty(0)

    def update(self, archs: Sequence[Architecture], y: Sequence[float]) -> None:
        for a, t in zip(archs, y):
            self.labelled[a.genotype] = float(t)
        self.updates += 1
        if self.finetune_epochs <= 0 or len(self.labelled) < 2:
            return
        genotypes = list(self.labelled)
        loader = labelled_loader(
            self.space,
            [self.space.make(g) for g in genotypes],
            [self.labelled[g] for g in genotypes],
            batch_size=self.batch_size,
            seed=self.seed + self.updates,
            canonical=self.canonical_inputs,
        )
        trainer = quiet_trainer(self.finetune_epochs)
        self.model.train()
        with quiet_lightning():
            trainer.fit(self.model, train_dataloaders=loader)

    # --- resumption ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "labelled_genotypes": [list(g) for g in self.labelled],
            "labelled_y": list(self.labelled.values()),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.labelled = {tuple(g): float(t) for g, t in zip(state["labelled_genotypes"], state["labelled_y"])}
        self.updates = int(state["updates"])


def as_numpy(scores: torch.Tensor) -> np.ndarray:
    return scores.detach().cpu().numpy().astype(np.float64)
