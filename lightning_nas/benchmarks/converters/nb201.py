"""NAS-Bench-201 (``.pth`` v1_0/v1_1) and NATS-Bench topology (``tss`` file or directory).

Values are the mean over the training seeds after the last epoch (``iepoch = epochs-1``), accuracies
in percent. The 200-epoch results (NB201 ``full``, NATS ``hp='200'``) get plain names, the 12-epoch
results (NB201 ``less``, NATS ``hp='12'``) the suffix ``@nb201_12ep``; so a converted archive answers
the same column names as ``[nb201_200ep.csv.gz, nb201_12ep.csv.gz]``.

====================== ================ ============================================
column                 official dataset official set (``eval_acc1es`` key prefix)
====================== ================ ============================================
cifar10_valid_train_acc cifar10-valid   train (``train_acc1es``)
cifar10_valid_valid_acc cifar10-valid   x-valid
cifar10_valid_acc       cifar10-valid   x-valid (the 12-epoch table's name for it)
cifar10_valid_test_acc  cifar10-valid   ori-test
cifar10_train_acc       cifar10         train
cifar10_test_acc        cifar10         ori-test
cifar100_train_acc      cifar100        train
cifar100_valid_acc      cifar100        x-valid
cifar100_test_acc       cifar100        x-test
imagenet16_train_acc    ImageNet16-120  train
imagenet16_valid_acc    ImageNet16-120  x-valid
imagenet16_test_acc     ImageNet16-120  x-test
<prefix>_train_time_s   any             sum of ``train_times`` over all epochs
<prefix>_flops_m, <prefix>_params_m, <prefix>_latency_s   cost info (200-epoch results only)
====================== ================ ============================================

``<prefix>`` is ``cifar10_valid``, ``cifar10``, ``cifar100`` or ``imagenet16``. Columns without a
single value in the file (e.g. NB201 v1_0 ``less`` has only cifar10-valid) are left out.
"""
from __future__ import annotations

import bz2
import pickle
import re
from pathlib import Path
from typing import Any, Iterable

from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.benchmarks.converters.common import (
    ConversionError,
    PathLike,
    columns_to_benchmark,
    file_stem,
    mean_or_none,
    require_trust,
    unpickle,
)
from lightning_nas.spaces.base import InvalidArchitectureError, get_space

NB201_PREFIX = {"cifar10-valid": "cifar10_valid", "cifar10": "cifar10", "cifar100": "cifar100",
                 "ImageNet16-120": "imagenet16"}
NB201_ACCURACY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("cifar10_valid_train_acc", "cifar10-valid", "train"),
    ("cifar10_valid_valid_acc", "cifar10-valid", "x-valid"),
    ("cifar10_valid_acc", "cifar10-valid", "x-valid"),
    ("cifar10_valid_test_acc", "cifar10-valid", "ori-test"),
    ("cifar10_train_acc", "cifar10", "train"),
    ("cifar10_test_acc", "cifar10", "ori-test"),
    ("cifar100_train_acc", "cifar100", "train"),
    ("cifar100_valid_acc", "cifar100", "x-valid"),
    ("cifar100_test_acc", "cifar100", "x-test"),
    ("imagenet16_train_acc", "ImageNet16-120", "train"),
    ("imagenet16_valid_acc", "ImageNet16-120", "x-valid"),
    ("imagenet16_test_acc", "ImageNet16-120", "x-test"),
)
#: training schedule key in the file -> column suffix ('less'/'full' are NB201's names for 12/200)
NB201_HP_SUFFIX = {"200": "", "full": "", "12": "@nb201_12ep", "less": "@nb201_12ep"}


def nb201_arch_columns(hp2results: dict[str, dict]) -> dict[str, float]:
    """Columns of one architecture from its {schedule: ArchResults state dict} (see module doc)."""
    out: dict[str, float] = {}
    for hp, state in hp2results.items():
        suffix = NB201_HP_SUFFIX.get(str(hp), f"@nb201_{hp}ep")
        runs = _runs_by_dataset(state)
        for column, dataset, setname in NB201_ACCURACY_COLUMNS:
            value = mean_or_none(_final_accuracy(run, setname) for run in runs.get(dataset, []))
            if value is not None:
                out[column + suffix] = value
        for dataset, dataset_runs in runs.items():
            prefix = NB201_PREFIX.get(dataset)
            if prefix is None:
                continue
            value = mean_or_none(_total_train_time(run) for run in dataset_runs)
            if value is not None:
                out[f"{prefix}_train_time_s{suffix}"] = value
            if suffix == "":
                out.update(_nb201_costs(prefix, dataset_runs))
    return out


def _runs_by_dataset(state: dict) -> dict[str, list[dict]]:
    results = state["all_results"]
    return {
        dataset: [results[(dataset, seed)] for seed in seeds]
        for dataset, seeds in state["dataset_seed"].items()
    }


