"""Trained predictors behind the `Surrogate` protocols: one wrapper per kind of predictor.

`surrogate_for` picks the wrapper of a predictor: a comparator answers the pairwise protocol, a
CR-LSO model the latent one, a difference predictor the gain one; any other LightningModule that
scores a PyG batch of architectures is a plain `PredictorSurrogate`."""
from __future__ import annotations

import json
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torchmetrics.functional.regression import kendall_rank_corrcoef

from lightning_nas.data.datamodule import labelled_loader
from lightning_nas.data.gvae import LabelledPoolDataModule
from lightning_nas.data.difference import labelled_pairs, rms
from lightning_nas.encodings.difference import encode
from lightning_nas.encodings.graph import to_batch
from lightning_nas.errors import CapabilityError, ConfigError
from lightning_nas.predictors.comparator import NeuralArchitectureComparator
from lightning_nas.predictors.crlso import CRLSOModel
from lightning_nas.predictors.difference import DifferencePredictor
from lightning_nas.search.surrogate import Surrogate
from lightning_nas.spaces.base import Architecture, SearchSpace
from lightning_nas.training import quiet_lightning, quiet_trainer


def surrogate_for(model: L.LightningModule, space: SearchSpace, finetune_epochs: int = 20,
                  seed: int = 0, canonical_inputs: bool = False, untrained: str | None = None,
                  warm_start: int = 0) -> Surrogate:
    """The surrogate of a predictor; `finetune_epochs`, `seed` and `canonical_inputs` are the
    search's settings for the predictors that fine-tune on labels through Lightning; `untrained`:
    None for a fitted predictor, else why it was never trained (the strategy must train it, on its
    first `warm_start` queries)."""
    if isinstance(model, NeuralArchitectureComparator):
        return ComparatorSurrogate(model, space, finetune_epochs, seed=seed, canonical_inputs=canonical_inputs,
                                   untrained=untrained, warm_start=warm_start)
    if isinstance(model, CRLSOModel):
        return CRLSOSurrogate(model, space, untrained=untrained)
    if isinstance(model, DifferencePredictor):
        return DifferenceSurrogate(model, space, finetune_epochs, untrained=untrained)
    return PredictorSurrogate(model, space, finetune_epochs, seed=seed, canonical_inputs=canonical_inputs,
                              untrained=untrained, warm_start=warm_start)


def check_space(model_space: SearchSpace, space: SearchSpace, what: str) -> None:
    if model_space.name != space.name:
        raise ConfigError(f"{what} was built for space {model_space.name!r} but the search runs on "
                          f"{space.name!r}: use a predictor fitted on the search's space")


def check_node_features(model: L.LightningModule, space: SearchSpace) -> None:
    """A graph predictor configured by its input width (`in_channels`, the GIN) that the search
    trains must read the space's node features: refuse a mismatch up front, with the value to set."""
    in_channels = getattr(model, "hparams", {}).get("in_channels")
    if in_channels is None:
        return
    features = int(space.to_graph(space.sample(np.random.default_rng(0))).x.shape[1])
    if int(in_channels) != features:
        raise ConfigError(
            f"model.init_args.in_channels is {in_channels}, but the graphs of the {space.name} space have "
            f"{features} node features (its to_graph): set model.init_args.in_channels: {features}"
        )


