"""The Delta-NAS difference predictor F(a, a') -> predicted gain of moving from a to a'.

F reads only the difference encoding d = encode(a') - encode(a) (Sridhar & Chen, Sec. 4.1) and
is antisymmetric by construction: F(d) = (G(d) - G(-d)) / 2 with G an MLP, so F(a, a') =
-F(a', a) and F(a, a) = 0 hold exactly. With `mode="absolute"` the same MLP G reads encode(a)
and regresses the accuracy itself: the twin the paper's Table 1 compares against.

A difference predictor ranks a set of architectures through labelled anchors:
score(a) = mean over anchors r of (y_r + F(r, a)) (the anchors nearest to a by encoding).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
from torch_geometric.nn import MLP

from lightning_nas.data.difference import DifferenceBatch, difference_loader
from lightning_nas.encodings.difference import check_encoding, encode, encoding_size
from lightning_nas.predictors.base import Predictor
from lightning_nas.training import quiet_trainer
from lightning_nas.spaces.base import Architecture, SearchSpace, get_space

MODES = ("difference", "absolute")


class DifferencePredictor(Predictor):
    def __init__(
        self,
        space: str = "nb201",
        encoding: str = "adjacency",
        mode: str = "difference",
        hidden: int = 128,
        num_layers: int = 3,
        dropout: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        max_epochs_hint: int | None = None,
    ):
        """`space` and `encoding` fix the input size and must match the data (and the search)."""
        super().__init__()
        check_encoding(encoding)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if num_layers < 2:
            raise ValueError(f"num_layers must be >= 2 (input and output layer), got {num_layers}")
        self.save_hyperparameters()
        if "path" in encoding:
            get_space(space).require("path_encoding", by=f"Delta-NAS's difference predictor (encoding: {encoding})")
        self.in_features = encoding_size(get_space(space), encoding)
        self.net = MLP(in_channels=self.in_features, hidden_channels=hidden, out_channels=1,
                       num_layers=num_layers, dropout=dropout, norm=None)

    # --- the function ----------------------------------------------------------------------
    def forward(self, batch: DifferenceBatch) -> torch.Tensor:
        return self.predict_x(batch.x)

    def predict_x(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"inputs have {x.shape[-1]} features but this predictor was built for {self.in_features} "
                f"({self.hparams.space}, {self.hparams.encoding}); the data's space/encoding must match the model's"
            )
        if self.hparams.mode == "absolute":
            return self.net(x).squeeze(-1)
        return 0.5 * (self.net(x) - self.net(-x)).squeeze(-1)

    def validation_step(self, batch, batch_idx):
        super().validation_step(batch, batch_idx)
        self.log("val_loss", self.loss(self(batch), batch.y), batch_size=batch.num_graphs)

    def test_step(self, batch, batch_idx):
        super().test_step(batch, batch_idx)
        self.log("test_loss", self.loss(self(batch), batch.y), batch_size=batch.num_graphs)

    # --- on architectures ------------------------------------------------------------------
    @property
    def space(self) -> SearchSpace:
        return get_space(self.hparams.space)

    def encode(self, archs: Sequence[Architecture]) -> torch.Tensor:
        return torch.as_tensor(encode(self.space, archs, self.hparams.encoding))

    @torch.no_grad()
    def gains(self, base: Architecture, candidates: Sequence[Architecture]) -> torch.Tensor:
        """Predicted gain F(base, c) of each candidate (absolute mode: G(c) - G(base))."""
        self.eval()
        x = self.encode([base, *candidates])
        if self.hparams.mode == "absolute":
            values = self.predict_x(x)
            return values[1:] - values[0]
        return self.predict_x(x[1:] - x[0])

    @torch.no_grad()
    def rank_scores(
        self,
        archs: Sequence[Architecture],
        anchors: Sequence[Architecture] = (),
        anchor_y: Sequence[float] = (),
        num_anchors: int | None = None,
        chunk: int = 512,
    ) -> torch.Tensor:
        """Scores that rank `archs` (higher = better). Absolute mode: G(a). Difference mode: the
        mean over the `num_anchors` anchors nearest to a (all if None) of y_r + F(r, a), with the
        anchors' labels in the units the model was trained on."""
        self.eval()
        x = self.encode(archs)
        if self.hparams.mode == "absolute":
            return torch.cat([self.predict_x(x[i : i + chunk]) for i in range(0, len(x), chunk)])
        if len(anchors) == 0:
            raise ValueError("a difference predictor ranks architectures against labelled anchors: give anchors and anchor_y")
        ax, ay = self.encode(anchors), torch.as_tensor(np.asarray(anchor_y, dtype=np.float32))
        m = len(anchors) if num_anchors is None else min(num_anchors, len(anchors))
        out = []
        for i in range(0, len(x), chunk):
            xi = x[i : i + chunk]
            nearest = torch.cdist(xi, ax, p=1).topk(m, largest=False).indices  # [c, m]
            d = xi[:, None, :] - ax[nearest]  # [c, m, D]
            out.append((ay[nearest] + self.predict_x(d)).mean(1))
        return torch.cat(out)

    # --- fine-tuning on real differences ------------------------------------------------------
    def fit_pairs(self, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int = 64, seed: int = 0) -> None:
        """A short, quiet Lightning fit on given (encoding, label) items (labels already scaled)."""
        if epochs <= 0 or len(y) == 0:
            return
        trainer = quiet_trainer(epochs)
        with warnings.catch_warnings():
            # tiny in-search fits: Lightning's advice on workers, logging interval, validation does not apply
            warnings.filterwarnings("ignore", message=".*(does not have many workers|log_every_n_steps|smaller than the logging|no `val_dataloader`|LeafSpec).*")
            self.train()
            trainer.fit(self, train_dataloaders=difference_loader(x, y, batch_size, True, seed))
        self.eval()
