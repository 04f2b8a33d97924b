"""CR-LSO's learned parts (Rao et al.; Alg. 1): semi-supervised GNN predictor, then a G-VAE trained
jointly with an input-convex predictor on the pseudo-labelled pool; the encoder and decoder are
frozen afterwards and only the ICNN is fine-tuned during the search.

`fit` with a `GVAEDataModule`:
1. `on_fit_start`: the semi-supervised predictor (the G-VAE's encoder + an MLP, appendix A) is
   trained on the labelled architectures, then labels the whole pool (true labels where known).
2. every training step: reconstruction + beta * KL + prediction_weight * MSE(head(z), label), on
   z-scored labels. The head is an ICNN; predicted accuracy = -ICNN(z), so predicted accuracy is
   concave in z and maximising it is a convex problem (the paper's code also predicts
   `1 - icnn(z)`). The ICNN's hidden-to-hidden weights are clamped at zero after every step.
3. `on_fit_end`: the G-VAE is frozen. At the end and in every checkpoint, the per-dimension
   spread of the pool's latent means is stored (`latent_std`): the search measures its steps in it.

`forward(batch)` (batches of `GraphCodec` graphs) returns the predicted, z-scored accuracy.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.nn import functional as F
from torch_geometric.loader import DataLoader
from torchmetrics.functional.regression import kendall_rank_corrcoef

from lightning_nas.errors import ConfigError
from lightning_nas.nn.gvae import GVAE, GraphEncoder, kl_divergence, reconstruction_loss
from lightning_nas.nn.icnn import ICNN, MLPHead
from lightning_nas.predictors.base import Predictor
from lightning_nas.spaces.base import Architecture, get_space

HEADS = ("icnn", "mlp")


class SemiSupervisedGNN(nn.Module):
    """The G-VAE's encoder architecture followed by an MLP to a scalar (CR-LSO appendix A)."""

    def __init__(self, node_features: int, edge_features: int, hidden: int = 128, num_layers: int = 3):
        super().__init__()
        self.encoder = GraphEncoder(node_features, edge_features, hidden, num_layers)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.LeakyReLU(), nn.Linear(hidden, 1))

    def forward(self, batch) -> torch.Tensor:
        return self.head(self.encoder(batch)).squeeze(-1)


