"""What an architecture's real network costs: parameters and FLOPs (counted) and inference latency
(measured on this machine), computed once per architecture and kept in the SQLite store.

Costs are not oracle queries: they need no training, so a search computes them for any candidate
(`lightning_nas.search.objectives`) without charging its budget. Every value is committed to the
`costs` table of the store (the live-training store's file may hold both), one row per (space,
architecture key, cost name, setting), where `setting` is the JSON of everything that changes the
value (input shape, classes, builder options, FLOPs convention; for latency also the device, its
name, the threads, the batch and the repeats). A resumed or repeated search reads the stored values:
a latency is measured once per setting, so reruns see the same number.
"""
from __future__ import annotations

import json
import platform
import statistics
import time
from typing import Any, Sequence

import numpy as np
import torch

from lightning_nas.errors import ConfigError
from lightning_nas.proxies.live import ResultStore
from lightning_nas.training import torch_threads
from lightning_nas.spaces.base import Architecture, SearchSpace
from lightning_nas.spaces.flops import CONVENTIONS, count_flops
from lightning_nas.spaces.layers import count_parameters

#: costs counted on the network, and their units: millions of parameters, MFLOPs of one input
COUNTED = ("params_m", "flops_m")
#: the measured cost: median milliseconds of one forward pass of a batch
MEASURED = "latency_ms"
COSTS = (*COUNTED, MEASURED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS costs (
    space TEXT NOT NULL,
    arch TEXT NOT NULL,
    name TEXT NOT NULL,
    setting TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (space, arch, name, setting)
)
"""


class CostStore(ResultStore):
    """The SQLite store (WAL) with a `costs` table beside the live evaluations."""

    def __init__(self, path: str):
        super().__init__(path)
        self.connection.execute(_SCHEMA)

    def load(self, space: str, name: str, setting: str) -> dict[str, float]:
        rows = self.connection.execute(
            "SELECT arch, value FROM costs WHERE space=? AND name=? AND setting=?", (space, name, setting))
        return {arch: float(value) for arch, value in rows}

    def put_many(self, space: str, name: str, setting: str, values: dict[str, float]) -> None:
        """Commit `values` (architecture key -> value) in one transaction; stored rows are kept."""
        with self.connection:
            self.connection.executemany(
                "INSERT OR IGNORE INTO costs VALUES (?, ?, ?, ?, ?)",
                [(space, arch, name, setting, float(v)) for arch, v in values.items()])


def device_name(device: str) -> str:
    """What the latency was measured on: the GPU's name, or the CPU's model and architecture."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return model


class NetworkCosts:
    """Costs of `space.network(a, num_classes, input_shape[0], **network)`, by name (`COSTS`).

    params_m counts the trainable parameters (every op of every cell, as the benchmarks' networks
    hold them); flops_m counts one input under `convention` (`lightning_nas.spaces.flops`, the
    benchmark's own: "naslib" for NB101 / NB201 / NB301 / TNB101); latency_ms is the median time of
    `repeats` forward passes of a batch of `batch_size` in eval mode on `device`, after `warmup`
    passes, with `threads` torch threads on a CPU: the network as it runs, dead cells skipped."""

    def __init__(
        self,
        space: SearchSpace,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        network: dict | None = None,
        convention: str = "naslib",
        store: str = "checkpoints/costs.sqlite",
        device: str = "cpu",
        batch_size: int = 1,
        warmup: int = 5,
        repeats: int = 20,
        threads: int | None = 1,
    ):
        space.require("network", by="costs computed from the network (params_m, flops_m, latency_ms)")
        space.check_network_options(network, "costs computed from the network")
        if convention not in CONVENTIONS:
            raise ConfigError(f"unknown FLOPs convention {convention!r}; known: {', '.join(CONVENTIONS)}")
        if len(input_shape) != 3:
            raise ConfigError(f"costs.input_shape must be [channels, height, width], got {list(input_shape)}")
        if min(batch_size, repeats) < 1 or warmup < 0:
            raise ConfigError(f"costs need batch_size >= 1, repeats >= 1 and warmup >= 0, got {batch_size}, "
                              f"{repeats} and {warmup}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"costs.device is {device!r}, but torch sees no GPU here: measure on `cpu`")
        self.space, self.input_shape, self.num_classes = space, tuple(int(d) for d in input_shape), num_classes
        self.network, self.convention, self.device = dict(network or {}), convention, device
        self.batch_size, self.warmup, self.repeats, self.threads = batch_size, warmup, repeats, threads
        self.store = CostStore(store)
        network_setting = {"input_shape": list(self.input_shape), "num_classes": num_classes, "network": self.network}
        self.settings = {
            "params_m": json.dumps(network_setting, sort_keys=True),
            "flops_m": json.dumps({**network_setting, "convention": convention}, sort_keys=True),
            MEASURED: json.dumps({**network_setting, "device": device, "device_name": device_name(device),
                                  "threads": threads, "batch_size": batch_size, "warmup": warmup,
                                  "repeats": repeats, "torch": torch.__version__.split("+")[0]}, sort_keys=True),
        }
        self.values: dict[str, dict[str, float]] = {name: {} for name in COSTS}  # read from the store on first use
        self._loaded: set[str] = set()
        self.computed = {name: 0 for name in COSTS}
        self.seconds = {name: 0.0 for name in COSTS}

    def __call__(self, name: str, archs: Sequence[Architecture]) -> np.ndarray:
        """The cost `name` of each architecture; missing ones are computed and committed at once."""
        if name not in COSTS:
            raise ConfigError(f"unknown cost {name!r}; known: {', '.join(COSTS)}")
        known = self._known(name)
        keys = [self.space.key(a) for a in archs]
        missing = list({k: a for k, a in zip(keys, archs) if k not in known}.values())
        if missing:
            for fresh_name, fresh in self._compute(name, missing).items():
                self.store.put_many(self.space.name, fresh_name, self.settings[fresh_name], fresh)
                self._known(fresh_name).update(fresh)
        return np.array([known[k] for k in keys], dtype=np.float64)

    def _known(self, name: str) -> dict[str, float]:
        if name not in self._loaded:
            self.values[name].update(self.store.load(self.space.name, name, self.settings[name]))
            self._loaded.add(name)
        return self.values[name]

    def _compute(self, name: str, archs: list[Architecture]) -> dict[str, dict[str, float]]:
        """New values by cost name: latency alone, or both counted costs (one network build)."""
        names = [MEASURED] if name == MEASURED else list(COUNTED)
        out: dict[str, dict[str, float]] = {n: {} for n in names}
        for a in archs:
            start = time.perf_counter()
            network, key = self._build(a), self.space.key(a)
            if name == MEASURED:
                out[MEASURED][key] = self._latency(network)
            else:
                out["params_m"][key] = count_parameters(network) / 1e6
                out["flops_m"][key] = count_flops(network, self.input_shape, self.convention)
            self.computed[name] += 1
            self.seconds[name] += time.perf_counter() - start
        return out

    def _build(self, a: Architecture) -> torch.nn.Module:
        """The network, initialised under a fixed seed (the caller's torch RNG stream is untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return self.space.network(a, self.num_classes, self.input_shape[0], **self.network)

    @torch.no_grad()
    def _latency(self, network: torch.nn.Module) -> float:
        network = network.eval().to(self.device)
        x = torch.zeros(self.batch_size, *self.input_shape, device=self.device)
        cuda = self.device.startswith("cuda")
        times = []
        with torch_threads(self.threads if not cuda else None):
            for i in range(self.warmup + self.repeats):
                if cuda:
                    torch.cuda.synchronize(self.device)
                start = time.perf_counter()
                network(x)
                if cuda:
                    torch.cuda.synchronize(self.device)
                if i >= self.warmup:
                    times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times)

    def describe(self) -> dict[str, Any]:
        """The settings of each cost (what a search's results record)."""
        return {k: json.loads(v) for k, v in self.settings.items()}

    def work(self) -> dict[str, Any]:
        """What this process computed (values read from the store excluded) and how long it took."""
        return {"store": str(self.store.path), "computed": dict(self.computed),
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}
