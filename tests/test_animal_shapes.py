"""The embedded live-training task: Animal-Shape MNIST read from the installed package, no download."""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_nas.data.images import AnimalShapesDataModule
from lightning_nas.errors import ConfigError


def _rows(dm: AnimalShapesDataModule, split: str) -> set[bytes]:
    return {row.numpy().tobytes() for row in dm.splits[split].tensors[0]}


def test_the_shipped_silhouettes_load_with_fixed_disjoint_splits():
    pytest.importorskip("animal_shape_mnist")
    dm = AnimalShapesDataModule(seed=0, train_size=4000, image_size=12)
    dm.setup()
    assert {k: dm.split_size(k) for k in ("train", "val", "test")} == {"train": 4000, "val": 2000, "test": 2000}
    assert dm.input_shape == (1, 12, 12) and dm.num_classes == 10 and dm.name == "animal_shapes"
    labels = torch.cat([dm.splits[k].tensors[1] for k in ("train", "val", "test")])
    assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))
    assert abs(dm.splits["train"].tensors[0].mean().item()) < 1e-5  # normalised by the training split

    full = AnimalShapesDataModule(seed=0)
    full.setup()
    assert full.input_shape == (1, 28, 28) and full.split_size("train") == 6000
    counts = torch.bincount(torch.cat([full.splits[k].tensors[1] for k in ("train", "val", "test")]))
    assert counts.tolist() == [1000] * 10  # all 10,000 images, 1,000 per animal
    # the same seed draws the same rows; validation never overlaps the training rows it was drawn beside
    again = AnimalShapesDataModule(seed=0, train_size=4000, image_size=12)
    torch.testing.assert_close(again.sample_batch(16, seed=3), dm.sample_batch(16, seed=3))
    other = AnimalShapesDataModule(seed=1, train_size=4000, image_size=12)
    assert not torch.equal(other.sample_batch(16, seed=3)[0], dm.sample_batch(16, seed=3)[0])
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 1, 12, 12) and y.shape == (64,)


def _fake_package(tmp_path: Path, monkeypatch, n: int = 50) -> Path:
    """A package folder laid out like animal-shape-mnist's, with n random images (labels i % 10)."""
    folder = tmp_path / "data" / "Animal Shape"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    digests = {}
    for name, array in zip(AnimalShapesDataModule.FILES, (images, np.arange(n) % 10)):
        raw = gzip.compress(pickle.dumps(array))
        (folder / name).write_bytes(raw)
        digests[name] = hashlib.sha256(raw).hexdigest()
    monkeypatch.setattr(AnimalShapesDataModule, "FILES", digests)
    monkeypatch.setattr(AnimalShapesDataModule, "SIZE", n)
    monkeypatch.setattr(AnimalShapesDataModule, "folder", lambda self: folder)
    return folder


def test_splits_are_complete_and_disjoint_and_train_size_keeps_the_first_rows(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch)
    dm = AnimalShapesDataModule(seed=5, val_size=10, test_size=10)
    dm.setup()
    train, val, test = (_rows(dm, k) for k in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (30, 10, 10)
    assert not (train & val or train & test or val & test)
    small = AnimalShapesDataModule(seed=5, val_size=10, test_size=10, train_size=12, image_size=12)
    small.setup()
    assert small.split_size("train") == 12 and small.input_shape == (1, 12, 12)
    # the validation rows do not depend on how many training images are kept
    torch.testing.assert_close(small.splits["val"].tensors[1], dm.splits["val"].tensors[1])


def test_a_changed_data_file_is_refused_before_unpickling(tmp_path, monkeypatch):
    folder = _fake_package(tmp_path, monkeypatch)
    name = next(iter(AnimalShapesDataModule.FILES))
    (folder / name).write_bytes(gzip.compress(pickle.dumps("not the release")))
    with pytest.raises(ImportError, match="sha256 differs.*animal-shape-mnist==0.39"):
        AnimalShapesDataModule(val_size=10, test_size=10).setup()


def test_a_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install animal-shape-mnist"):
        AnimalShapesDataModule().setup()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"val_size": 0}, "val_size"),
        ({"val_size": 5000, "test_size": 5000}, "leave training images"),
        ({"train_size": 6001}, "train_size must be between 1 and 6000"),
        ({"image_size": 0}, "image_size"),
    ],
)
def test_bad_sizes_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AnimalShapesDataModule(**kwargs)