class PredictorSurrogate(Surrogate):
    """Scores architectures with a predictor and fine-tunes it on every label the search gathers.

    `update` keeps all labels seen so far and fine-tunes on them (z-scored together) for
    `finetune_epochs` with a quiet Lightning Trainer; 0 epochs keeps the predictor frozen.
    `canonical_inputs`: featurise as the predictor's fit did (`ArchitectureDataModule`).
    `untrained`: why the predictor was never trained (None: it was); then the strategy's first
    `warm_start` queries train it, and `fit_records` says so."""

    def __init__(
        self,
        model: L.LightningModule,
        space: SearchSpace,
        finetune_epochs: int = 20,
        batch_size: int = 64,
        seed: int = 0,
        score_chunk: int = 2048,
        canonical_inputs: bool = False,
        untrained: str | None = None,
        warm_start: int = 0,
    ):
        if untrained is not None and finetune_epochs <= 0:
            raise ConfigError(f"finetune_epochs is {finetune_epochs}, so the predictor would never learn, and "
                              f"{untrained}; set finetune_epochs >= 1")
        if untrained is not None:  # a fitted one's checkpoint and labels are checked against the space
            check_node_features(model, space)
        self.model, self.space, self.canonical_inputs = model, space, canonical_inputs
        self.finetune_epochs, self.batch_size, self.seed = finetune_epochs, batch_size, seed
        self.score_chunk = score_chunk
        self.untrained, self.warm_start = untrained, warm_start
        self.labelled: dict[tuple[int, ...], float] = {}
        self.updates = 0
        self.trainings = 0  # fine-tunes that ran
        self.first_training_labels = 0
        self._round: dict[str, float] = {}

    @torch.no_grad()
    def score(self, archs: Sequence[Architecture]) -> torch.Tensor:
        self.model.eval()
        out = [
            self.model(to_batch(self.space, archs[i : i + self.score_chunk], canonical=self.canonical_inputs)).float()
            for i in range(0, len(archs), self.score_chunk)
        ]
        return torch.cat(out) if out else torch.empty(0)

    def record(self, archs: Sequence[Architecture], y: Sequence[float]) -> None:
        self.labelled.update((a.genotype, float(t)) for a, t in zip(archs, y))

    def update(self, archs: Sequence[Architecture], y: Sequence[float]) -> None:
        if len(archs) > 1:  # how well it ranked the new labels before learning them
            self._round["predictor_tau"] = float(kendall_rank_corrcoef(self.score(archs), torch.tensor(y).float()))
        self.record(archs, y)
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
        self.trainings += 1
        self.first_training_labels = self.first_training_labels or len(self.labelled)
        if "train_loss" in trainer.callback_metrics:
            self._round["predictor_train_loss"] = float(trainer.callback_metrics["train_loss"])

    def fit_records(self) -> list[dict[str, Any]]:
        if self.untrained is None:
            return []  # a fitted predictor's fine-tunes are the method's, not a fit
        return [{"role": "predictor", "made_by": f"warm start: trained in the run on its first {self.warm_start} "
                 f"queries (random cells), {self.finetune_epochs} epochs on every label after each round",
                 "path": None, "config_hash": None, "labels_charged": self.warm_start,
                 "first_trained_on": self.first_training_labels, "trainings": self.trainings}]

    def round_metrics(self) -> dict[str, float]:
        """The search's loggers get, per round: the Kendall tau of its scores of the round's new labels
        before it learnt them, and the last training loss of its fine-tune."""
        out, self._round = self._round, {}
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "labelled_genotypes": [list(g) for g in self.labelled],
            "labelled_y": list(self.labelled.values()),
            "updates": self.updates,
            "trainings": [self.trainings, self.first_training_labels],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.labelled = {tuple(g): float(t) for g, t in zip(state["labelled_genotypes"], state["labelled_y"])}
        self.updates = int(state["updates"])
        self.trainings, self.first_training_labels = (int(n) for n in state.get("trainings", (0, 0)))


class ComparatorSurrogate(PredictorSurrogate):
    """The Neural Architecture Comparator (CTNAS): its score is the mean P[a beats r] over its
    reference set, and it fine-tunes on every labelled pair plus the pseudo-labelled ones."""

    def __init__(self, model: NeuralArchitectureComparator, space: SearchSpace, *args: Any, **kwargs: Any):
        check_space(model.space, space, "the comparator")
        super().__init__(model, space, *args, **kwargs)

    def compare(self, first: Sequence[Architecture], second: Sequence[Architecture]) -> torch.Tensor:
        return self.model.compare(first, second)

    def compare_all(self, rows: Sequence[Architecture], columns: Sequence[Architecture]) -> torch.Tensor:
        return self.model.compare_all(rows, columns)

    @property
    def learns_pseudo_pairs(self) -> bool:
        return self.model.hparams.pseudo_ratio > 0

    def set_pseudo_pairs(self, first: Sequence[Architecture], second: Sequence[Architecture],
                         labels: Sequence[float]) -> None:
        self.model.set_pseudo_pairs(first, second, labels)