class CRLSOModel(Predictor):
    def __init__(
        self,
        space: str,
        latent_dim: int = 16,
        hidden: int = 128,
        encoder_layers: int = 3,
        decoder_hidden: int = 128,
        decoder_layers: int = 3,
        head: str = "icnn",
        head_hidden: int = 256,
        head_layers: int = 3,
        regularize: bool = True,
        beta: float = 0.005,
        prediction_weight: float = 0.01,
        posterior_noise: float = 0.01,
        semi_hidden: int = 128,
        semi_layers: int = 3,
        semi_epochs: int = 200,
        semi_batch_size: int = 32,
        semi_lr: float = 1e-3,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        max_epochs_hint: int | None = None,
    ):
        """`regularize=False` trains the head on a detached latent: the unconstrained G-VAE of the
        paper's Fig. 2a (the head still learns, but cannot shape the latent space).
        `posterior_noise` scales the reparameterisation noise (1 = the textbook VAE of Eq. 2;
        the authors' code uses 0.01)."""
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        if latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {latent_dim}")
        self.save_hyperparameters()
        self.space = get_space(space)
        self.space.require("codec", by="CR-LSO (its graph VAE encodes and decodes architectures)")
        self.codec = self.space.codec()
        self.gvae = GVAE(self.codec, latent_dim, hidden, encoder_layers, decoder_hidden, decoder_layers)
        head_class = ICNN if head == "icnn" else MLPHead
        self.head = head_class(latent_dim, head_hidden, head_layers)
        self.semi = SemiSupervisedGNN(self.codec.node_features, self.codec.edge_features, semi_hidden, semi_layers)
        # the labelled set of the fit (what the search starts from) and its label scale
        genes = len(self.space.choices())
        self.register_buffer("labelled_genotypes", torch.zeros(0, genes, dtype=torch.long))
        self.register_buffer("labelled_y", torch.zeros(0))
        self.register_buffer("y_stats", torch.tensor([0.0, 1.0]))  # mean, std of the labelled set
        self.register_buffer("semi_trained", torch.tensor(False))
        # per-dimension spread of the pool's latent means: the search measures its steps in it
        self.register_buffer("latent_std", torch.ones(latent_dim))
        self.register_load_state_dict_pre_hook(_resize_labelled_buffers)
        self.pool_y: torch.Tensor | None = None
        self.semi_val_tau = math.nan

    # --- what the search uses ------------------------------------------------------------
    def predicted(self, z: torch.Tensor) -> torch.Tensor:
        """Predicted z-scored accuracy at latent points `z` (differentiable; concave for the ICNN)."""
        return -self.head(z) if self.hparams.head == "icnn" else self.head(z)

    def forward(self, batch) -> torch.Tensor:
        mu, _ = self.gvae.encode(batch)
        return self.predicted(mu)

    def embed(self, archs: Sequence[Architecture]) -> torch.Tensor:
        return self.gvae.embed(archs)

    def batch(self, archs: Sequence[Architecture]):
        return self.codec.batch(archs)

    def labelled_archs(self) -> list[Architecture]:
        return [self.space.make(g) for g in self.labelled_genotypes.tolist()]

    def standardise(self, y: torch.Tensor) -> torch.Tensor:
        mean, std = self.y_stats.tolist()
        return (y - mean) / std

    # --- fit -----------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        if dm is None or not hasattr(dm, "pool_archs"):
            raise ConfigError(
                "CRLSOModel trains on a G-VAE pool: use data.class_path: lightning_nas.data.gvae.GVAEDataModule"
            )
        if dm.space.name != self.space.name:
            raise ConfigError(f"model.space is {self.space.name!r} but the data is a {dm.space.name!r} benchmark")
        archs, y = dm.train_archs, torch.as_tensor(dm.train_y, dtype=torch.float32)
        if len(archs) < 2:
            raise ConfigError("CR-LSO's semi-supervised predictor needs at least 2 labelled architectures: raise data.num_labelled")
        self.labelled_genotypes = torch.tensor([a.genotype for a in archs], dtype=torch.long, device=self.device)
        self.labelled_y = y.to(self.device)
        self.y_stats = torch.tensor([dm.y_mean, dm.y_std], device=self.device)
        if not bool(self.semi_trained):
            self.train_semi_supervised(archs, self.standardise(y))
            self.semi_trained = torch.tensor(True, device=self.device)
        self.semi_val_tau = self._semi_tau(dm)
        rank_zero_info(f"CR-LSO semi-supervised predictor: Kendall tau {self.semi_val_tau:.3f} on the validation archs")
        self.pool_y = self.pseudo_labels(dm.pool_archs, archs, self.standardise(y))
        self.semi.train()  # no dropout / normalisation inside: only keeps Lightning's mode check quiet

    def train_semi_supervised(self, archs: Sequence[Architecture], y: torch.Tensor) -> None:
        """Adam + cosine annealing to zero (appendix A), MSE on z-scored labels."""
        hp = self.hparams
        data = self.codec.batch(archs).to_data_list()
        for d, t in zip(data, y.tolist()):
            d.y = torch.tensor([t])
        loader = DataLoader(data, batch_size=hp.semi_batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(int(torch.randint(2**31, ()).item())))
        optimizer = torch.optim.Adam(self.semi.parameters(), lr=hp.semi_lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(hp.semi_epochs, 1))
        self.semi.train()
        with torch.enable_grad():
            for _ in range(hp.semi_epochs):
                for batch in loader:
                    batch = batch.to(self.device)
                    loss = F.mse_loss(self.semi(batch), batch.y)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                schedule.step()
        self.semi.eval()

    @torch.no_grad()
    def semi_predict(self, archs: Sequence[Architecture], chunk: int = 2048) -> torch.Tensor:
        self.semi.eval()
        out = [self.semi(self.codec.batch(archs[i : i + chunk]).to(self.device)) for i in range(0, len(archs), chunk)]
        return torch.cat(out) if out else torch.zeros(0, device=self.device)

    def pseudo_labels(self, pool: Sequence[Architecture], labelled: Sequence[Architecture], y: torch.Tensor) -> torch.Tensor:
        """Semi-supervised predictions for the pool, with the true (z-scored) label where one is known."""
        labels = self.semi_predict(pool)
        known = {a.genotype: float(t) for a, t in zip(labelled, y.tolist())}
        for i, a in enumerate(pool):
            if a.genotype in known:
                labels[i] = known[a.genotype]
        return labels

    def _semi_tau(self, dm) -> float:
        rows = dm.val_rows
        if len(rows) < 2:
            return math.nan
        pred = self.semi_predict(dm.archs(rows)).cpu()
        return float(kendall_rank_corrcoef(pred, torch.as_tensor(dm.y_all[rows], dtype=torch.float32)))

    def training_step(self, batch, batch_idx):
        hp = self.hparams
        mu, logvar = self.gvae.encode(batch)
        z = mu + hp.posterior_noise * torch.randn_like(mu) * torch.exp(0.5 * logvar)
        reconstruction = reconstruction_loss(self.gvae.decoder(z), batch)
        kl = kl_divergence(mu, logvar)
        target = self.pool_y[batch.pool_id.to(self.pool_y.device)].to(z.device)
        prediction = F.mse_loss(self.predicted(z if hp.regularize else z.detach()), target)
        weight = hp.prediction_weight if hp.regularize else 1.0
        loss = reconstruction + hp.beta * kl + weight * prediction
        n = batch.num_graphs
        self.log("train_loss", loss, batch_size=n, prog_bar=True)
        self.log("train_reconstruction", reconstruction, batch_size=n)
        self.log("train_kl", kl, batch_size=n)
        self.log("train_prediction", prediction, batch_size=n, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.head.project_()  # keep the ICNN's hidden-to-hidden weights non-negative

    def on_fit_end(self) -> None:
        self.gvae.requires_grad_(False)
        self.semi.requires_grad_(False)
        self.measure_latent_std()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # checkpoints are written before on_fit_end: measure the spread for each one
        if self._trainer is not None and getattr(self.trainer.datamodule, "pool_archs", None):
            self.measure_latent_std()
            checkpoint["state_dict"]["latent_std"] = self.latent_std.clone()

    def measure_latent_std(self, sample: int = 2000) -> None:
        """Per-dimension spread of the posterior means over (an even sample of) the pool."""
        pool = self.trainer.datamodule.pool_archs
        was_training = self.gvae.training
        self.gvae.eval()
        self.latent_std = self.embed(pool[:: max(1, len(pool) // sample)]).std(0).clamp_min(1e-6)
        self.gvae.train(was_training)

    def parameter_groups(self):
        return [*self.gvae.parameters(), *self.head.parameters()]

    # --- the search's fine-tuning of the head (Alg. 3) -----------------------------------
    def finetune_head(
        self,
        z: torch.Tensor,
        y: torch.Tensor,
        epochs: int,
        lr: float,
        betas: tuple[float, float],
        batch_size: int,
        latent_noise: float,
        generator: torch.Generator,
    ) -> float:
        """Fit the head to (latent, z-scored label) pairs with the G-VAE frozen; returns the last
        epoch's mean loss. `latent_noise` jitters the latents (the authors' code uses 0.05)."""
        if len(z) == 0 or epochs <= 0:
            return math.nan
        optimizer = torch.optim.Adam(self.head.parameters(), lr=lr, betas=tuple(betas))
        self.head.train()
        last = math.nan
        with torch.enable_grad():
            for _ in range(epochs):
                order = torch.randperm(len(z), generator=generator)
                total = 0.0
                for i in range(0, len(z), batch_size):
                    index = order[i : i + batch_size]
                    noise = torch.randn(len(index), z.shape[1], generator=generator) * latent_noise
                    loss = F.mse_loss(self.predicted(z[index] + noise.to(z.device)), y[index])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    self.head.project_()
                    total += loss.item() * len(index)
                last = total / len(z)
        self.head.eval()
        return last


def _resize_labelled_buffers(module: CRLSOModel, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    # the labelled set's size is only known from the checkpoint
    for name in ("labelled_genotypes", "labelled_y"):
        incoming = state_dict.get(prefix + name)
        if incoming is not None:
            setattr(module, name, torch.zeros_like(incoming))
