"""CTNAS's Neural Architecture Comparator: NAC(a, a') = P[a is better than a'] (Eq. 1, 3, 4).

Each architecture goes through the GCN encoder; the two feature vectors are concatenated and an
FC layer + sigmoid gives the probability. Training is binary cross-entropy over every pair of
labelled architectures in a batch, in both orders (ties are skipped), plus optional
pseudo-labelled pairs from CTNAS's data exploration.

A per-architecture score (what `forward` returns, for Kendall tau and the `PredictorSurrogate`)
is derived from comparisons: the mean probability of beating a fixed reference set of
`reference_size` architectures drawn uniformly from the space with `reference_seed`, i.e. the
estimated quantile of the architecture in its space. The reference set does not depend on the
batch, so scores from different batches are comparable.
"""
from __future__ import annotations

from functools import cached_property
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torchmetrics.classification import BinaryAccuracy

from lightning_nas.errors import ConfigError
from lightning_nas.nn.gcn import GCNEncoder
from lightning_nas.predictors.base import Predictor
from lightning_nas.spaces.base import Architecture, get_space


class NeuralArchitectureComparator(Predictor):
    def __init__(
        self,
        space: str = "nb201",
        hidden: int = 128,
        num_layers: int = 4,
        residual: bool = True,
        normalize: bool = False,
        bidirectional: bool = False,
        lr: float = 2e-4,
        weight_decay: float = 5e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        pseudo_ratio: float = 1.0,
        reference_size: int = 64,
        reference_seed: int = 0,
        max_epochs_hint: int | None = None,
    ):
        """`space`: registered space name (its graphs define the input size). `hidden`,
        `num_layers`, `residual`, `normalize`, `bidirectional`: the GCN (`GCNEncoder`; the defaults
        are the authors' code: 4 residual layers of 128, plain sums along the edge direction).
        `lr`, `weight_decay`, `betas`: Adam, as the authors. `pseudo_ratio`: weight of the pseudo-labelled pair loss
        relative to the labelled pair loss. `reference_size` / `reference_seed`: the reference set
        behind the per-architecture score."""
        super().__init__()
        self.save_hyperparameters()
        if pseudo_ratio < 0:
            raise ConfigError(f"pseudo_ratio must be >= 0, got {pseudo_ratio}")
        if reference_size < 1:
            raise ConfigError(f"reference_size must be >= 1, got {reference_size}")
        self.space = get_space(space)
        rng = np.random.default_rng(reference_seed)
        self.reference = [self.space.sample(rng) for _ in range(reference_size)]
        in_channels = self.space.to_graph(self.reference[0]).num_node_features
        self.encoder = GCNEncoder(in_channels, hidden, num_layers, residual, normalize, bidirectional)
        self.fc = nn.Linear(2 * hidden, 1)
        self.val_pair_acc = BinaryAccuracy()
        self.test_pair_acc = BinaryAccuracy()
        self.pseudo_first: list[Architecture] = []
        self.pseudo_second: list[Architecture] = []
        self.pseudo_labels = torch.empty(0)
        self._graph_cache: dict[tuple[int, ...], object] = {}
        self._feature_cache: dict[tuple[int, ...], torch.Tensor] = {}

    # --- comparisons ---------------------------------------------------------------------
    def features(self, batch) -> torch.Tensor:
        return self.encoder(batch.x, batch.edge_index, batch.batch)

    def pair_logits(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        """Logit of P[a_i better than b_i] for aligned rows: FC over the concatenation (Eq. 3)."""
        return self.fc(torch.cat([za, zb], dim=-1)).squeeze(-1)

    def logit_matrix(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        """[A, B] logits of every a against every b. The FC over [z_a; z_b] splits into
        W_a z_a + W_b z_b + c, so all pairs cost one matrix product each side."""
        w_a, w_b = self.fc.weight[0].split(za.size(-1))
        return (za @ w_a)[:, None] + (zb @ w_b)[None, :] + self.fc.bias

    # Inference on architectures (no gradients). Features are cached per genotype until the
    # weights change: the cache is emptied after every training step and when weights are loaded.
    @torch.no_grad()
    def compare(self, a: Sequence[Architecture], b: Sequence[Architecture]) -> torch.Tensor:
        """P[a_i better than b_i] for aligned lists."""
        if len(a) != len(b):
            raise ValueError(f"compare needs two lists of equal length, got {len(a)} and {len(b)}")
        return torch.sigmoid(self.pair_logits(self.frozen_features(a), self.frozen_features(b)))

    @torch.no_grad()
    def compare_all(self, a: Sequence[Architecture], b: Sequence[Architecture]) -> torch.Tensor:
        """[len(a), len(b)] matrix of P[a_i better than b_j]."""
        return torch.sigmoid(self.logit_matrix(self.frozen_features(a), self.frozen_features(b)))

    @torch.no_grad()
    def frozen_features(self, archs: Sequence[Architecture]) -> torch.Tensor:
        missing = list({a.genotype: a for a in archs if a.genotype not in self._feature_cache}.values())
        if missing:
            was_training = self.training
            self.eval()
            for a, z in zip(missing, self._features_of(missing)):
                self._feature_cache[a.genotype] = z
            self.train(was_training)
        return torch.stack([self._feature_cache[a.genotype] for a in archs])

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self._feature_cache.clear()

    def load_state_dict(self, *args, **kwargs):
        self._feature_cache.clear()
        return super().load_state_dict(*args, **kwargs)

    def _features_of(self, archs: Sequence[Architecture]) -> torch.Tensor:
        return self.features(self._batch(archs))

    def _batch(self, archs: Sequence[Architecture]) -> SimpleNamespace:
        """x / edge_index / batch of the architectures' graphs, concatenated directly: all the
        encoder reads, without the cost of a general PyG collate on every controller step."""
        graphs = []
        for a in archs:
            if a.genotype not in self._graph_cache:
                g = self.space.to_graph(a)
                self._graph_cache[a.genotype] = (g.x, g.edge_index)
            graphs.append(self._graph_cache[a.genotype])
        sizes = torch.tensor([x.size(0) for x, _ in graphs])
        offsets = torch.cumsum(sizes, 0) - sizes
        return SimpleNamespace(
            x=torch.cat([x for x, _ in graphs]).to(self.device),
            edge_index=torch.cat([e + o for (_, e), o in zip(graphs, offsets.tolist())], dim=1).to(self.device),
            batch=torch.repeat_interleave(torch.arange(len(graphs)), sizes).to(self.device),
        )

    # --- per-architecture score ----------------------------------------------------------
    @cached_property
    def _reference_batch(self) -> SimpleNamespace:
        return self._batch(self.reference)

    def score_features(self, z: torch.Tensor) -> torch.Tensor:
        """Mean P[a beats r] over the reference set r, for features z of a batch."""
        if torch.is_grad_enabled():
            z_ref = self.features(self._reference_batch)
        else:
            z_ref = self.frozen_features(self.reference)
        return torch.sigmoid(self.logit_matrix(z, z_ref)).mean(dim=1)

    def forward(self, batch) -> torch.Tensor:
        return self.score_features(self.features(batch))

    # --- losses --------------------------------------------------------------------------
    @staticmethod
    def pair_targets(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, B] targets 1[y_i > y_j] and the mask of the pairs that count (i != j, no ties)."""
        target = (y[:, None] > y[None, :]).float()
        return target, y[:, None] != y[None, :]

    def labelled_pair_loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target, mask = self.pair_targets(y)
        if not mask.any():
            return z.sum() * 0.0
        logits = self.logit_matrix(z, z)
        return nn.functional.binary_cross_entropy_with_logits(logits[mask], target[mask])

    def loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise TypeError("the NAC trains on pairs, not on per-architecture scores: use training_step")

    def training_step(self, batch, batch_idx):
        loss = self.labelled_pair_loss(self.features(batch), batch.y)
        if self.hparams.pseudo_ratio > 0 and len(self.pseudo_first):
            loss = loss + self.hparams.pseudo_ratio * self.pseudo_pair_loss(batch.num_graphs)
        self.log("train_loss", loss, batch_size=batch.num_graphs, prog_bar=True)
        return loss

    # --- pseudo-labelled pairs (data exploration) ---------------------------------------
    def set_pseudo_pairs(
        self, first: Sequence[Architecture], second: Sequence[Architecture], labels: Sequence[float] | torch.Tensor
    ) -> None:
        """Pairs labelled by the comparator itself (label 1: first is better); replaces the set."""
        labels = torch.as_tensor(labels, dtype=torch.float32).flatten()
        if not len(first) == len(second) == len(labels):
            raise ValueError(f"pseudo pairs need equal lengths, got {len(first)}, {len(second)}, {len(labels)}")
        self.pseudo_first, self.pseudo_second, self.pseudo_labels = list(first), list(second), labels

    def pseudo_pair_loss(self, num_pairs: int) -> torch.Tensor:
        picks = torch.randint(len(self.pseudo_first), (num_pairs,)).tolist()
        logits = self.pair_logits(
            self._features_of([self.pseudo_first[i] for i in picks]),
            self._features_of([self.pseudo_second[i] for i in picks]),
        )
        return nn.functional.binary_cross_entropy_with_logits(logits, self.pseudo_labels[picks].to(logits.device))

    # --- evaluation ----------------------------------------------------------------------
    def _evaluate(self, batch, tau, pair_acc, prefix: str) -> None:
        z = self.features(batch)
        tau.update(self.score_features(z), batch.y)
        target, mask = self.pair_targets(batch.y)
        if mask.any():
            pair_acc.update(self.logit_matrix(z, z)[mask] > 0, target[mask].long())
        self.log(f"{prefix}_tau", tau, batch_size=batch.num_graphs, prog_bar=prefix == "val")
        self.log(f"{prefix}_pair_acc", pair_acc, batch_size=batch.num_graphs, prog_bar=prefix == "val")

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, self.val_tau, self.val_pair_acc, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, self.test_tau, self.test_pair_acc, "test")

    def configure_optimizers(self):
        """Adam with the authors' betas (0.5, 0.999); cosine decay when `max_epochs_hint` is set."""
        hp = self.hparams
        optimizer = torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas))
        if not hp.get("max_epochs_hint"):
            return optimizer
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=hp.max_epochs_hint)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
