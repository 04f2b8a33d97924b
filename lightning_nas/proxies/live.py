"""The live-training oracle: really trains each candidate and answers with its accuracy.

Every finished evaluation is written at once, in its own committed transaction, to an SQLite
store in WAL mode: one row per (space, architecture key, dataset, epochs, seed, setting), where
`setting` is the JSON of everything else that changes the result (optimiser, network width,
data split). A crash loses at most the evaluation in progress; a rerun, or another search with
the same setting, reads finished rows instead of training again.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torchmetrics
from torch import nn

from lightning_nas.benchmarks.oracle import Evaluation, Oracle
from lightning_nas.data.images import ImageDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.spaces.base import Architecture, get_space
from lightning_nas.spaces.layers import count_parameters
from lightning_nas.training import quiet_lightning, torch_threads


class ImageClassifier(L.LightningModule):
    """Cross-entropy training of a benchmark network; SGD with Nesterov momentum and a cosine
    schedule to zero over `epochs`, NB201's recipe (Dong & Yang, 2020, Table 2: lr 0.1,
    momentum 0.9, weight decay 5e-4)."""

    def __init__(self, network: nn.Module, num_classes: int, epochs: int, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4):
        super().__init__()
        self.network = network
        self.epochs, self.lr, self.momentum, self.weight_decay = epochs, lr, momentum, weight_decay
        # one candidate per rank in a distributed search: its accuracy must not be averaged across ranks
        self.val_acc = torchmetrics.classification.MulticlassAccuracy(num_classes, average="micro", sync_on_compute=False)
        self.test_acc = torchmetrics.classification.MulticlassAccuracy(num_classes, average="micro", sync_on_compute=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.val_acc(self(x), y)
        self.log("val_acc", self.val_acc, on_epoch=True)

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.test_acc(self(x), y)
        self.log("test_acc", self.test_acc, on_epoch=True)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(
            self.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay, nesterov=self.momentum > 0
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epochs)
        return {"optimizer": optimizer, "lr_scheduler": schedule}


# --- the store ------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredEvaluation:
    val_acc: float
    test_acc: float
    train_time_s: float
    params: int


_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    space TEXT NOT NULL,
    arch TEXT NOT NULL,
    dataset TEXT NOT NULL,
    epochs INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    setting TEXT NOT NULL,
    val_acc REAL NOT NULL,
    test_acc REAL NOT NULL,
    train_time_s REAL NOT NULL,
    params INTEGER NOT NULL,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (space, arch, dataset, epochs, seed, setting)
)
"""


class ResultStore:
    """The SQLite file of finished live evaluations (WAL mode, one committed row per evaluation)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.connection = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            mode = self.connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self.connection.execute("PRAGMA synchronous=FULL")
            self.connection.execute(_SCHEMA)
        except (sqlite3.DatabaseError, OSError) as e:
            raise ConfigError(f"cannot open the live-training store {self.path}: {e} (give `store:` a writable .sqlite path)") from None
        if mode.lower() != "wal":
            raise ConfigError(f"the store {self.path} cannot use WAL journaling (got {mode!r}); put it on a local disk")

    @property
    def journal_mode(self) -> str:
        return self.connection.execute("PRAGMA journal_mode").fetchone()[0]

    def get(self, space: str, arch: str, dataset: str, epochs: int, seed: int, setting: str) -> StoredEvaluation | None:
        row = self.connection.execute(
            "SELECT val_acc, test_acc, train_time_s, params FROM evaluations "
            "WHERE space=? AND arch=? AND dataset=? AND epochs=? AND seed=? AND setting=?",
            (space, arch, dataset, epochs, seed, setting),
        ).fetchone()
        return None if row is None else StoredEvaluation(row[0], row[1], row[2], int(row[3]))

    def put(self, space: str, arch: str, dataset: str, epochs: int, seed: int, setting: str, result: StoredEvaluation) -> None:
        """Commit one finished evaluation now (a concurrent writer's identical row wins silently)."""
        with self.connection:
            self.connection.execute(
                "INSERT OR IGNORE INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (space, arch, dataset, epochs, seed, setting, result.val_acc, result.test_acc,
                 result.train_time_s, result.params, datetime.now(timezone.utc).isoformat(timespec="seconds")),
            )

    def __len__(self) -> int:
        return self.connection.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]

    def close(self) -> None:
        self.connection.close()