def _final_accuracy(run: dict, setname: str) -> float | None:
    last = int(run["epochs"]) - 1
    if setname == "train":
        accs = run.get("train_acc1es")
        return None if accs is None else accs[last]
    return (run.get("eval_acc1es") or {}).get(f"{setname}@{last}")


def _total_train_time(run: dict) -> float | None:
    times = run.get("train_times")
    if not times:
        return None
    return float(sum(times.values() if isinstance(times, dict) else times))


def _nb201_costs(prefix: str, runs: list[dict]) -> dict[str, float]:
    out = {}
    for column, field in (("flops_m", "flop"), ("params_m", "params")):
        value = mean_or_none(run.get(field) for run in runs)
        if value is not None:
            out[f"{prefix}_{column}"] = value
    latencies = [sum(r["latency"]) / len(r["latency"]) for r in runs if r.get("latency")]
    latency = mean_or_none(v for v in latencies if v > 0)
    if latency is not None:
        out[f"{prefix}_latency_s"] = latency
    return out


def _nb201_from_dict(path: Path, data: Any, kind: str) -> Benchmark:
    if not isinstance(data, dict) or not {"meta_archs", "arch2infos"} <= set(data):
        raise ConversionError(f"{path} is not a {kind} file: expected a dict with 'meta_archs' and 'arch2infos'")
    meta_archs = list(data["meta_archs"])
    infos = data["arch2infos"]
    return _nb201_benchmark(path, meta_archs, ((i, infos[i]) for i in sorted(infos)), kind)


def _nb201_benchmark(path: Path, meta_archs: list[str], indexed: Iterable[tuple[int, dict]], kind: str) -> Benchmark:
    nb201 = get_space("nb201")
    records: dict[str, dict[str, float]] = {}
    for index, hp2results in indexed:
        if not 0 <= int(index) < len(meta_archs):
            raise ConversionError(f"{path}: architecture index {index} is outside meta_archs (size {len(meta_archs)})")
        key = meta_archs[int(index)]
        try:
            nb201.from_string(key)
        except InvalidArchitectureError as e:
            raise ConversionError(f"{path}: architecture {index} is malformed: {e}") from None
        try:
            records[key] = nb201_arch_columns(hp2results)
        except (KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
            raise ConversionError(
                f"{path}: results of architecture {index} do not have the {kind} layout ({type(e).__name__}: {e})"
            ) from None
    provenance = f"{kind} {path.name}: mean over seeds after the last epoch; 200 epochs plain, 12 epochs @nb201_12ep"
    return columns_to_benchmark("nb201", records, provenance, file_stem(path))


def convert_nb201_pth(path: PathLike, trust_pickle: bool = False) -> Benchmark:
    """NAS-Bench-201 v1_0 / v1_1 ``.pth`` (a torch-saved dict: meta_archs, arch2infos{less, full})."""
    path = Path(path)
    require_trust(path, trust_pickle, "NAS-Bench-201 .pth file")
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, OSError, ValueError) as e:
        raise ConversionError(f"{path} is truncated or not a torch-saved file ({type(e).__name__}: {e})") from None
    return _nb201_from_dict(path, data, "NAS-Bench-201 .pth")


def convert_nats_tss(path: PathLike, trust_pickle: bool = False) -> Benchmark:
    """NATS-Bench topology: the ``NATS-tss-v1_0-3ffb9-simple`` directory of per-architecture
    ``.pickle.pbz2`` files (plus ``meta.pickle.pbz2``), or the single ``.pickle.pbz2`` file."""
    path = Path(path)
    require_trust(path, trust_pickle, "NATS-Bench topology pickle")
    if path.is_file():
        return _nb201_from_dict(path, unpickle(path, bz2.open), "NATS-Bench topology")
    meta_file = path / "meta.pickle.pbz2"
    if not meta_file.is_file():
        raise ConversionError(f"{path} is not a NATS-Bench topology directory: meta.pickle.pbz2 is missing")
    meta = unpickle(meta_file, bz2.open)
    if not isinstance(meta, dict) or "meta_archs" not in meta:
        raise ConversionError(f"{meta_file} does not hold 'meta_archs'")
    files = sorted(p for p in path.iterdir() if re.fullmatch(r"\d+\.pickle\.pbz2", p.name))
    if not files:
        raise ConversionError(f"{path} holds no per-architecture files (000000.pickle.pbz2, ...)")
    indexed = ((int(f.name.split(".")[0]), _nats_arch_file(f)) for f in files)
    return _nb201_benchmark(path, list(meta["meta_archs"]), indexed, "NATS-Bench topology")


def _nats_arch_file(path: Path) -> dict:
    data = unpickle(path, bz2.open)
    if not isinstance(data, dict):
        raise ConversionError(f"{path} does not hold a {{schedule: results}} dict")
    return data
