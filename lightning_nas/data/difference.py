"""Difference-of-architectures data for Delta-NAS (Sridhar & Chen): batches, the edit sampling of
Alg. 1, and pairs of labelled architectures for learning from benchmark labels.

`sample_edit_groups` (Alg. 1): draw an architecture a, take a neighbour a' that is k edits away,
and collect other pairs that realise the same edit (the difference encoding is many-to-one).
The proxy-labelled DoA dataset built on it is `lightning_nas.proxies.difference.DifferenceDataModule`.

`LabelledPairsDataModule`: the core labelled/held-out split of `ArchitectureDataModule`, served
as ordered pairs of labelled architectures with their real accuracy difference (the difference
predictor's training data at 1% / 10% labels), or as single architectures (the absolute twin).

Batches are `DifferenceBatch(x [B, D], y [B])`; labels are divided by their root mean square
(never shifted, so that a zero difference stays zero and antisymmetry is kept).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_nas.data.datamodule import ArchitectureDataModule
from lightning_nas.encodings.difference import (
    Edit,
    apply_edit,
    check_encoding,
    encode,
    encoding_size,
    pair_input,
    random_edit,
    reverse,
    sample_with_values,
)
from lightning_nas.spaces.base import Architecture, SearchSpace

#: what the predictor learns of the labelled architectures (`LabelledPairsDataModule`)
LABELS = ("value", "rank")
#: draws per wanted encoding before sampling gives up (small D^k spaces run out of new edits)
MAX_DRAWS_PER_ENCODING = 50


# --- batches ----------------------------------------------------------------------------------
@dataclass
class DifferenceBatch:
    """Encoded pairs (or single architectures) and their labels; `num_graphs` for the base logger."""

    x: torch.Tensor
    y: torch.Tensor

    @property
    def num_graphs(self) -> int:
        return int(self.x.shape[0])


def collate_differences(items: list[tuple[torch.Tensor, torch.Tensor]]) -> DifferenceBatch:
    xs, ys = zip(*items)
    return DifferenceBatch(torch.stack(xs), torch.stack(ys))


def difference_loader(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    dataset = TensorDataset(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        collate_fn=collate_differences,
    )


def rms(values: np.ndarray) -> float:
    """Root mean square, 1 for an empty or all-zero array (a label scale that never divides by 0)."""
    scale = float(np.sqrt(np.mean(np.square(values)))) if len(values) else 0.0
    return scale if scale > 0 else 1.0


# --- Alg. 1 -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EditGroup:
    """One difference encoding: the edit and the pairs (a, a') that realise it."""

    edit: Edit
    pairs: tuple[tuple[Architecture, Architecture], ...]


def _valid_pair(space: SearchSpace, a: Architecture, b: Architecture | None) -> bool:
    return b is not None and space.is_valid(a) and space.is_valid(b) and space.key(a) != space.key(b)


def sample_edit_groups(
    space: SearchSpace,
    k: int,
    num_encodings: int,
    samples_per_encoding: int,
    rng: np.random.Generator,
    admissible=None,
) -> list[EditGroup]:
    """Up to `num_encodings` distinct k-edits (an edit and its reverse count once), each with up to
    `samples_per_encoding` pairs: the first from Alg. 1 (a random architecture and its k-edit
    neighbour), the others the same edit applied to other random architectures that allow it.
    `admissible(a)` may exclude architectures (e.g. those missing from a benchmark table)."""
    if num_encodings < 1 or samples_per_encoding < 1:
        raise ValueError(
            f"num_encodings and samples_per_encoding must be >= 1, got {num_encodings} and {samples_per_encoding}"
        )
    ok = admissible or (lambda a: True)
    groups: list[EditGroup] = []
    seen: set[Edit] = set()
    for _ in range(num_encodings * MAX_DRAWS_PER_ENCODING):
        if len(groups) == num_encodings:
            break
        a = space.sample(rng)
        edit = random_edit(space, a, k, rng)
        b = apply_edit(space, a, edit)
        if edit in seen or not _valid_pair(space, a, b) or not (ok(a) and ok(b)):
            continue
        seen.update({edit, reverse(edit)})
        pairs = [(a, b)]
        old_values = {i: old for i, old, _ in edit}
        for _ in range((samples_per_encoding - 1) * MAX_DRAWS_PER_ENCODING):
            if len(pairs) == samples_per_encoding:
                break
            base = sample_with_values(space, old_values, rng)
            other = apply_edit(space, base, edit)
            if _valid_pair(space, base, other) and ok(base) and ok(other) and (base, other) not in pairs:
                pairs.append((base, other))
        groups.append(EditGroup(edit, tuple(pairs)))
    return groups


# --- real labels: pairs of labelled architectures -----------------------------------------------
def hamming(genotypes: np.ndarray) -> np.ndarray:
    """[N, N] genotype edit distances."""
    return (genotypes[:, None, :] != genotypes[None, :, :]).sum(-1)


def labelled_pairs(
    space: SearchSpace,
    archs: Sequence[Architecture],
    y: np.ndarray,
    encoding: str = "adjacency",
    max_edit: int | None = None,
    max_pairs: int | None = None,
    rng: np.random.Generator | None = None,
    context: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair (i -> j), i != j, of labelled architectures at most `max_edit` edits apart
    (None: any distance), as (predictor inputs `pair_input` [P, D or 2D], y[j] - y[i]); at most
    `max_pairs`, drawn with `rng`."""
    y = np.asarray(y, dtype=np.float64)
    if len(archs) < 2:
        return np.zeros((0, encoding_size(space, encoding) * (2 if context else 1)), np.float32), np.zeros(0)
    genotypes = np.array([a.genotype for a in archs])
    distance = hamming(genotypes)
    keep = distance > 0
    if max_edit is not None:
        keep &= distance <= max_edit
    i, j = np.nonzero(keep)
    if max_pairs is not None and len(i) > max_pairs:
        pick = np.sort((rng or np.random.default_rng(0)).choice(len(i), size=max_pairs, replace=False))
        i, j = i[pick], j[pick]
    enc = encode(space, archs, encoding)
    return pair_input(enc[i], enc[j], context), y[j] - y[i]


class LabelledPairsDataModule(ArchitectureDataModule):
    """The core split (`num_labelled` by `seed`) served for the difference predictor.

    mode "difference": train items are ordered pairs of labelled architectures (at most
    `max_pairs`, at most `max_edit` edits apart) labelled by the difference of their labels;
    validation items pair each of the first `max_val` held-out architectures with a labelled
    anchor (tau of predicted against real differences). mode "absolute": single architectures,
    encoded the same way, labelled by their labels (the absolute twin). `labels`: "value", the
    z-scored target; "rank", the z-scored rank among the labelled architectures (differences of
    ranks: a few very bad cells do not dominate the squared loss). `train_labels` holds them (the
    anchors' values when the predictor ranks). `context`: pair inputs carry the sum of the two
    encodings beside their difference (`pair_input`; the model needs the same `context`)."""

    def __init__(
        self,
        benchmark: str | list[str],
        target: str,
        num_labelled: float = 0.01,
        seed: int = 0,
        batch_size: int = 256,
        max_val: int = 2000,
        encoding: str = "adjacency",
        mode: str = "difference",
        max_edit: int | None = None,
        max_pairs: int | None = 200_000,
        labels: str = "value",
        context: bool = False,
    ):
        super().__init__(benchmark, target, num_labelled, seed, batch_size, max_val)
        self.save_hyperparameters()
        check_encoding(encoding)
        if mode not in ("difference", "absolute"):
            raise ValueError(f"mode must be 'difference' or 'absolute', got {mode!r}")
        if labels not in LABELS:
            raise ValueError(f"labels must be one of {', '.join(LABELS)}, got {labels!r}")

    def label(self, y: np.ndarray) -> np.ndarray:
        """Target values in the units the predictor learns (`labels`), relative to the labelled set."""
        if self.hparams.labels == "value":
            return (y - self.y_mean) / self.y_std
        ordered = np.sort(self.train_y)
        mid_rank = (np.searchsorted(ordered, y, "left") + np.searchsorted(ordered, y, "right")) / 2  # in [0, n]
        return (mid_rank / max(1, len(ordered)) - 0.5) * math.sqrt(12)  # a uniform quantile at unit variance

    def setup(self, stage: str | None = None) -> None:
        self.load()
        if hasattr(self, "train_x"):
            return
        hp, space = self.hparams, self.space
        rng = np.random.default_rng(hp.seed)
        train_archs, train_y = self.train_archs, self.train_y
        val_archs, val_y = self.archs(self.val_rows), self.y_all[self.val_rows]
        self.train_labels, val_labels = self.label(train_y), self.label(val_y)
        if hp.mode == "absolute":
            self.train_x, self.train_t = encode(space, train_archs, hp.encoding), self.train_labels
            self.val_x, self.val_t = encode(space, val_archs, hp.encoding), val_labels
            return
        self.train_x, self.train_t = labelled_pairs(space, train_archs, self.train_labels, hp.encoding, hp.max_edit,
                                                    hp.max_pairs, rng, hp.context)
        anchors = rng.integers(len(train_archs), size=len(val_archs)) if len(train_archs) else np.zeros(0, int)
        self.val_x = pair_input(encode(space, [train_archs[i] for i in anchors], hp.encoding),
                                encode(space, val_archs, hp.encoding), hp.context)
        self.val_t = val_labels - self.train_labels[anchors]

    def train_dataloader(self) -> DataLoader:
        if len(self.train_t) == 0:
            raise ValueError("no labelled pairs to train on: raise data.num_labelled or data.max_edit")
        return difference_loader(self.train_x, self.train_t, self.hparams.batch_size, True, self.hparams.seed)

    def val_dataloader(self) -> DataLoader:
        return difference_loader(self.val_x, self.val_t, self.hparams.batch_size, False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
