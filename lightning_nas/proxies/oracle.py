"""Zero-cost proxies as an `Oracle` (the search's fitness) and as a `Surrogate` (a strategy's scorer)."""
from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np
import torch

from lightning_nas.benchmarks.oracle import Evaluation, Oracle
from lightning_nas.data.images import ImageDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.proxies.zero_cost import DATA_FREE, ProxyBatch, check_proxy, score_proxies
from lightning_nas.spaces.base import Architecture, SpaceRef, get_space


def _space(space: SpaceRef, by: str):
    """The space, refused up front when it cannot build the networks the proxies score."""
    resolved = get_space(space)
    resolved.require("network", by=by)
    return resolved


def check_proxies(proxies: Sequence[str], datamodule: ImageDataModule | None) -> None:
    """Every proxy is known, and those that read real data have a `datamodule` to read."""
    for name in proxies:
        check_proxy(name)
    needs_data = sorted(set(proxies) - DATA_FREE)
    if datamodule is None and needs_data:
        raise ConfigError(
            f"the proxies {', '.join(needs_data)} read a batch of real data: give `datamodule:` "
            f"(e.g. lightning_nas.data.images.DigitsDataModule); only {', '.join(sorted(DATA_FREE))} are data-free"
        )


def proxy_batch(
    proxies: Sequence[str],
    datamodule: ImageDataModule | None,
    batch_size: int,
    seed: int,
    input_shape: Sequence[int],
    num_classes: int,
) -> tuple[ProxyBatch, int]:
    """The batch the proxies read, and the number of classes: a real batch from `datamodule`
    (drawn by `seed`), or, when every proxy is data-free, Gaussian noise of `input_shape`."""
    check_proxies(proxies, datamodule)
    if datamodule is not None:
        x, y = datamodule.sample_batch(batch_size, seed)
        return ProxyBatch(x, y), datamodule.num_classes
    return ProxyBatch.gaussian(input_shape, batch_size, num_classes, seed), num_classes


class ProxyOracle(Oracle):
    """Scores an architecture by one zero-cost proxy of its benchmark network (higher = better).

    `report` names further proxies to record beside it; `network` passes builder options (e.g.
    NB201 `channels`); `cost` of an evaluation is its wall time in seconds."""

    shard_evaluations = True

    def __init__(
        self,
        space: str | dict[str, Any],
        proxy: str = "nwot",
        datamodule: ImageDataModule | None = None,
        batch_size: int = 64,
        seed: int = 0,
        report: Sequence[str] = (),
        budget: int | None = None,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        network: dict | None = None,
    ):
        super().__init__(_space(space, "the zero-cost proxy oracle (ProxyOracle)"), budget)
        self.proxy, self.report_proxies = proxy, [p for p in report if p != proxy]
        self.seed, self.network = seed, dict(network or {})
        self.space.check_network_options(self.network, "the zero-cost proxy oracle (ProxyOracle)")
        self.batch, self.num_classes = proxy_batch(
            [proxy, *self.report_proxies], datamodule, batch_size, seed, input_shape, num_classes
        )

    def _evaluate(self, a: Architecture) -> Evaluation:
        start = time.perf_counter()
        scores, _ = score_proxies(a, [self.proxy, *self.report_proxies], self.batch, self.seed, self.num_classes, self.network)
        return Evaluation(score=scores[self.proxy], report=scores, cost=time.perf_counter() - start)


def signed_log(x: float) -> float:
    """A monotone squashing that keeps order: proxies such as synflow reach 1e50."""
    return math.copysign(math.log1p(abs(x)), x)


class ProxySurrogate:
    """A zero-cost proxy behind the `Surrogate` protocol (`lightning_nas.search.surrogate`), so
    strategies that score many candidates (EDNAG's fitness, Delta-NAS's neighbour choice) can use it
    instead of a trained predictor; the search runner builds it from the search's config.

    Scores are `signed_log` of the proxy (same order, bounded scale) unless `log_scale=False`,
    and are cached by benchmark key. `seed` (network initialisation, Gaussian batch) None: drawn from
    the search's RNG when the search starts (`setup`). A proxy learns nothing: labels are ignored."""

    def __init__(
        self,
        space: str | dict[str, Any],
        proxy: str = "nwot",
        datamodule: ImageDataModule | None = None,
        batch_size: int = 64,
        seed: int | None = 0,
        log_scale: bool = True,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        network: dict | None = None,
    ):
        check_proxies([proxy], datamodule)
        self.space = _space(space, "the zero-cost proxy surrogate (ProxySurrogate)")
        self.proxy, self.fixed_seed, self.log_scale = proxy, seed, log_scale
        self.datamodule, self.batch_size, self.input_shape = datamodule, batch_size, tuple(input_shape)
        self.network, self.num_classes = dict(network or {}), num_classes
        self.space.check_network_options(self.network, "the zero-cost proxy surrogate (ProxySurrogate)")
        self.cache: dict[str, float] = {}
        if seed is not None:
            self._prepare(seed)

    def _prepare(self, seed: int) -> None:
        self.seed = seed
        self.batch, self.num_classes = proxy_batch([self.proxy], self.datamodule, self.batch_size, seed,
                                                   self.input_shape, self.num_classes)

    def setup(self, rng: np.random.Generator) -> None:
        if self.fixed_seed is None:
            self._prepare(int(rng.integers(2**31)))

    def score(self, archs: Sequence[Architecture]) -> torch.Tensor:
        values = []
        for a in archs:
            key = self.space.key(a)
            if key not in self.cache:
                scores, _ = score_proxies(a, [self.proxy], self.batch, self.seed, self.num_classes, self.network)
                self.cache[key] = scores[self.proxy]
            values.append(signed_log(self.cache[key]) if self.log_scale else self.cache[key])
        return torch.tensor(values, dtype=torch.float64)

    def update(self, archs: Sequence[Architecture], y: Sequence[float]) -> None:
        pass

    def record(self, archs: Sequence[Architecture], y: Sequence[float]) -> None:
        pass

    def state_dict(self) -> dict:
        return {}  # a resumed search draws the same seed again, and the cache refills alike

    def load_state_dict(self, state: dict) -> None:
        pass
