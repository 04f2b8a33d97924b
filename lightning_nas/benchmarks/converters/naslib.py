"""NASLib pickles: ``nb201_<dataset>_full_training.pickle`` and ``nasbench_only108.pkl``.

NB201: ``data[arch_str][dataset]`` holds per-epoch lists; its single evaluation series ``eval_acc1es``
(NASLib answers both its validation and its test queries from it) is stored as ``<prefix>_valid_acc``,
``train_acc1es`` as ``<prefix>_train_acc``, and ``cost_info`` as ``<prefix>_train_time_s`` /
``_flops_m`` / ``_params_m`` / ``_latency_s``. NB101: the columns of `converters.nb101`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.benchmarks.converters.common import (
    NB101_HASH,
    ConversionError,
    PathLike,
    columns_to_benchmark,
    file_stem,
    require_trust,
    unpickle,
)
from lightning_nas.benchmarks.converters.nb101 import HASH_SAMPLES, NB101Accumulator, check_nb101_hashes
from lightning_nas.benchmarks.converters.nb201 import NB201_PREFIX
from lightning_nas.spaces.base import InvalidArchitectureError, get_space


def convert_naslib_nb201(path: PathLike, trust_pickle: bool = False) -> Benchmark:
    """NASLib ``nb201_{cifar10,cifar100,ImageNet16}_full_training.pickle``."""
    path = Path(path)
    require_trust(path, trust_pickle, "NASLib NAS-Bench-201 pickle")
    return _naslib_nb201(path, unpickle(path))


def _naslib_nb201(path: Path, data: Any) -> Benchmark:
    if not isinstance(data, dict) or not data:
        raise ConversionError(f"{path} is not a NASLib NAS-Bench-201 pickle: expected {{arch string: results}}")
    nb201 = get_space("nb201")
    records = {}
    for n, (arch, per_dataset) in enumerate(data.items()):
        try:
            nb201.from_string(arch)
        except InvalidArchitectureError as e:
            raise ConversionError(f"{path}: entry {n} has a malformed architecture: {e}") from None
        try:
            records[arch] = _naslib_nb201_columns(per_dataset)
        except (KeyError, TypeError, IndexError, AttributeError) as e:
            raise ConversionError(f"{path}: entry {arch} does not have NASLib's layout ({type(e).__name__}: {e})") from None
    provenance = f"NASLib pickle {path.name}: last epoch of the 200-epoch curves"
    return columns_to_benchmark("nb201", records, provenance, file_stem(path))


def _naslib_nb201_columns(per_dataset: dict) -> dict[str, float]:
    out = {}
    for dataset, results in per_dataset.items():
        prefix = NB201_PREFIX.get(dataset)
        if prefix is None:
            continue
        for column, field in (("valid_acc", "eval_acc1es"), ("train_acc", "train_acc1es")):
            if results.get(field):
                out[f"{prefix}_{column}"] = float(results[field][-1])
        costs = results.get("cost_info") or {}
        for column, field in (("train_time_s", "train_time"), ("flops_m", "flops"), ("params_m", "params"),
                              ("latency_s", "latency")):
            if costs.get(field) is not None:
                out[f"{prefix}_{column}"] = float(costs[field])
    return out


def convert_naslib_nb101(path: PathLike, trust_pickle: bool = False) -> Benchmark:
    """NASLib ``nasbench_only108.pkl``: {hash: (fixed stats, {epochs: [repeat metrics dicts]})}."""
    path = Path(path)
    require_trust(path, trust_pickle, "NASLib NAS-Bench-101 pickle")
    return _naslib_nb101(path, unpickle(path))


def _naslib_nb101(path: Path, data: Any) -> Benchmark:
    if not isinstance(data, dict) or not data:
        raise ConversionError(f"{path} is not a NASLib NAS-Bench-101 pickle: expected {{module hash: stats}}")
    acc = NB101Accumulator()
    for module_hash, stats in data.items():
        if not isinstance(module_hash, str) or not NB101_HASH.match(module_hash):
            raise ConversionError(f"{path}: malformed module hash {module_hash!r}")
        try:
            fixed, computed = stats
            for epochs, repeats in computed.items():
                for run in repeats:
                    final = {field: run[f"final_{field}"] for field in
                             ("training_time", "train_accuracy", "validation_accuracy", "test_accuracy")}
                    acc.add(module_hash, epochs, final, fixed.get("trainable_parameters"))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConversionError(f"{path}: entry {module_hash} does not have NASLib's layout ({type(e).__name__}: {e})") from None
        if len(acc.samples) < HASH_SAMPLES:
            acc.samples.append((module_hash, fixed["module_adjacency"], fixed["module_operations"]))
    check_nb101_hashes(path, acc.samples)
    return acc.benchmark(f"NASLib pickle {path.name}: mean over repeats, final evaluation", file_stem(path))


def convert_naslib_pickle(path: PathLike, trust_pickle: bool = False) -> Benchmark:
    """Either NASLib pickle, told apart by its keys (arch strings vs module hashes)."""
    path = Path(path)
    require_trust(path, trust_pickle, "NASLib pickle")
    data = unpickle(path)
    first = next(iter(data), None) if isinstance(data, dict) else None
    if isinstance(first, str) and NB101_HASH.match(first):
        return _naslib_nb101(path, data)
    return _naslib_nb201(path, data)
