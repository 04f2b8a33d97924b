"""`GVAEDataModule`: the data of CR-LSO's G-VAE training (Alg. 1).

The labelled split is `ArchitectureDataModule`'s (`num_labelled` by `seed`). On top of it, an
unlabelled pool for the G-VAE: the whole space when it can be enumerated and `pool_size` is None
(CR-LSO appendix A: all of NB101 / NB201), else `pool_size` uniform samples (NB301: 50,000), or
the benchmark table's own architectures (`pool_source: benchmark`). The
labelled architectures are always in the pool. `pool_holdout` keeps a seeded fraction of the
unlabelled architectures out of the pool, so reconstruction can be measured on unseen ones.

`LabelledPoolDataModule` is the same data from given labels instead of a table: what a search fits
an untrained CR-LSO model on, from its own first queries (`lightning_nas.search.crlso`).

Every batch holds the G-VAE's graphs (`GraphCodec.graph`): train batches come from the pool and
carry `pool_id` (the model looks up its pseudo-label), val/test batches the z-scored `y`. Train
batches are built by the codec's `batch` (vectorised for NB101) as the loader draws them.
"""
from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader
from torch_geometric.data import Batch

from lightning_nas.data.datamodule import ArchitectureDataModule
from lightning_nas.data.pool import draw_pool
from lightning_nas.errors import ConfigError
from lightning_nas.spaces.base import Architecture, SearchSpace
from lightning_nas.spaces.codec import GraphCodec


class GVAEDataModule(ArchitectureDataModule):
    def __init__(
        self,
        benchmark: str | list[str],
        target: str,
        num_labelled: float = 0.01,
        seed: int = 0,
        batch_size: int = 64,
        max_val: int = 2000,
        num_workers: int = 0,
        pool_size: int | None = None,
        pool_holdout: float = 0.0,
        pool_source: str = "space",
        space: str | dict[str, Any] | None = None,
    ):
        """`pool_source`: "space" (enumerate or sample the search space) or "benchmark" (every
        architecture of the table with a `target` value: for partial tables such as NB101's 30k rows,
        so that what the G-VAE learns to decode is mostly what the oracle can answer)."""
        super().__init__(benchmark, target, num_labelled, seed, batch_size, max_val, num_workers, space=space)
        if pool_source not in ("space", "benchmark"):
            raise ConfigError(f"pool_source must be 'space' or 'benchmark', got {pool_source!r}")
        if not 0.0 <= pool_holdout < 1.0:
            raise ConfigError(f"pool_holdout is a fraction of the unlabelled architectures in [0, 1), got {pool_holdout}")
        if pool_size is not None and pool_size < 1:
            raise ConfigError(f"pool_size must be a positive count or null (the whole space), got {pool_size}")
        self.save_hyperparameters()
        self.pool: list[Architecture] | None = None

    @property
    def codec(self) -> GraphCodec:
        return self.space.codec()

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        self.draw_pool()

    def draw_pool(self) -> None:
        """Draw the pool and the held-out part (idempotent)."""
        if self.pool is not None:
            return
        hp = self.hparams
        rng = np.random.default_rng([hp.seed, 1])
        space = self.space
        if hp.pool_source == "benchmark":
            rows = np.sort(np.concatenate([self.train_rows, self.heldout_rows]))
            if hp.pool_size is not None:
                rows = rng.choice(rows, min(hp.pool_size, len(rows)), replace=False)
            # the table's own keys: hashing 30k NB101 cells again cost more than the rest of the draw
            drawn, keys = self.archs(rows), self.bench.keys[rows].tolist()
            known = set(self.bench.keys[self.train_rows].tolist())
        else:
            if hp.pool_size is None:
                if not space.supports("enumerate"):
                    raise ConfigError(
                        f"the {space.name} space cannot be enumerated: set data.init_args.pool_size "
                        "(CR-LSO samples 50,000 architectures for NB301)"
                    )
                drawn = list(space.enumerate())
            else:
                drawn = draw_pool(space, hp.pool_size, rng)
            keys = [space.key(a) for a in drawn]
            known = {space.key(a) for a in self.train_archs}
        labelled = self.train_archs
        unlabelled = [a for a, key in zip(drawn, keys) if key not in known]
        order = rng.permutation(len(unlabelled))
        n_out = int(len(unlabelled) * hp.pool_holdout)
        self.pool_holdout_archs = [unlabelled[i] for i in np.sort(order[:n_out])]
        self.pool = labelled + [unlabelled[i] for i in np.sort(order[n_out:])]

    @property
    def pool_archs(self) -> list[Architecture]:
        self.draw_pool()
        return self.pool

    def dataset(self, rows: np.ndarray) -> list:
        codec = self.codec
        z = (self.y_all[rows] - self.y_mean) / self.y_std
        data = []
        for a, t in zip(self.archs(rows), z):
            d = codec.graph(a)
            d.y = torch.tensor([float(t)], dtype=torch.float32)
            data.append(d)
        return data

    def train_dataloader(self) -> DataLoader:
        return pool_loader(self.codec, self.pool_archs, self.hparams.batch_size, self.hparams.seed, self.hparams.num_workers)


class LabelledPoolDataModule(L.LightningDataModule):
    """The G-VAE's data from given labels (a search's own first queries) instead of a table: the
    labelled architectures and `pool_size` more drawn from the space (all of it when it is smaller;
    CR-LSO samples 50,000 for NB301). No validation split: every label trains."""

    def __init__(self, space: SearchSpace, archs: Sequence[Architecture], y: Sequence[float],
                 pool_size: int = 50_000, batch_size: int = 64, seed: int = 0):
        super().__init__()
        if len(archs) < 2:
            raise ConfigError(f"CR-LSO's fit needs at least 2 labelled architectures, got {len(archs)}")
        self.space, self.train_archs = space, list(archs)
        self.train_y = np.asarray(y, dtype=np.float64)
        self.y_mean = float(self.train_y.mean())
        self.y_std = float(self.train_y.std()) if self.train_y.std() > 0 else 1.0
        self.val_rows = np.zeros(0, dtype=int)
        self.batch_size, self.seed = batch_size, seed
        drawn = draw_pool(space, pool_size, np.random.default_rng([seed, 1]))
        self.pool_archs = self.train_archs + unlabelled_rest(space, self.train_archs, drawn)

    def train_dataloader(self) -> DataLoader:
        return pool_loader(self.space.codec(), self.pool_archs, self.batch_size, self.seed)


def unlabelled_rest(space: SearchSpace, labelled: Sequence[Architecture], drawn: Sequence[Architecture]) -> list[Architecture]:
    """The drawn architectures that are not labelled (the pool is the labelled ones, then these)."""
    known = {space.key(a) for a in labelled}
    return [a for a in drawn if space.key(a) not in known]


def pool_loader(codec: GraphCodec, pool: Sequence[Architecture], batch_size: int, seed: int,
                num_workers: int = 0) -> DataLoader:
    """The pool in shuffled batches, each the codec's `batch` of its architectures with their
    `pool_id` (for their pseudo-labels; the batches PyG's loader would collate from one `Data` each)."""
    return DataLoader(range(len(pool)), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed), num_workers=num_workers,
                      collate_fn=PoolBatches(codec, list(pool)))


class PoolBatches:
    """A loader's collate over pool indices: the codec's batch of those architectures, with `pool_id`."""

    def __init__(self, codec: GraphCodec, pool: list[Architecture]):
        self.codec, self.pool = codec, pool

    def __call__(self, index: list[int]) -> Batch:
        batch = self.codec.batch([self.pool[i] for i in index])
        batch.pool_id = torch.tensor(index)
        return batch
