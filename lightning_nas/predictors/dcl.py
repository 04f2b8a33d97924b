"""DCL-ENAS predictor, in two Lightning stages.

Stage 1, `ContrastivePretrainer` (no labels): the soft encoder learns the grouping of the hard
encoder. Each embedding is pulled toward its K-medoids cluster prototype (the soft embedding of the
medoid architecture) and pushed from the other prototypes, a ProtoNCE-style softmax over prototypes
in which each prototype's temperature scales with its cluster's crowding distance.

Stage 2, `RankingFinetuner` (a `Predictor`): starts from the stage-1 encoder, adds the score head
(concat -> project -> full -> score) and learns from a pairwise ranking loss over every ordered
pair of the batch, so n labelled architectures give n(n-1) training signals.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch

from lightning_nas.errors import ConfigError, MissingFileError
from lightning_nas.encodings.graph import to_batch
from lightning_nas.nn.dcl import ScoreHead, SoftEncoder
from lightning_nas.predictors.base import Predictor
from lightning_nas.spaces.base import get_space

#: soft-encoder settings that must agree between a stage-1 checkpoint and the stage-2 model
ENCODER_KEYS = ("space", "hidden", "embed_dim", "gin_layers", "transformer_layers", "heads", "bidirectional", "readout")
#: why DCL-ENAS refuses a space without path encodings
DCL_NEEDS_PATHS = "DCL-ENAS (its hard encoder clusters path encodings and its soft encoder attends over them)"
#: what a stage-1 checkpoint written before a key existed was trained with
ENCODER_DEFAULTS = {"bidirectional": False, "readout": "attention"}


def encoder_settings(hp: Any) -> dict[str, Any]:
    """The soft-encoder settings of `hp` (a model's or a checkpoint's hyperparameters), None read as its default."""
    theirs = {**ENCODER_DEFAULTS, **{k: v for k, v in dict(hp).items() if v is not None}}
    return {k: theirs[k] for k in ENCODER_KEYS if k in theirs}


def encoder_dims(space: str) -> tuple[int, int]:
    """(node-feature size, path-encoding length) of the featurisation of `space`."""
    s = get_space(space)
    s.require("path_encoding", by=DCL_NEEDS_PATHS)
    a = s.sample(np.random.default_rng(0))
    return int(s.to_graph(a).x.shape[1]), int(len(s.path_encoding(a)))


def build_encoder(hp: Any) -> SoftEncoder:
    node_features, path_length = encoder_dims(hp["space"])
    return SoftEncoder(
        node_features,
        path_length,
        hidden=hp["hidden"],
        embed_dim=hp["embed_dim"],
        gin_layers=hp["gin_layers"],
        transformer_layers=hp["transformer_layers"],
        heads=hp["heads"],
        dropout=hp["dropout"],
        bidirectional=hp["bidirectional"],
        readout=encoder_settings(hp)["readout"],
    )


# --- losses --------------------------------------------------------------------------------
def prototype_contrastive_loss(z: Tensor, prototypes: Tensor, temperatures: Tensor, clusters: Tensor) -> Tensor:
    """Cross-entropy over prototypes: logit_ik = <z_i, c_k> / tau_k with unit-norm z and c."""
    logits = F.normalize(z, dim=1) @ F.normalize(prototypes, dim=1).T / temperatures
    return F.cross_entropy(logits, clusters)


def crowding_temperatures(crowding: Tensor, base: float, clamp: tuple[float, float] = (0.5, 2.0)) -> Tensor:
    """Per-cluster temperature proportional to crowding distance, with mean `base` (PCL's scaling),
    clamped to `clamp` x `base` so one very loose or very tight cluster cannot dominate."""
    tau = base * crowding / crowding.mean()
    return tau.clamp(base * clamp[0], base * clamp[1])


def ordered_pairs(n: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Indices (i, j) of the n(n-1) ordered pairs with i != j."""
    i, j = torch.meshgrid(torch.arange(n, device=device), torch.arange(n, device=device), indexing="ij")
    off_diagonal = i != j
    return i[off_diagonal], j[off_diagonal]


def pairwise_ranking_loss(scores: Tensor, y: Tensor) -> Tensor:
    """Logistic (RankNet) loss over every ordered pair: P(i above j) = sigmoid(s_i - s_j), target
    1 if y_i > y_j, 0 if y_i < y_j, 1/2 on ties. Mean over the n(n-1) pairs."""
    if len(scores) < 2:  # a batch of one has no pair: contribute nothing, keep the graph
        return scores.sum() * 0.0
    i, j = ordered_pairs(len(scores), scores.device)
    target = (torch.sign(y[i] - y[j]) + 1) / 2
    return F.binary_cross_entropy_with_logits(scores[i] - scores[j], target)


# --- stage 1 -------------------------------------------------------------------------------
class ContrastivePretrainer(L.LightningModule):
    """Self-supervised stage: needs a datamodule with `medoids`, `crowding` and `space`
    (`lightning_nas.data.pool.ClusteredPoolDataModule`); batches carry `cluster` ids."""

    def __init__(
        self,
        space: str = "nb201",
        num_clusters: int = 10,
        hidden: int = 64,
        embed_dim: int = 64,
        gin_layers: int = 3,
        transformer_layers: int = 2,
        heads: int = 4,
        dropout: float = 0.0,
        bidirectional: bool = False,
        readout: str | None = None,
        temperature: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.encoder = build_encoder(self.hparams)
        self.register_buffer("temperatures", torch.full((num_clusters,), temperature))
        self.medoid_batch: Batch | None = None

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        if dm is None or not all(hasattr(dm, name) for name in ("medoids", "crowding", "space")):
            raise ConfigError(
                "ContrastivePretrainer needs the clustered pool as data: "
                "data.class_path: lightning_nas.data.pool.ClusteredPoolDataModule"
            )
        if dm.space.name != self.hparams.space:
            raise ConfigError(f"model.space is {self.hparams.space!r} but the data pool is {dm.space.name!r}")
        if len(dm.medoids) != self.hparams.num_clusters:
            raise ConfigError(
                f"model.num_clusters={self.hparams.num_clusters} but the data has {len(dm.medoids)} clusters; "
                "set both to the same value"
            )
        self.set_prototypes(dm.medoids, torch.as_tensor(dm.crowding, dtype=torch.float32))

    def set_prototypes(self, medoids, crowding: Tensor) -> None:
        self.medoid_batch = to_batch(get_space(self.hparams.space), medoids).to(self.device)
        self.temperatures.copy_(crowding_temperatures(crowding.to(self.device), self.hparams.temperature))

    def forward(self, batch) -> Tensor:
        return F.normalize(self.encoder(batch), dim=1)

    def _loss(self, batch) -> tuple[Tensor, Tensor]:
        if self.medoid_batch is None:
            raise RuntimeError("prototypes are not set: call set_prototypes or fit with a ClusteredPoolDataModule")
        logits_input = self.encoder(batch)
        prototypes = self.encoder(self.medoid_batch)
        loss = prototype_contrastive_loss(logits_input, prototypes, self.temperatures, batch.cluster)
        nearest = (F.normalize(logits_input, dim=1) @ F.normalize(prototypes, dim=1).T).argmax(1)
        return loss, (nearest == batch.cluster).float().mean()

    def training_step(self, batch, batch_idx):
        loss, agreement = self._loss(batch)
        self.log("train_loss", loss, batch_size=batch.num_graphs, prog_bar=True)
        self.log("train_cluster_acc", agreement, batch_size=batch.num_graphs)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, agreement = self._loss(batch)
        self.log("val_loss", loss, batch_size=batch.num_graphs, prog_bar=True)
        self.log("val_cluster_acc", agreement, batch_size=batch.num_graphs, prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


# --- stage 2 -------------------------------------------------------------------------------
class RankingFinetuner(Predictor):
    """Predictor = stage-1 soft encoder + score head. `pretrained`: a stage-1 checkpoint (None: a
    search fits stage 1 itself with its `auto_fit`, or refuses); `from_scratch`: the "without
    pre-training" ablation (the encoder starts at random; left out of run recipes while None);
    `loss`: "ranking" or "mse" (ablation); `readout`: the node view's pooling (None: the paper's "attention";
    "sum": `lightning_nas.nn.dcl.NodeAttention`)."""

    #: the label-free first stage whose checkpoint `pretrained` names
    pretrainer = f"{__name__}.ContrastivePretrainer"

    def __init__(
        self,
        space: str = "nb201",
        pretrained: str | None = None,
        hidden: int = 64,
        embed_dim: int = 64,
        gin_layers: int = 3,
        transformer_layers: int = 2,
        heads: int = 4,
        dropout: float = 0.0,
        bidirectional: bool = False,
        readout: str | None = None,
        head_hidden: int = 64,
        loss: str = "ranking",
        lr: float = 1e-3,
        encoder_lr_scale: float = 1.0,
        weight_decay: float = 0.0,
        max_epochs_hint: int | None = None,
        from_scratch: bool | None = None,
    ):
        super().__init__()
        if loss not in ("ranking", "mse"):
            raise ConfigError(f"loss must be 'ranking' or 'mse', got {loss!r}")
        if encoder_lr_scale < 0:
            raise ConfigError(f"encoder_lr_scale must be >= 0, got {encoder_lr_scale}")
        self.save_hyperparameters()
        self.encoder = build_encoder(self.hparams)
        self.head = ScoreHead(embed_dim, head_hidden, dropout)
        if pretrained is not None and from_scratch:
            raise ConfigError("pretrained names a stage-1 encoder and from_scratch asks for none: keep one")
        self.pretrained_from: str | None = None
        if pretrained is not None:
            self.load_pretrained(pretrained)

    def lacks_pretraining(self) -> bool:
        """Whether the encoder still needs its stage 1 (none loaded, and not the ablation)."""
        return self.pretrained_from is None and not self.hparams.from_scratch

    def load_pretrained(self, path: str) -> None:
        """Copy the soft encoder of a stage-1 (`ContrastivePretrainer`) checkpoint into this model."""
        file = Path(path)
        if not file.is_file():
            raise MissingFileError(
                f"stage-1 checkpoint {file} does not exist; run `lightning-nas fit` with the dcl_enas_pretrain config first"
            )
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
        theirs, ours = encoder_settings(ckpt.get("hyper_parameters", {})), encoder_settings(self.hparams)
        mismatched = [k for k in theirs if theirs[k] != ours[k]]
        if mismatched:
            detail = ", ".join(f"{k}: checkpoint {theirs[k]!r} vs model {ours[k]!r}" for k in mismatched)
            raise ConfigError(f"stage-1 checkpoint {file} has a different soft encoder ({detail}); use the same settings")
        prefix = "encoder."
        state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        if not state:
            raise ConfigError(f"{file} holds no soft encoder weights: is it a ContrastivePretrainer checkpoint?")
        self.encoder.load_state_dict(state)
        self.pretrained_from = str(file)

    def forward(self, batch) -> Tensor:
        return self.head(self.encoder(batch))

    def parameter_groups(self):
        """The encoder at `encoder_lr_scale` x lr (0 freezes it), the head at lr."""
        encoder_lr = self.hparams.lr * self.hparams.encoder_lr_scale
        return [{"params": list(self.encoder.parameters()), "lr": encoder_lr}, {"params": list(self.head.parameters())}]

    def loss(self, scores: Tensor, y: Tensor) -> Tensor:
        if self.hparams.loss == "mse":
            return F.mse_loss(scores, y)
        return pairwise_ranking_loss(scores, y)
