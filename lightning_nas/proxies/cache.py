"""Zero-cost proxy values, computed once per architecture and kept in a JSON file (the labels of
the Delta-NAS difference dataset, `lightning_nas.proxies.difference.DifferenceDataModule`)."""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from lightning_nas.errors import ConfigError
from lightning_nas.io import atomic_write
from lightning_nas.proxies.oracle import proxy_batch
from lightning_nas.proxies.zero_cost import score_architecture
from lightning_nas.spaces.base import Architecture, SearchSpace

#: proxies already on a log scale; every other proxy spans orders of magnitude and is signed-logged
LOG_DOMAIN_PROXIES = frozenset({"zen", "nwot", "jacov"})


class ProxyCache:
    """Zero-cost proxy values by benchmark key, kept in a JSON file named after the settings.

    Values are computed with `lightning_nas.proxies.zero_cost.score_architecture` on the
    benchmark's network (a fresh initialisation under `seed`), then put on a log scale unless the
    proxy already is one (Zen, NASWOT, Jacov are logs; synflow or params span many decades)."""

    def __init__(
        self,
        space: SearchSpace,
        proxy: str = "zen",
        cache_dir: str | None = "checkpoints/proxy_cache",
        batch_size: int = 8,
        seed: int = 0,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        network: dict | None = None,
        images=None,
    ):
        self.space, self.proxy, self.seed = space, proxy, seed
        self.network = dict(network or {})
        self.batch, self.num_classes = proxy_batch([proxy], images, batch_size, seed, input_shape, num_classes)
        self.settings = {
            "space": space.name, "proxy": proxy, "batch_size": batch_size, "seed": seed,
            "input_shape": list(self.batch.input_shape), "num_classes": self.num_classes, "network": self.network,
            "images": type(images).__name__ if images is not None else "gaussian",
        }
        digest = hashlib.sha1(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:10]
        self.path = Path(cache_dir) / f"{space.name}_{proxy}_{digest}.json" if cache_dir else None
        self.values: dict[str, float] = self._read()
        self.computed = 0
        self.seconds = 0.0

    def _read(self) -> dict[str, float]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            stored = json.loads(self.path.read_text())
        except json.JSONDecodeError:
            raise ConfigError(f"proxy cache {self.path} is not valid JSON; delete it to recompute") from None
        if stored.get("settings") != self.settings:
            raise ConfigError(f"proxy cache {self.path} was written with other settings; delete it to recompute")
        return {k: float(v) for k, v in stored["values"].items()}

    def save(self) -> None:
        if self.path is None:
            return
        merged = {**self._read(), **self.values}  # keep what another run added meanwhile
        atomic_write(self.path, json.dumps({"settings": self.settings, "values": merged}))
        self.values = merged

    def __call__(self, archs: Sequence[Architecture], save_every: int = 100) -> np.ndarray:
        out = np.empty(len(archs), dtype=np.float64)
        fresh = 0
        for i, a in enumerate(archs):
            key = self.space.key(a)
            if key not in self.values:
                start = time.perf_counter()
                raw = score_architecture(a, self.proxy, self.batch, self.seed, self.num_classes, self.network)
                self.seconds += time.perf_counter() - start
                self.values[key] = self._scale(raw)
                fresh += 1
                if fresh % save_every == 0:
                    self.save()
            out[i] = self.values[key]
        self.computed += fresh
        if fresh:
            self.save()
        return out

    def _scale(self, raw: float) -> float:
        # a non-finite value is kept (JSON writes it as -Infinity / NaN): Zen is log 0 on a cell
        # whose output ignores the input; `DifferenceDataModule` leaves such pairs out
        if not math.isfinite(raw) or self.proxy in LOG_DOMAIN_PROXIES:
            return raw
        return math.copysign(math.log1p(abs(raw)), raw)
