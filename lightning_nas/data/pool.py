"""`ClusteredPoolDataModule`: an unlabelled pool of architectures with K-medoids cluster ids.

The data of DCL-ENAS stage 1 (contrastive pre-training). No labels are read: the pool is drawn
from the search space itself (all of it when the space is smaller than `pool_size`), clustered by
the hard encoder (path encoding, Manhattan distance, `lightning_nas.clustering.kmedoids`), and each
PyG `Data` carries its `cluster` id. The module also exposes what the loss needs: the medoid
architectures (the cluster prototypes) and each cluster's crowding distance.
"""
from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
from torch_geometric.loader import DataLoader

from lightning_nas.clustering import KMedoidsResult, kmedoids
from lightning_nas.encodings.graph import to_data
from lightning_nas.errors import ConfigError
from lightning_nas.spaces.base import Architecture, SearchSpace, get_space

#: draws per wanted architecture before sampling gives up on finding new distinct ones
MAX_DRAWS_PER_ARCH = 20


def draw_pool(space: SearchSpace, size: int, rng: np.random.Generator) -> list[Architecture]:
    """Up to `size` distinct architectures: the whole space if its genotypes number at most `size`,
    else distinct samples (keyed by the benchmark key, so isomorphic NB101 genotypes count once)."""
    if size < 1:
        raise ConfigError(f"pool_size must be >= 1, got {size}")
    if math.prod(space.choices()) <= size:
        return [a for a in space.enumerate() if space.is_valid(a)]
    seen: dict[str, Architecture] = {}
    for _ in range(size * MAX_DRAWS_PER_ARCH):
        a = space.sample(rng)
        seen.setdefault(space.key(a), a)
        if len(seen) == size:
            break
    return list(seen.values())


def crowding_distances(result: KMedoidsResult, alpha: float = 10.0) -> np.ndarray:
    """Per cluster: the members' mean Manhattan distance to the medoid, damped for small clusters.

    This is the concentration estimate of prototypical contrastive learning (Li et al., 2021),
    sum(d) / (Z log(Z + alpha)), computed on the hard encoding: crowded (tight) clusters get a
    small value and so, once scaled into a temperature, a sharper pull toward their prototype."""
    k = len(result.medoids)
    sizes = np.bincount(result.labels, minlength=k).astype(np.float64)
    total = np.bincount(result.labels, weights=result.distances, minlength=k)
    crowding = total / (sizes * np.log(sizes + alpha))
    positive = crowding[crowding > 0]
    # a cluster of identical encodings has distance 0: give it the tightest non-zero value instead
    return np.where(crowding > 0, crowding, positive.min() if positive.size else 1.0)


class ClusteredPoolDataModule(L.LightningDataModule):
    """Unlabelled pool + K-medoids clusters. Batches: PyG graphs with `path` and `cluster` ([B])."""

    def __init__(
        self,
        space: str,
        pool_size: int = 20000,
        num_clusters: int = 10,
        seed: int = 0,
        batch_size: int = 256,
        val_fraction: float = 0.05,
        num_workers: int = 0,
    ):
        super().__init__()
        if num_clusters < 2:
            raise ConfigError(f"num_clusters must be >= 2 for a contrastive loss, got {num_clusters}")
        if not 0 <= val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.save_hyperparameters()
        self.pool: list[Architecture] | None = None

    # --- data ----------------------------------------------------------------------------
    def load(self) -> None:
        """Draw the pool and cluster it (idempotent)."""
        if self.pool is not None:
            return
        hp = self.hparams
        rng = np.random.default_rng(hp.seed)
        self.space_obj = get_space(hp.space)
        self.space_obj.require("path_encoding", by="the DCL-ENAS stage-1 pool (clustered by path encoding)")
        self.pool = draw_pool(self.space_obj, hp.pool_size, rng)
        encodings = np.stack([self.space_obj.path_encoding(a) for a in self.pool])
        self.clusters = kmedoids(encodings, hp.num_clusters, rng)
        order = rng.permutation(len(self.pool))
        n_val = int(len(self.pool) * hp.val_fraction)
        self.val_index, self.train_index = np.sort(order[:n_val]), np.sort(order[n_val:])

    def setup(self, stage: str | None = None) -> None:
        self.load()

    @property
    def space(self) -> SearchSpace:
        self.load()
        return self.space_obj

    @property
    def labels(self) -> np.ndarray:
        self.load()
        return self.clusters.labels

    @property
    def medoids(self) -> list[Architecture]:
        """The cluster prototypes, in cluster-id order."""
        self.load()
        return [self.pool[i] for i in self.clusters.medoids]

    @property
    def crowding(self) -> np.ndarray:
        self.load()
        return crowding_distances(self.clusters)

    def dataset(self, index: np.ndarray) -> list:
        data = []
        for i in index:
            d = to_data(self.space_obj, self.pool[i])
            d.cluster = torch.tensor([int(self.clusters.labels[i])])
            data.append(d)
        return data

    def _loader(self, index: np.ndarray, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dataset(index),
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(self.hparams.seed) if shuffle else None,
            num_workers=self.hparams.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_index, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_index, shuffle=False)
