"""Image-classification LightningDataModules the live-training oracle and the proxies train on.

- `DigitsDataModule`: the 1,797 8x8 handwritten digits that scikit-learn ships (no download).
- `AnimalShapesDataModule`: 10,000 28x28 animal silhouettes that the `animal-shape-mnist`
  package ships (no download): the embedded task on which NB201 cells rank much as on CIFAR-10.
- `CIFAR10DataModule`: CIFAR-10 read from a local `cifar-10-batches-py` folder (the official
  python-pickle release); nothing is downloaded.
- `ImageFolderDataModule`: the user's own images, one subfolder per class.

All draw a fixed train/val/test split from `seed`, normalise with the training split's
per-channel statistics, and expose `name`, `num_classes`, `input_shape` and `sample_batch`.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import pickle
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_nas.errors import ConfigError, MissingFileError


class ImageDataModule(L.LightningDataModule):
    """Shared split, normalisation and loaders; subclasses implement `load_arrays`."""

    name = "images"
    num_classes = 10

    def __init__(self, batch_size: int = 64, seed: int = 0, num_workers: int = 0):
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.splits: dict[str, TensorDataset] | None = None

    # --- subclass hooks ------------------------------------------------------------------
    def load_arrays(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """float images [N, C, H, W] (not yet normalised) and int64 labels, per split."""
        raise NotImplementedError

    def train_transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return x

    def describe(self) -> dict:
        """Everything that changes the data a network sees (stored beside live-training results)."""
        return {"seed": self.seed, "batch_size": self.batch_size}

    # --- LightningDataModule -------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        arrays = self.load_arrays()
        train_x = arrays["train"][0]
        mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
        std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        self.splits = {k: TensorDataset((x - mean) / std, y) for k, (x, y) in arrays.items()}

    @property
    def input_shape(self) -> tuple[int, int, int]:
        self.setup()
        return tuple(self.splits["train"].tensors[0].shape[1:])

    def split_size(self, split: str) -> int:
        self.setup()
        return len(self.splits[split])

    def train_dataloader(self) -> DataLoader:
        self.setup()
        generator = torch.Generator().manual_seed(self.seed)
        data: Dataset = self.splits["train"]
        if type(self).train_transform is not ImageDataModule.train_transform:
            data = _Augmented(data, self.train_transform, self.seed)
        return DataLoader(data, batch_size=self.batch_size, shuffle=True, generator=generator, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def _eval_loader(self, split: str) -> DataLoader:
        self.setup()
        return DataLoader(self.splits[split], batch_size=max(self.batch_size, 256), num_workers=self.num_workers)

    def sample_batch(self, batch_size: int, seed: int = 0, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed batch drawn by `seed` (what the data-dependent zero-cost proxies read)."""
        self.setup()
        x, y = self.splits[split].tensors
        if not 1 <= batch_size <= len(x):
            raise ConfigError(f"batch_size must be between 1 and {len(x)} (the {split} split), got {batch_size}")
        rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:batch_size]
        return x[rows], y[rows]


class _Augmented(Dataset):
    """Applies a random training transform per item, from a generator seeded once."""

    def __init__(self, data: TensorDataset, transform, seed: int):
        self.data, self.transform = data, transform
        self.generator = torch.Generator().manual_seed(seed + 1)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        x, y = self.data[i]
        return self.transform(x, self.generator), y


def _split_rows(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in (0, 1) and sum to less than 1"
        )
    return _split_counts(n, int(round(val_fraction * n)), int(round(test_fraction * n)), None, seed)


