"""The difference-of-architectures (DoA) dataset of Delta-NAS (Sridhar & Chen, Alg. 1), labelled by
a zero-cost proxy.

Draw an architecture a, take a neighbour a' that is k edits away, encode the pair by
`encode(a') - encode(a)` and label it with the difference of a zero-cost proxy (default
Zen-score). The difference encoding is many-to-one (with the adjacency encoding it depends only on
the edit), so each sampled encoding is labelled by the mean proxy difference over
`samples_per_encoding` pairs that realise the same edit on different architectures (paper: n = 4).
Proxy values come from `lightning_nas.proxies.cache.ProxyCache` (computed once per architecture,
kept in a JSON file), so reruns and other k reuse them. With `benchmark` + `target` the labels are
real benchmark differences instead (free; for the k study and the comparisons).

It lives with the proxies because it computes them; the edit sampling and the batches it serves
are `lightning_nas.data.difference`'s.
"""
from __future__ import annotations

import math
from typing import Sequence

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from lightning_nas.data.difference import EditGroup, difference_loader, rms, sample_edit_groups
from lightning_nas.encodings.difference import check_encoding, differences, encode, pair_input
from lightning_nas.proxies.cache import ProxyCache
from lightning_nas.proxies.zero_cost import DATA_FREE, check_proxy
from lightning_nas.spaces.base import Architecture, SearchSpace, get_space


