"""The Delta-NAS difference predictor F(a, a') -> predicted gain of moving from a to a'.

F reads the difference encoding d = encode(a') - encode(a) (Sridhar & Chen, Sec. 4.1) and
is antisymmetric by construction: F(d) = (G(d) - G(-d)) / 2 with G an MLP, so F(a, a') =
-F(a', a) and F(a, a) = 0 hold exactly. With `context` G also reads what the pair shares,
s = encode(a) + encode(a'): F = (G(s, d) - G(s, -d)) / 2. With `mode="absolute"` the same MLP G
reads encode(a) and regresses the accuracy itself: the twin the paper's Table 1 compares against.

A difference predictor ranks a set of architectures through labelled anchors (`rank_scores`):
score(a) = mean over anchors r of (y_r + F(r, a)), optionally tied to a's one-edit neighbours by
a least-squares fit of the predicted differences.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
from torch_geometric.nn import MLP

from lightning_nas.data.difference import DifferenceBatch, difference_loader
from lightning_nas.encodings.difference import check_encoding, encode, encoding_size, neighbour_pairs, pair_input
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
        context: bool = False,
    ):
        """`space`, `encoding` and `context` fix the input size and must match the data (and the search)."""
        super().__init__()
        check_encoding(encoding)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if num_layers < 2:
            raise ValueError(f"num_layers must be >= 2 (input and output layer), got {num_layers}")
        self.save_hyperparameters()
        if "path" in encoding:
            get_space(space).require("path_encoding", by=f"Delta-NAS's difference predictor (encoding: {encoding})")
        if context and mode == "absolute":
            raise ValueError("context is a difference-mode input (what a pair shares); an absolute model reads one architecture")
        self.in_features = encoding_size(get_space(space), encoding) * (2 if context else 1)
        self.net = MLP(in_channels=self.in_features, hidden_channels=hidden, out_channels=1,
                       num_layers=num_layers, dropout=dropout, norm=None)

    # --- the function ----------------------------------------------------------------------
    def forward(self, batch: DifferenceBatch) -> torch.Tensor:
        return self.predict_x(batch.x)

    def predict_x(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"inputs have {x.shape[-1]} features but this predictor was built for {self.in_features} "
                f"({self.hparams.space}, {self.hparams.encoding}, context {self.hparams.context}); the data's "
                f"space/encoding/context must match the model's"
            )
        if self.hparams.mode == "absolute":
            return self.net(x).squeeze(-1)
        if self.hparams.context:  # [shared, difference]: only the difference changes sign
            half = x.shape[-1] // 2
            flipped = torch.cat([x[..., :half], -x[..., half:]], -1)
        else:
            flipped = -x
        return 0.5 * (self.net(x) - self.net(flipped)).squeeze(-1)

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
    def pair_gains(self, bases: torch.Tensor, others: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """F(bases[i], others[i]) from encodings [..., D] (absolute mode: G(other) - G(base))."""
        self.eval()
        shape, bases, others = bases.shape[:-1], bases.reshape(-1, bases.shape[-1]), others.reshape(-1, others.shape[-1])
        out = []
        for k in range(0, len(bases), chunk):
            a, b = bases[k : k + chunk], others[k : k + chunk]
            if self.hparams.mode == "absolute":
                out.append(self.predict_x(b) - self.predict_x(a))
            else:
                out.append(self.predict_x(pair_input(a, b, self.hparams.context)))
        return torch.cat(out).reshape(shape) if out else torch.zeros(shape)

    def gains(self, base: Architecture, candidates: Sequence[Architecture]) -> torch.Tensor:
        """Predicted gain F(base, c) of each candidate."""
        x = self.encode([base, *candidates])
        return self.pair_gains(x[:1].expand_as(x[1:]), x[1:])

    @torch.no_grad()
    def rank_scores(
        self,
        archs: Sequence[Architecture],
        anchors: Sequence[Architecture] = (),
        anchor_y: Sequence[float] = (),
        num_anchors: int | None = None,
        neighbour_weight: float = 0.0,
        chunk: int = 4096,
    ) -> torch.Tensor:
        """Scores that rank `archs` (higher = better), anchors' labels in the units the model was
        trained on. Absolute mode: G(a). Difference mode: the least-squares scores s of the predicted
        differences on two kinds of edge: a to each of its `num_anchors` nearest anchors r (all if
        None), s_a - y_r = F(r, a), total weight 1 per architecture; and, with `neighbour_weight` > 0,
        every pair one edit apart among `archs` and anchors, s_b - s_a = F(a, b), that weight each
        (anchors held at their labels). Without neighbour edges s_a = mean over anchors of y_r + F(r, a)."""
        self.eval()
        x = self.encode(archs)
        if self.hparams.mode == "absolute":
            return torch.cat([self.predict_x(x[i : i + chunk]) for i in range(0, len(x), chunk)])
        if len(anchors) == 0:
            raise ValueError("a difference predictor ranks architectures against labelled anchors: give anchors and anchor_y")
        ax, ay = self.encode(anchors), torch.as_tensor(np.asarray(anchor_y, dtype=np.float64))
        m = len(anchors) if num_anchors is None else min(num_anchors, len(anchors))
        if m < 1:
            raise ValueError(f"num_anchors must be >= 1 (or None: every anchor), got {num_anchors}")
        rows = max(1, chunk // m)
        mean = []
        for i in range(0, len(x), rows):
            xi = x[i : i + rows]
            nearest = torch.cdist(xi, ax, p=1).topk(m, largest=False).indices  # [c, m]
            f = self.pair_gains(ax[nearest], xi[:, None, :].expand(-1, m, -1))
            mean.append((ay[nearest] + f.double()).mean(1))
        mean = torch.cat(mean)
        if neighbour_weight <= 0:
            return mean
        return self._neighbour_least_squares(archs, anchors, x, ax, ay, mean, neighbour_weight, chunk)

    def _neighbour_least_squares(self, archs, anchors, x, ax, ay, mean, weight: float, chunk: int) -> torch.Tensor:
        """The scores of `rank_scores` with the 1-edit edges: a sparse symmetric positive definite system
        (every architecture has anchor weight 1 on its diagonal, so it is diagonally dominant)."""
        n = len(archs)
        pairs = neighbour_pairs([*archs, *anchors])
        both = np.concatenate([x.numpy(), ax.numpy()])
        value = np.concatenate([np.zeros(n), ay.numpy()])  # known scores of the anchors
        f = self.pair_gains(torch.as_tensor(both[pairs[:, 0]]), torch.as_tensor(both[pairs[:, 1]]), chunk).double().numpy()
        i, j = pairs[:, 0], pairs[:, 1]
        free_i, free_j = i < n, j < n
        diagonal = np.ones(n)
        rhs = mean.numpy().copy()
        # s_j - s_i = f on each edge: d/ds_i of w (s_j - s_i - f)^2 and d/ds_j give the normal equations
        np.add.at(diagonal, i[free_i], weight)
        np.add.at(diagonal, j[free_j], weight)
        np.add.at(rhs, i[free_i], weight * np.where(free_j, 0.0, value[j])[free_i] - weight * f[free_i])
        np.add.at(rhs, j[free_j], weight * np.where(free_i, 0.0, value[i])[free_j] + weight * f[free_j])
        inner = free_i & free_j
        off = scipy.sparse.coo_matrix((np.full(inner.sum() * 2, -weight), (np.r_[i[inner], j[inner]], np.r_[j[inner], i[inner]])),
                                      shape=(n, n))
        system = (scipy.sparse.diags(diagonal) + off).tocsr()
        # conjugate gradients: the 1-edit graph of a whole space makes a direct solve fill in
        solution, info = scipy.sparse.linalg.cg(system, rhs, x0=mean.numpy(), rtol=1e-10, maxiter=10_000)
        if info != 0:
            raise RuntimeError(f"the least-squares scores did not converge (scipy cg info {info})")
        return torch.as_tensor(solution)

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