# --- the oracle -----------------------------------------------------------------------------
class LiveTrainingOracle(Oracle):
    """Trains each candidate for `epochs` on `datamodule` with a Lightning `Trainer` and scores it
    by validation accuracy (%); test accuracy, training time and parameter count are reported.

    `network` passes builder options (e.g. NB201 `channels`, `cells_per_stage` to shrink the
    benchmark network for a quick search); `threads` sets torch's CPU threads while training
    (1 is fastest on a machine whose cores are shared); `accelerator` "gpu" / "auto" trains on the
    GPU of the process's rank (a distributed search gives each rank its share of the candidates)."""

    shard_evaluations = True

    def __init__(
        self,
        space: str | dict[str, Any],
        datamodule: ImageDataModule,
        epochs: int = 10,
        store: str = "checkpoints/live/evaluations.sqlite",
        seed: int = 0,
        budget: int | None = None,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        network: dict | None = None,
        threads: int | None = None,
        accelerator: str = "cpu",
    ):
        super().__init__(get_space(space), budget)
        self.space.require("network", by="live training (LiveTrainingOracle)")
        if epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {epochs}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be >= 1 (or null for torch's default), got {threads}")
        self.datamodule, self.epochs, self.seed, self.threads = datamodule, epochs, seed, threads
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.network = dict(network or {})
        self.space.check_network_options(self.network, "live training (LiveTrainingOracle)")
        self.accelerator = accelerator
        self.store = ResultStore(store)
        self.trainings = 0  # evaluations that really trained (store hits excluded)
        self.setting = json.dumps(
            {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "network": self.network,
             "data": {"class": type(datamodule).__name__, **datamodule.describe()}},
            sort_keys=True,
        )

    @property
    def dataset(self) -> str:
        return self.datamodule.name

    def _store_key(self, a: Architecture) -> tuple:
        return (self.space.name, self.space.key(a), self.dataset, self.epochs, self.seed, self.setting)

    def _evaluate(self, a: Architecture) -> Evaluation:
        key = self._store_key(a)
        result = self.store.get(*key)
        if result is None:
            result = self.train(a)
            self.store.put(*key, result)
        return Evaluation(
            score=result.val_acc,
            report={"test_acc": result.test_acc, "train_time_s": result.train_time_s, "params": float(result.params)},
            cost=result.train_time_s,
        )

    def _devices(self) -> int | list[int]:
        """One device: on GPUs, the one of this process's rank in a distributed search."""
        if self.accelerator in ("gpu", "cuda") or (self.accelerator == "auto" and torch.cuda.is_available()):
            return [int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0)))]
        return 1

    def train(self, a: Architecture) -> StoredEvaluation:
        """Train `a` from a seeded initialisation; the caller's torch RNG stream is left untouched."""
        self.trainings += 1
        dm = self.datamodule
        dm.setup()
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]), torch_threads(self.threads), quiet_lightning():
            torch.manual_seed(self.seed)
            network = self.space.network(a, dm.num_classes, dm.input_shape[0], **self.network)
            model = ImageClassifier(network, dm.num_classes, self.epochs, self.lr, self.momentum, self.weight_decay)
            trainer = L.Trainer(
                max_epochs=self.epochs, accelerator=self.accelerator, devices=self._devices(), logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
            )
            trainer.fit(model, train_dataloaders=dm.train_dataloader())
            val = trainer.validate(model, dataloaders=dm.val_dataloader(), verbose=False)[0]["val_acc"]
            test = trainer.test(model, dataloaders=dm.test_dataloader(), verbose=False)[0]["test_acc"]
        return StoredEvaluation(
            val_acc=100.0 * float(val), test_acc=100.0 * float(test),
            train_time_s=time.perf_counter() - start, params=count_parameters(network),
        )