class DifferenceDataModule(L.LightningDataModule):
    """The DoA dataset (Alg. 1) over one search space, split by encoding into train / validation.

    `proxy` labels by default; `benchmark` + `target` label by real table differences instead.
    `context`: every pair is an item, its input `pair_input(a, b, context=True)` (the pairs of one
    edit differ in what they share, so their differences are not averaged); the model needs the same
    `context`. `test_dataloader` serves the validation encodings (there is no third split)."""

    def __init__(
        self,
        space: str = "nb201",
        k: int = 1,
        num_encodings: int = 60,
        samples_per_encoding: int = 4,
        encoding: str = "adjacency",
        proxy: str = "zen",
        proxy_batch_size: int = 8,
        proxy_seed: int = 0,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        num_classes: int = 10,
        network: dict | None = None,
        cache_dir: str | None = "checkpoints/proxy_cache",
        images: L.LightningDataModule | None = None,
        benchmark: str | list[str] | None = None,
        target: str | None = None,
        val_fraction: float = 0.2,
        seed: int = 0,
        batch_size: int = 32,
        context: bool = False,
    ):
        """`images`: an image datamodule (lightning_nas.data.images) for proxies that read real data
        (snip, grad_norm, fisher, nwot, jacov, grasp); the data-free ones (zen, synflow, params, flops)
        run on Gaussian inputs of `input_shape`."""
        super().__init__()
        check_encoding(encoding)
        if (benchmark is None) != (target is None):
            raise ValueError("real-label mode needs both `benchmark` and `target` (or neither, for proxy labels)")
        if benchmark is None:
            check_proxy(proxy)
            labels_by = f"Delta-NAS's proxy-labelled fit (the proxy {proxy!r} of each architecture's network)"
            get_space(space).require("network", by=labels_by)
            get_space(space).check_network_options(network, labels_by)
            if proxy not in DATA_FREE and images is None:
                raise ValueError(
                    f"the proxy {proxy!r} reads real images: give `images:` (e.g. lightning_nas.data.images."
                    f"DigitsDataModule) or choose a data-free proxy ({', '.join(sorted(DATA_FREE))})"
                )
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.save_hyperparameters(ignore=["images"])
        self.images = images
        self.groups: list[EditGroup] | None = None

    @property
    def space(self) -> SearchSpace:
        return get_space(self.hparams.space)

    def _labeller(self):
        """(value function over architectures, admissible filter) for the chosen label source."""
        hp = self.hparams
        if hp.benchmark is not None:
            from lightning_nas.benchmarks.archive import Benchmark

            bench = Benchmark.load(hp.benchmark)
            if bench.space.name != hp.space:
                raise ValueError(f"benchmark {hp.benchmark} is a {bench.space.name} table, but space is {hp.space!r}")
            column = bench.column(hp.target)

            def table(archs: Sequence[Architecture]) -> np.ndarray:
                return np.array([column[bench.row(a)] for a in archs], dtype=np.float64)

            return table, lambda a: bench.row(a) is not None and not math.isnan(column[bench.row(a)])
        self.proxy_cache = ProxyCache(
            self.space, hp.proxy, hp.cache_dir, hp.proxy_batch_size, hp.proxy_seed,
            tuple(hp.input_shape), hp.num_classes, hp.network, self.images,
        )
        return self.proxy_cache, None

    def setup(self, stage: str | None = None) -> None:
        if self.groups is not None:
            return
        hp = self.hparams
        space = self.space
        values, admissible = self._labeller()
        rng = np.random.default_rng(hp.seed)
        self.groups = sample_edit_groups(space, hp.k, hp.num_encodings, hp.samples_per_encoding, rng, admissible)
        if not self.groups:
            raise ValueError(f"no valid {hp.k}-edit pairs could be drawn in the {hp.space} space")
        self.groups, self.pair_deltas = self._label(self.groups, values)
        if not self.groups:
            raise ValueError(f"the {hp.proxy} proxy is undefined on every sampled pair; choose another proxy")
        if hp.context:
            pairs = [pair for g in self.groups for pair in g.pairs]
            self.x = pair_input(encode(space, [a for a, _ in pairs], hp.encoding),
                                encode(space, [b for _, b in pairs], hp.encoding), context=True)
            self.labels = np.concatenate(self.pair_deltas)
            group_of = np.repeat(np.arange(len(self.groups)), [len(g.pairs) for g in self.groups])
        else:
            self.labels = np.array([d.mean() for d in self.pair_deltas])
            # Alg. 1: the encoding of an item is the difference of its first pair
            firsts = [g.pairs[0] for g in self.groups]
            self.x = differences(space, [a for a, _ in firsts], [b for _, b in firsts], hp.encoding)
            group_of = np.arange(len(self.groups))
        order = rng.permutation(len(self.groups))
        n_val = int(round(hp.val_fraction * len(order))) if len(order) > 1 else 0
        validation = np.isin(group_of, order[:n_val])
        self.val_idx, self.train_idx = np.flatnonzero(validation), np.flatnonzero(~validation)
        self.label_scale = rms(self.labels[self.train_idx])

    @staticmethod
    def _label(groups: list[EditGroup], values) -> tuple[list[EditGroup], list[np.ndarray]]:
        """Value differences per pair; pairs with a non-finite value (a proxy undefined on a
        cell whose output ignores its input) are left out, and so are groups left empty."""
        bases = [a for g in groups for a, _ in g.pairs]
        others = [b for g in groups for _, b in g.pairs]
        v = values(bases + others)
        with np.errstate(invalid="ignore"):  # -inf - -inf: both proxies undefined
            deltas = np.split(v[len(bases) :] - v[: len(bases)], np.cumsum([len(g.pairs) for g in groups])[:-1])
        kept_groups, kept_deltas = [], []
        for g, d in zip(groups, deltas):
            finite = np.isfinite(d)
            if finite.any():
                pairs = tuple(p for p, f in zip(g.pairs, finite) if f)
                kept_groups.append(EditGroup(g.edit, pairs))
                kept_deltas.append(d[finite])
        return kept_groups, kept_deltas

    # --- loaders ---------------------------------------------------------------------------
    def _loader(self, idx: np.ndarray, shuffle: bool) -> DataLoader:
        return difference_loader(self.x[idx], self.labels[idx] / self.label_scale, self.hparams.batch_size, shuffle, self.hparams.seed)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_idx, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_idx, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_idx, shuffle=False)
