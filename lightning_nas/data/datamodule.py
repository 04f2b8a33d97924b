"""LightningDataModules over a benchmark archive."""
from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch_geometric.loader import DataLoader

from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.benchmarks.converters.tables import read_table
from lightning_nas.encodings.graph import to_data
from lightning_nas.errors import ConfigError
from lightning_nas.spaces.base import Architecture, get_space, space_reference


def split_count(num_labelled: float, total: int) -> int:
    """`num_labelled` < 1 is a fraction of `total` (rounded down, as "1% of NB201 = 156"), else a count."""
    if num_labelled < 0:
        raise ConfigError(f"num_labelled must be >= 0, got {num_labelled}")
    n = int(num_labelled * total) if num_labelled < 1 else int(num_labelled)
    if n > total:
        raise ConfigError(f"num_labelled={num_labelled} asks for {n} architectures but the archive has {total}")
    return n


class ArchitectureDataModule(L.LightningDataModule):
    """n labelled architectures drawn by seed; the rest of the archive is held out (evaluation
    set and unlabelled pool). Batches are PyG graphs with the path encoding and a z-scored `y`.
    `canonical_inputs`: featurise each cell's equivalence-class representative (`to_data`); a search
    with this datamodule scores and fine-tunes its predictor the same way. `space`: the search space
    of the table (a name, class path or `{class_path, init_args}` spec), for tables whose keys do not
    reveal it; an archive of another space is refused."""

    def __init__(
        self,
        benchmark: str | list[str],
        target: str,
        num_labelled: float = 0.01,
        seed: int = 0,
        batch_size: int = 64,
        max_val: int = 2000,
        num_workers: int = 0,
        canonical_inputs: bool = False,
        space: str | dict[str, Any] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.bench: Benchmark | None = None

    # --- data ----------------------------------------------------------------------------
    def load(self) -> None:
        """Read the archive and draw the split (idempotent; cheap after the first call)."""
        if self.bench is not None:
            return
        hp = self.hparams
        if hp.space is None:
            self.bench = Benchmark.load(hp.benchmark)
        else:
            self.bench = read_table(hp.benchmark, space_reference(get_space(hp.space)))
        y_all = self.bench.column(hp.target)
        rows = np.flatnonzero(~np.isnan(y_all))
        order = np.random.default_rng(hp.seed).permutation(rows)
        n = split_count(hp.num_labelled, len(rows))
        self.train_rows, self.heldout_rows = np.sort(order[:n]), np.sort(order[n:])
        self.val_rows = np.sort(order[n : n + hp.max_val])
        self.y_all = y_all
        labelled = y_all[self.train_rows]
        self.y_mean = float(labelled.mean()) if n else 0.0
        self.y_std = float(labelled.std()) if n > 1 and labelled.std() > 0 else 1.0

    def setup(self, stage: str | None = None) -> None:
        self.load()

    @property
    def benchmark(self) -> Benchmark:
        self.load()
        return self.bench

    @property
    def space(self):
        return self.benchmark.space

    def archs(self, rows: np.ndarray) -> list[Architecture]:
        return [self.space.from_key(k) for k in self.bench.keys[rows].tolist()]

    @property
    def train_archs(self) -> list[Architecture]:
        return self.archs(self.train_rows)

    @property
    def train_y(self) -> np.ndarray:
        return self.y_all[self.train_rows]

    @property
    def heldout_archs(self) -> list[Architecture]:
        return self.archs(self.heldout_rows)

    @property
    def heldout_y(self) -> np.ndarray:
        return self.y_all[self.heldout_rows]

    def dataset(self, rows: np.ndarray) -> list:
        space = self.space
        z = (self.y_all[rows] - self.y_mean) / self.y_std
        canonical = self.hparams.canonical_inputs
        return [to_data(space, a, float(t), canonical) for a, t in zip(self.archs(rows), z)]

    def _loader(self, rows: np.ndarray, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.hparams.seed)
        return DataLoader(
            self.dataset(rows),
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            generator=generator if shuffle else None,
            num_workers=self.hparams.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        if len(self.train_rows) == 0:
            raise ConfigError("num_labelled is 0: there is nothing to train on; set data.num_labelled")
        return self._loader(self.train_rows, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_rows, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.heldout_rows, shuffle=False)


def labelled_loader(space, archs: Sequence[Architecture], y: Sequence[float], batch_size: int, seed: int,
                    canonical: bool = False) -> DataLoader:
    """A shuffled loader over given (architecture, label) pairs: what surrogates fine-tune on."""
    y = np.asarray(y, dtype=np.float64)
    z = (y - y.mean()) / (y.std() if len(y) > 1 and y.std() > 0 else 1.0)
    data = [to_data(space, a, float(t), canonical) for a, t in zip(archs, z)]
    return DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