class CRLSOSurrogate(Surrogate):
    """A CR-LSO model: its frozen G-VAE is the latent space, its ICNN head the predictor the search
    fine-tunes (Alg. 3). The fitted head is kept, so each fine-tune can start from it.

    An untrained model (`untrained` says why) is fitted inside the run by `fit`, on the labels of the
    search's first queries: Alg. 1 as `lightning-nas fit` runs it (semi-supervised GNN, pseudo-labels
    for the pool, G-VAE + ICNN jointly), a quiet Lightning fit of the model's own training step."""

    def __init__(self, model: CRLSOModel, space: SearchSpace, untrained: str | None = None):
        check_space(model.space, space, "the CR-LSO model")
        self.model, self.untrained = model, untrained
        self.made: dict[str, Any] | None = None  # the record of the fit made in the run
        if untrained is None:
            self._freeze()

    @property
    def fitted(self) -> bool:
        return self.untrained is None or self.made is not None

    def _freeze(self) -> None:
        self.model.eval()
        self.model.gvae.requires_grad_(False)
        self.fitted_head = self._head()

    def fit(self, archs: Sequence[Architecture], y: Sequence[float], epochs: int, pool_size: int, seed: int) -> None:
        """Fit the whole model on (architecture, label) pairs for `epochs` epochs over a G-VAE pool of
        `pool_size` cells; seeded by `seed` alone (the search's torch RNG is left as it was)."""
        data = LabelledPoolDataModule(self.model.space, archs, y, pool_size=pool_size, seed=seed)
        with torch.random.fork_rng(), quiet_lightning():
            torch.manual_seed(seed)
            self.model.train()
            quiet_trainer(epochs).fit(self.model, datamodule=data)
        self._freeze()
        self.made = {"role": "predictor", "made_by": f"warm start: CRLSOModel fitted in the run ({epochs} epochs)",
                     "path": None, "config_hash": None, "labels_charged": len(archs), "first_trained_on": len(archs),
                     "trainings": 1}

    def fit_records(self) -> list[dict[str, Any]]:
        return [self.made] if self.made is not None else []

    def _head(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.head.state_dict().items()}

    @torch.no_grad()
    def score(self, archs: Sequence[Architecture]) -> torch.Tensor:
        return self.model.predicted(self.model.embed(archs))

    def update(self, archs: Sequence[Architecture], y: Sequence[float]) -> None:
        """Learns through `finetune`, on the latent points the strategy chooses."""

    @property
    def latent_std(self) -> torch.Tensor:
        return self.model.latent_std

    def embed(self, archs: Sequence[Architecture]) -> torch.Tensor:
        return self.model.embed(archs)

    def decode(self, points: torch.Tensor) -> list:
        return self.model.gvae.decode(points)

    def ascent(self, z: torch.Tensor) -> torch.Tensor:
        point = z.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.model.predicted(point.unsqueeze(0)).sum(), point)
        return grad

    def warm_start(self) -> list[Architecture]:
        return self.model.labelled_archs()

    def standardise(self, y: torch.Tensor) -> torch.Tensor:
        return self.model.standardise(y)

    def finetune(self, z: torch.Tensor, target: torch.Tensor, epochs: int, lr: float,
                 betas: tuple[float, float], batch_size: int, latent_noise: float,
                 generator: torch.Generator, restart: bool) -> float:
        if restart:
            self.model.head.load_state_dict(self.fitted_head)
        return self.model.finetune_head(z, target, epochs, lr, betas, batch_size, latent_noise, generator)

    def state_dict(self) -> dict[str, Any]:
        if self.made is None:
            return {"head": self._head()}  # the G-VAE stays as fitted
        # fitted in the run: the whole model, so that a resumed run does not fit again
        return {"head": self._head(), "model": self.model.state_dict(), "fitted_head": self.fitted_head,
                "made": json.dumps(self.made)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "model" in state:
            self.model.load_state_dict(state["model"])
            self._freeze()
            self.fitted_head = state["fitted_head"]
            self.made = json.loads(state["made"])
        self.model.head.load_state_dict(state["head"])


class DifferenceSurrogate(Surrogate):
    """The Delta-NAS difference predictor F(a, a'): gains of moves, fine-tuned on real differences.

    In `mode="absolute"` the same network regresses the accuracy itself, so it also scores single
    architectures; a difference-mode predictor has no score of its own (`CapabilityError`)."""

    def __init__(self, model: DifferencePredictor, space: SearchSpace, finetune_epochs: int = 20,
                 untrained: str | None = None):
        check_space(model.space, space, "the difference predictor")
        self.model, self.space, self.finetune_epochs = model, space, finetune_epochs
        self.untrained = untrained  # no strategy trains it from nothing: Delta-NAS refuses it

    def score(self, archs: Sequence[Architecture]) -> torch.Tensor:
        if self.model.hparams.mode != "absolute":
            raise CapabilityError(
                "a difference predictor (mode: difference) predicts gains between architectures, not scores: "
                "use it with a strategy that asks for gains (lightning_nas.search.delta_nas.DeltaNAS)"
            )
        return self.model.rank_scores(archs)

    def update(self, archs: Sequence[Architecture], y: Sequence[float]) -> None:
        """Learns through `fit_gains`, on the pairs the strategy chooses."""

    def gains(self, base: Architecture, candidates: Sequence[Architecture]) -> torch.Tensor:
        return self.model.gains(base, candidates)

    def fit_gains(self, archs: Sequence[Architecture], y: np.ndarray, max_edit: int | None,
                  epochs: int | None, batch_size: int, rng: np.random.Generator) -> bool:
        """Difference mode: real differences of the labelled pairs at most `max_edit` edits apart;
        absolute mode: the labels themselves; both divided by their root mean square."""
        hp = self.model.hparams
        if hp.mode == "absolute":
            centred = y - y.mean()
            x, targets = encode(self.space, archs, hp.encoding), centred / rms(centred)
        else:
            x, deltas = labelled_pairs(self.space, archs, y, hp.encoding, max_edit, context=hp.context)
            targets = deltas / rms(deltas)
        if len(targets) < 2:
            return False
        seed = int(rng.integers(2**31))
        epochs = self.finetune_epochs if epochs is None else epochs
        self.model.fit_pairs(x, targets, epochs, batch_size, seed)
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