def _split_counts(n: int, n_val: int, n_test: int, n_train: int | None, seed: int) -> dict[str, np.ndarray]:
    """val, then test, then train rows of one permutation drawn by `seed` (train: the first
    `n_train` of the rest, or all of it)."""
    order = np.random.default_rng(seed).permutation(n)
    rest = order[n_val + n_test :]
    return {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": rest if n_train is None else rest[:n_train]}


def _resize(x: torch.Tensor, image_size: int | None, channels: int) -> torch.Tensor:
    if image_size is not None and image_size != x.shape[-1]:
        x = torch.nn.functional.interpolate(
            x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=image_size < x.shape[-1]
        )
    if channels != x.shape[1]:
        if x.shape[1] != 1:
            raise ConfigError(f"can only replicate single-channel images to {channels} channels")
        x = x.expand(-1, channels, -1, -1).contiguous()
    return x


class DigitsDataModule(ImageDataModule):
    """scikit-learn's handwritten digits (UCI optdigits test set): 1,797 8x8 grayscale images,
    10 classes. `image_size` / `channels` upsample (bilinear) and replicate the channel so that
    networks designed for 32x32 RGB inputs can run unchanged."""

    name = "digits"

    def __init__(
        self,
        batch_size: int = 64,
        seed: int = 0,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        image_size: int | None = None,
        channels: int = 1,
        num_workers: int = 0,
    ):
        super().__init__(batch_size, seed, num_workers)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.image_size, self.channels = image_size, channels
        _split_rows(10, val_fraction, test_fraction, seed)  # validate the fractions now

    def describe(self) -> dict:
        return {**super().describe(), "val_fraction": self.val_fraction, "test_fraction": self.test_fraction,
                "image_size": self.image_size, "channels": self.channels}

    def load_arrays(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ImportError("the digits data set ships with scikit-learn: pip install scikit-learn") from None
        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        x = _resize(x, self.image_size, self.channels)
        y = torch.tensor(digits.target, dtype=torch.int64)
        rows = _split_rows(len(y), self.val_fraction, self.test_fraction, self.seed)
        return {k: (x[r], y[r]) for k, r in rows.items()}


class AnimalShapesDataModule(ImageDataModule):
    """Animal-Shape MNIST (Mohammadi, 2025; MIT licence): 10,000 28x28 grayscale silhouettes of 10
    animals, 1,000 each, read from the files the `animal-shape-mnist` package ships (its loader
    module imports TensorFlow, so only the data files are read). Validation, test and training
    rows are drawn by `seed`; `train_size` keeps the first rows of the training share (all 6,000
    by default) and `image_size` resizes (bilinear, antialiased when shrinking).

    The embedded live-training task: at `image_size` 12, `train_size` 4,000 and 5 epochs of an
    NB201 network with C = 8, one cell per stage, 100 random cells rank with Spearman rho 0.70
    against NAS-Bench-201 CIFAR-10 (benchmarks/results/live_task.md)."""

    name = "animal_shapes"
    PACKAGE = "animal_shape_mnist"
    FILES = {  # file -> sha256 of the animal-shape-mnist 0.39 release: the pickles are read only if they match
        "animal_data_version_3.gz": "68a30346781a0984f839463a4615d2decb899d1ce65091bb92586311754a34ce",
        "animal_label_version_3.gz": "dec8dba7c469830989fbab46825021a08a38470753a512f27ada847eced97b57",
    }
    SIZE = 10_000

    def __init__(
        self,
        batch_size: int = 64,
        seed: int = 0,
        val_size: int = 2000,
        test_size: int = 2000,
        train_size: int | None = None,
        image_size: int | None = None,
        num_workers: int = 0,
    ):
        super().__init__(batch_size, seed, num_workers)
        available = self.SIZE - val_size - test_size
        if val_size < 1 or test_size < 1 or available < 1:
            raise ConfigError(
                f"val_size ({val_size}) and test_size ({test_size}) must be >= 1 and leave training images of the "
                f"{self.SIZE:,}: lower them"
            )
        if train_size is not None and not 1 <= train_size <= available:
            raise ConfigError(f"train_size must be between 1 and {available} (what val_size and test_size leave), got {train_size}")
        if image_size is not None and image_size < 1:
            raise ConfigError(f"image_size must be >= 1 (or null for the native 28), got {image_size}")
        self.val_size, self.test_size, self.train_size, self.image_size = val_size, test_size, train_size, image_size

    def describe(self) -> dict:
        return {**super().describe(), "val_size": self.val_size, "test_size": self.test_size,
                "train_size": self.train_size, "image_size": self.image_size}

    def folder(self) -> Path:
        spec = importlib.util.find_spec(self.PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("the animal silhouettes ship with the animal-shape-mnist package: pip install animal-shape-mnist")
        return Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal Shape"

    def load_arrays(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        images, labels = (_read_pinned_pickle(self.folder() / name, digest) for name, digest in self.FILES.items())
        x = _resize(torch.from_numpy(np.asarray(images, dtype=np.uint8)).float().unsqueeze(1) / 255.0, self.image_size, 1)
        y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        rows = _split_counts(len(y), self.val_size, self.test_size, self.train_size, self.seed)
        return {k: (x[r], y[r]) for k, r in rows.items()}


def _read_pinned_pickle(path: Path, sha256: str):
    """Unpickle a gzipped file only if its bytes are the release's (unpickling runs code)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ImportError(f"{path} is missing: reinstall animal-shape-mnist (pip install --force-reinstall animal-shape-mnist==0.39)") from None
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise ImportError(f"{path} is not the file of animal-shape-mnist 0.39 (sha256 differs): pip install animal-shape-mnist==0.39")
    return pickle.loads(gzip.decompress(raw))


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 from `root/cifar-10-batches-py` (data_batch_1..5, test_batch). Validation is
    carved out of the training batches (`val_size` images, drawn by `seed`; NB201's
    "cifar10-valid" protocol uses half of them, 25,000); test = the official test batch.
    Training batches get NB201's augmentation: random crop with 4-pixel padding, horizontal flip."""

    name = "cifar10"
    FOLDER = "cifar-10-batches-py"
    TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
    TEST_FILE = "test_batch"

    def __init__(self, root: str, batch_size: int = 256, seed: int = 0, val_size: int = 25_000, augment: bool = True, num_workers: int = 0):
        super().__init__(batch_size, seed, num_workers)
        self.root, self.val_size, self.augment = Path(root).expanduser(), val_size, augment

    def describe(self) -> dict:
        return {**super().describe(), "val_size": self.val_size, "augment": self.augment}

    def folder(self) -> Path:
        folder = self.root if self.root.name == self.FOLDER else self.root / self.FOLDER
        missing = [f for f in (*self.TRAIN_FILES, self.TEST_FILE) if not (folder / f).is_file()]
        if missing:
            raise MissingFileError(
                f"CIFAR-10 not found: {folder} lacks {', '.join(missing)}. Download the 'CIFAR-10 python version' "
                f"(cifar-10-python.tar.gz) from the dataset's website, extract it, and pass the folder that contains "
                f"{self.FOLDER}/ as `root` (nothing is downloaded automatically)."
            )
        return folder

    def load_arrays(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        folder = self.folder()
        train_x, train_y = _read_batches([folder / f for f in self.TRAIN_FILES])
        test_x, test_y = _read_batches([folder / self.TEST_FILE])
        if not 0 < self.val_size < len(train_y):
            raise ConfigError(f"val_size must be between 1 and {len(train_y) - 1}, got {self.val_size}")
        order = np.random.default_rng(self.seed).permutation(len(train_y))
        val, train = order[: self.val_size], order[self.val_size :]
        return {"train": (train_x[train], train_y[train]), "val": (train_x[val], train_y[val]), "test": (test_x, test_y)}

    def train_transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.augment:
            return x
        padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
        i, j = (int(v) for v in torch.randint(9, (2,), generator=generator))
        x = padded[:, i : i + x.shape[1], j : j + x.shape[2]]
        return x.flip(-1) if bool(torch.rand((), generator=generator) < 0.5) else x


def _read_batches(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for path in paths:
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="bytes")
            data, labels = entry[b"data"], entry[b"labels"]
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError) as e:
            raise ConfigError(f"{path} is not a CIFAR-10 python batch (a pickled dict with b'data' and b'labels'): {e}") from None
        xs.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(labels, dtype=np.int64))
    x = torch.from_numpy(np.concatenate(xs)).float() / 255.0
    return x, torch.from_numpy(np.concatenate(ys))


# --- the user's own images ------------------------------------------------------------------
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
FOLDER_SPLITS = ("train", "val", "test")


class ImageFolderDataModule(ImageDataModule):
    """The user's own images from a local folder, one subfolder per class (torchvision's ImageFolder
    layout: root/<class>/<image>), or split by hand (root/train|val|test/<class>/<image>); nothing is
    downloaded. Classes are the subfolder names in sorted order. Without train/val/test subfolders
    the images are split by `seed` (`val_fraction`, `test_fraction`), as the digits are. Images are
    read once with Pillow (which matplotlib brings), resized to `image_size` x `image_size`, made
    `channels` deep (1: grayscale, 3: RGB) and kept in memory: meant for the small data sets a search
    trains every candidate on."""

    def __init__(
        self,
        root: str,
        image_size: int = 32,
        channels: int = 3,
        batch_size: int = 64,
        seed: int = 0,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        num_workers: int = 0,
    ):
        super().__init__(batch_size, seed, num_workers)
        if channels not in (1, 3):
            raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        if image_size < 1:
            raise ConfigError(f"image_size must be >= 1, got {image_size}")
        _split_rows(10, val_fraction, test_fraction, seed)  # validate the fractions now
        self.root, self.image_size, self.channels = Path(root).expanduser(), image_size, channels
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.name = self.root.name
        self.classes = self._classes(self.root / "train" if self._presplit() else self.root)
        self.num_classes = len(self.classes)

    def describe(self) -> dict:
        return {**super().describe(), "root": str(self.root.resolve()), "image_size": self.image_size,
                "channels": self.channels, "val_fraction": self.val_fraction, "test_fraction": self.test_fraction}

    def _presplit(self) -> bool:
        return all((self.root / split).is_dir() for split in FOLDER_SPLITS)

    def _classes(self, folder: Path) -> list[str]:
        if not folder.is_dir():
            raise MissingFileError(f"image folder {folder} does not exist: give `root`, a folder with one subfolder per class")
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if len(classes) < 2:
            raise ConfigError(f"{folder} has {len(classes)} class subfolders; a classification task needs at least 2 "
                              "(root/<class>/<image>, or root/train|val|test/<class>/<image>)")
        return classes

    def _read(self, folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        images, labels = [], []
        for label, name in enumerate(self.classes):
            for path in sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in EXTENSIONS):
                with Image.open(path) as image:
                    image = image.convert("L" if self.channels == 1 else "RGB").resize((self.image_size, self.image_size))
                    array = np.asarray(image, dtype=np.float32) / 255.0
                images.append(array[None] if self.channels == 1 else array.transpose(2, 0, 1))
                labels.append(label)
        if not images:
            raise ConfigError(f"no images ({', '.join(EXTENSIONS)}) under {folder}")
        return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64)

    def load_arrays(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        if self._presplit():
            return {split: self._read(self.root / split) for split in FOLDER_SPLITS}
        x, y = self._read(self.root)
        rows = _split_rows(len(y), self.val_fraction, self.test_fraction, self.seed)
        return {k: (x[r], y[r]) for k, r in rows.items()}
