"""Benchmark tables and official benchmark files -> the native archive (`Benchmark`).

Two jobs live here:

* `read_table` reads the flat CSV tables (plain or gzip) of ``shared/benchmarks``: one architecture
  column (``arch`` for NB201/TNB101 strings, ``hash`` for NB101 module hashes, or ``matrix`` + ``ops``
  for NB101 graphs, keyed by the module hash the NB101 space computes) plus numeric metric columns.
  A list of tables is merged by key: columns of the first table keep their names, columns of every
  later table get the suffix ``@<stem>`` (``cifar100_valid_acc@nb201_12ep``).
* `convert` turns the official formats into one native ``.npz`` archive (written atomically).

Column mapping for NAS-Bench-201 / NATS-Bench topology (``.pth`` v1_0/v1_1, NATS ``tss`` file or
directory). Values are the mean over the training seeds after the last epoch (``iepoch = epochs-1``),
accuracies in percent. The 200-epoch results (NB201 ``full``, NATS ``hp='200'``) get plain names,
the 12-epoch results (NB201 ``less``, NATS ``hp='12'``) the suffix ``@nb201_12ep``; so a converted
archive answers the same column names as ``[nb201_200ep.csv.gz, nb201_12ep.csv.gz]``.

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

NAS-Bench-101 (official ``.tfrecord``; NASLib ``nasbench_only108.pkl``): per epoch budget ``E`` in the
file, ``train_acc_Eep``, ``valid_acc_Eep``, ``test_acc_Eep`` (percent, mean over the 3 repeats, after
the final evaluation) and ``train_time_Eep_s``; ``params`` = trainable parameters. Keys are the
official module hashes stored in the file.

NASLib ``nb201_<dataset>_full_training.pickle``: ``data[arch_str][dataset]`` holds per-epoch lists; its
single evaluation series ``eval_acc1es`` (NASLib answers both its validation and its test queries
from it) is stored as ``<prefix>_valid_acc``, ``train_acc1es`` as ``<prefix>_train_acc``, and
``cost_info`` as ``<prefix>_train_time_s`` / ``_flops_m`` / ``_params_m`` / ``_latency_s``.
"""
from __future__ import annotations

import argparse
import base64
import bz2
import csv
import gzip
import io
import json
import math
import os
import pickle
import re
import struct
import sys
import time
import zipfile
import zlib
from array import array
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from lightning_nas.benchmarks.archive import ArchiveError, Benchmark
from lightning_nas.spaces.base import InvalidArchitectureError, get_space, space_reference


class ConversionError(ArchiveError):
    """Input that cannot be converted: missing, malformed, truncated, or of an unknown format.

    An `ArchiveError` (a `ValueError`), since `Benchmark.load` reads tables through this module."""


PathLike = str | os.PathLike
_SUFFIXES = (".csv.gz", ".csv", ".npz", ".pickle.pbz2", ".pbz2", ".pickle", ".pkl", ".pth", ".tfrecord")
_NB101_HASH = re.compile(r"^[0-9a-f]{32}$")
_TNB101_KEY = re.compile(r"^\d+-\d+-[\d_]+$")


def file_stem(path: PathLike) -> str:
    """`nb201_12ep.csv.gz` -> `nb201_12ep` (the suffix used for columns of a later table)."""
    name = Path(path).name
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


# ==========================================================================================
# CSV tables
# ==========================================================================================
def read_table(path_or_paths: PathLike | Sequence[PathLike], space: str | None = None) -> Benchmark:
    """Read one table (or native archive), or merge several by architecture key."""
    if isinstance(path_or_paths, (str, os.PathLike)):
        return _read_any(Path(path_or_paths), space)
    paths = [Path(p) for p in path_or_paths]
    if not paths:
        raise ConversionError("no benchmark tables given")
    parts = [_read_any(p, space) for p in paths]
    return merge_benchmarks(parts, [file_stem(p) for p in paths], suffix_later=True)


def _read_any(path: Path, space: str | None) -> Benchmark:
    if not path.is_file():
        raise ConversionError(f"benchmark table {path} does not exist")
    if path.suffix == ".npz":
        bench = Benchmark.load(path)
        if space is not None and bench.space_name != space:
            raise ConversionError(f"{path} holds the {bench.space_name} space, not {space}")
        return bench
    header, columns = _read_csv(path)
    return _table_to_benchmark(path, header, columns, space)


def _read_csv(path: Path) -> tuple[list[str], list[tuple[str, ...]]]:
    """Header and the columns (tuples of cell strings) of a plain or gzip CSV file."""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    except (EOFError, OSError, UnicodeDecodeError, csv.Error, zlib.error) as e:
        raise ConversionError(f"{path} is truncated or not a CSV table ({e}); download or export it again") from None
    if not rows or not rows[0]:
        raise ConversionError(f"{path} is empty: expected a header line")
    header, rows = [h.strip() for h in rows[0]], rows[1:]
    if not rows:
        raise ConversionError(f"{path} has a header but no rows")
    if set(map(len, rows)) != {len(header)}:
        line = next(i for i, r in enumerate(rows, start=2) if len(r) != len(header))
        raise ConversionError(
            f"{path} line {line}: expected {len(header)} fields like the header, got {len(rows[line - 2])}"
        )
    return header, list(zip(*rows))


def _table_to_benchmark(path: Path, header: list[str], columns: list[tuple[str, ...]], space: str | None) -> Benchmark:
    if "arch" in header or "hash" in header:
        key_column = "arch" if "arch" in header else "hash"
        keys = np.array([k.strip() for k in columns[header.index(key_column)]], dtype=str)
        space = space or _infer_space(path, str(keys[0]))
        _validate_keys(path, keys, space)
        text = {key_column, "matrix", "ops"}
    elif "matrix" in header and "ops" in header:
        key_column = None
        space = space or "nb101"
        keys = _nb101_graph_keys(path, columns[header.index("matrix")], columns[header.index("ops")], space)
        text = {"matrix", "ops"}
    else:
        raise ConversionError(
            f"{path} has no architecture column: expected 'arch', 'hash' or 'matrix'+'ops', "
            f"found {', '.join(header)}"
        )
    metrics = {}
    for name, values in zip(header, columns):
        if name not in text:
            column = _numeric_column(path, name, values)
            if column is not None:
                metrics[name] = column
    provenance = f"table {path.name}"
    if key_column is None:  # unpruned NB101 graphs: several specs may prune to one module
        keys, metrics, merged = _mean_by_key(keys, metrics)
        provenance += f" ({merged} rows were graphs of an already listed module; values averaged)" if merged else ""
    else:
        _reject_duplicates(path, keys)
    return Benchmark(space, keys, metrics, provenance=provenance, name=file_stem(path))


def _infer_space(path: Path, key: str) -> str:
    if key.startswith("|"):
        return "nb201"
    if _TNB101_KEY.match(key):
        return "tnb101_micro"
    if _NB101_HASH.match(key):
        return "nb101"
    if key.startswith("Genotype("):
        return "darts"
    raise ConversionError(
        f"{path} line 2: cannot tell the search space from the key {key!r} "
        "(expected an NB201 '|op~0|+|...|' string, a TNB101 '64-41414-a_bc_def' string or a 32-hex "
        "NB101 hash, or a DARTS 'Genotype(...)'); pass space=... / --space"
    )


def _validate_keys(path: Path, keys: np.ndarray, space: str) -> None:
    if space == "nb101":
        bad = next((i for i, k in enumerate(keys.tolist()) if not _NB101_HASH.match(k)), None)
        if bad is not None:
            raise ConversionError(
                f"{path} line {bad + 2}: {str(keys[bad])!r} is not an NB101 module hash (32 lowercase hex digits); "
                "fix or delete that line and rerun"
            )
        return
    parse = _space(space).from_string
    for i, key in enumerate(keys.tolist()):
        try:
            parse(key)
        except InvalidArchitectureError as e:
            raise ConversionError(f"{path} line {i + 2}: {e}; fix or delete that line and rerun") from None


def _nb101_graph_keys(path: Path, matrices: Sequence[str], ops: Sequence[str], space: str) -> np.ndarray:
    if space != "nb101":
        raise ConversionError(f"{path}: 'matrix'+'ops' columns describe NB101 graphs, not the {space} space")
    nb101 = _nb101_space(f"reading the graphs of {path}")
    keys = []
    for i, (bits, names) in enumerate(zip(matrices, ops)):
        try:
            matrix = _square_matrix(bits)
            keys.append(nb101.key(nb101.from_matrix(matrix, [o.strip() for o in names.split(",")])))
        except (InvalidArchitectureError, ValueError) as e:
            raise ConversionError(f"{path} line {i + 2}: malformed NB101 graph: {e}; fix or delete that line and rerun") from None
    return np.array(keys, dtype=str)


def _square_matrix(bits: str) -> np.ndarray:
    bits = bits.strip()
    n = math.isqrt(len(bits))
    if n * n != len(bits) or set(bits) - {"0", "1"}:
        raise ValueError(f"matrix {bits!r} is not a row-major square 0/1 string")
    return np.frombuffer(bits.encode(), dtype=np.uint8).reshape(n, n) - ord("0")


def _space(name: str):
    if name == "nb101":
        _optional_nb101()
    try:
        return get_space(name)
    except ValueError as e:
        raise ConversionError(str(e)) from None


def _nb101_space(purpose: str):
    space = _optional_nb101()
    if space is None:
        raise ConversionError(
            f"{purpose} needs the NB101 search space (lightning_nas/spaces/nb101.py), which is not available"
        )
    return space


def _optional_nb101():
    try:
        import lightning_nas.spaces.nb101  # noqa: F401  (registers "nb101")
    except ImportError:
        return None
    return get_space("nb101")


def _mean_by_key(keys: np.ndarray, metrics: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Collapse rows sharing a key into their (NaN-ignoring) mean, keeping first-appearance order."""
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if len(unique) == len(keys):
        return keys, metrics, 0
    order = np.argsort(first)  # unique keys in the order they first appear
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    groups = rank[inverse]
    merged = {}
    for name, values in metrics.items():
        present = ~np.isnan(values)
        sums = np.bincount(groups, weights=np.where(present, values, 0.0), minlength=len(unique))
        counts = np.bincount(groups, weights=present, minlength=len(unique))
        with np.errstate(invalid="ignore"):
            merged[name] = (sums / counts).astype(np.float32)
    return unique[order], merged, len(keys) - len(unique)


def _reject_duplicates(path: Path, keys: np.ndarray) -> None:
    unique, counts = np.unique(keys, return_counts=True)
    if len(unique) != len(keys):
        dup = unique[counts > 1][0]
        lines = np.flatnonzero(keys == dup)[:2] + 2
        raise ConversionError(f"{path}: architecture {str(dup)!r} appears twice (lines {lines[0]} and {lines[1]})")


def _numeric_column(path: Path, name: str, values: tuple[str, ...]) -> np.ndarray | None:
    """float32 column (empty cells -> NaN), or None for a text column (its first value is no number)."""
    if values[0].strip() and not _is_number(values[0]):
        return None
    try:
        return np.fromiter(map(float, values), dtype=np.float64, count=len(values)).astype(np.float32)
    except ValueError:  # empty cells or a stray word: the slow path tells which
        pass
    out = np.empty(len(values), dtype=np.float32)
    for i, text in enumerate(values):
        if not text.strip():
            out[i] = np.nan
        elif _is_number(text):
            out[i] = float(text)
        else:
            raise ConversionError(f"{path} line {i + 2}: column {name!r} has the non-numeric value {text!r}")
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def merge_benchmarks(parts: Sequence[Benchmark], stems: Sequence[str], suffix_later: bool) -> Benchmark:
    """Join benchmarks of one space by key (union; NaN where a part lacks a row).

    ``suffix_later``: every column of a later part is renamed ``<column>@<stem>`` (the rule for lists
    of tables); otherwise a column keeps its name unless an earlier part already has it.
    """
    if len(parts) == 1:
        return parts[0]
    spaces = {p.space_name for p in parts}
    if len(spaces) > 1:
        raise ConversionError(f"cannot merge benchmarks of different spaces: {', '.join(sorted(spaces))}")
    keys = _union_keys([p.keys for p in parts])
    index = {k: i for i, k in enumerate(keys.tolist())}
    metrics: dict[str, np.ndarray] = {}
    for n, (part, stem) in enumerate(zip(parts, stems)):
        rows = np.fromiter((index[k] for k in part.keys.tolist()), dtype=np.int64, count=len(part.keys))
        for name, values in part.metrics.items():
            column = f"{name}@{stem}" if n > 0 and (suffix_later or name in metrics) else name
            if column in metrics:
                raise ConversionError(f"column {column!r} occurs twice when merging {', '.join(stems)}")
            metrics[column] = np.full(len(keys), np.nan, dtype=np.float32)
            metrics[column][rows] = values
    provenance = "; ".join(p.provenance for p in parts if p.provenance)
    return Benchmark(parts[0].space_name, keys, metrics, provenance=provenance, name="+".join(stems))


def _union_keys(key_arrays: list[np.ndarray]) -> np.ndarray:
    first = key_arrays[0]
    seen = set(first.tolist())
    extra = []
    for keys in key_arrays[1:]:
        for k in keys.tolist():
            if k not in seen:
                seen.add(k)
                extra.append(k)
    return np.concatenate([first.astype(str), np.array(extra, dtype=str)]) if extra else first.astype(str)


# ==========================================================================================
# shared helpers for converters
# ==========================================================================================
def _columns_to_benchmark(space: str, records: dict[str, dict[str, float]], provenance: str, name: str) -> Benchmark:
    """{key: {column: value}} -> Benchmark; columns without any value are dropped."""
    keys = np.array(list(records), dtype=str)
    names = sorted({c for row in records.values() for c in row})
    metrics = {}
    for column in names:
        values = np.fromiter((row.get(column, np.nan) for row in records.values()), dtype=np.float64, count=len(keys))
        if not np.all(np.isnan(values)):
            metrics[column] = values.astype(np.float32)
    if not len(keys):
        raise ConversionError(f"{name}: the file holds no architectures")
    return Benchmark(space, keys, metrics, provenance=provenance, name=name)


def _require_trust(path: Path, trust_pickle: bool, what: str) -> None:
    if not trust_pickle:
        raise ConversionError(
            f"{path} is a {what}, which is a Python pickle: loading a pickle can run arbitrary code. "
            "Pass --trust-pickle (trust_pickle=True) only for files from a source you trust, "
            "such as the benchmark authors' own download"
        )


def _unpickle(path: Path, opener: Callable[..., Any] = open) -> Any:
    try:
        with opener(path, "rb") as f:
            return pickle.load(f)
    except (EOFError, pickle.UnpicklingError, OSError, ValueError, AttributeError, ImportError, IndexError) as e:
        raise ConversionError(f"{path} is truncated or not a readable pickle ({type(e).__name__}: {e})") from None


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


# ==========================================================================================
# NAS-Bench-201 (.pth) and NATS-Bench topology (tss)
# ==========================================================================================
_NB201_PREFIX = {"cifar10-valid": "cifar10_valid", "cifar10": "cifar10", "cifar100": "cifar100",
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
            value = _mean(_final_accuracy(run, setname) for run in runs.get(dataset, []))
            if value is not None:
                out[column + suffix] = value
        for dataset, dataset_runs in runs.items():
            prefix = _NB201_PREFIX.get(dataset)
            if prefix is None:
                continue
            value = _mean(_total_train_time(run) for run in dataset_runs)
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
        value = _mean(run.get(field) for run in runs)
        if value is not None:
            out[f"{prefix}_{column}"] = value
    latencies = [sum(r["latency"]) / len(r["latency"]) for r in runs if r.get("latency")]
    latency = _mean(v for v in latencies if v > 0)
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
    return _columns_to_benchmark("nb201", records, provenance, file_stem(path))


def convert_nb201_pth(path: PathLike, trust_pickle: bool = False) -> Benchmark:
    """NAS-Bench-201 v1_0 / v1_1 ``.pth`` (a torch-saved dict: meta_archs, arch2infos{less, full})."""
    path = Path(path)
    _require_trust(path, trust_pickle, "NAS-Bench-201 .pth file")
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
    _require_trust(path, trust_pickle, "NATS-Bench topology pickle")
    if path.is_file():
        return _nb201_from_dict(path, _unpickle(path, bz2.open), "NATS-Bench topology")
    meta_file = path / "meta.pickle.pbz2"
    if not meta_file.is_file():
        raise ConversionError(f"{path} is not a NATS-Bench topology directory: meta.pickle.pbz2 is missing")
    meta = _unpickle(meta_file, bz2.open)
    if not isinstance(meta, dict) or "meta_archs" not in meta:
        raise ConversionError(f"{meta_file} does not hold 'meta_archs'")
    files = sorted(p for p in path.iterdir() if re.fullmatch(r"\d+\.pickle\.pbz2", p.name))
    if not files:
        raise ConversionError(f"{path} holds no per-architecture files (000000.pickle.pbz2, ...)")
    indexed = ((int(f.name.split(".")[0]), _nats_arch_file(f)) for f in files)
    return _nb201_benchmark(path, list(meta["meta_archs"]), indexed, "NATS-Bench topology")


def _nats_arch_file(path: Path) -> dict:
    data = _unpickle(path, bz2.open)
    if not isinstance(data, dict):
        raise ConversionError(f"{path} does not hold a {{schedule: results}} dict")
    return data


# ==========================================================================================
# NAS-Bench-101 tfrecord (no TensorFlow)
# ==========================================================================================
def _crc32c_table() -> np.ndarray:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(poly), table >> 1).astype(np.uint32)
    return table


_CRC_TABLE = _crc32c_table()
_CRC_LIST = _CRC_TABLE.tolist()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of one byte string; TFRecord's checksum before masking."""
    crc = 0xFFFFFFFF
    table = _CRC_LIST
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c_many(chunks: Sequence[bytes]) -> np.ndarray:
    """CRC-32C of many byte strings at once: one numpy step per byte position, all records in parallel."""
    n = len(chunks)
    lengths = np.fromiter(map(len, chunks), dtype=np.int64, count=n)
    order = np.argsort(-lengths, kind="stable")  # longest first: the live records at step j are a prefix
    lengths_sorted = lengths[order]
    width = int(lengths_sorted[0]) if n else 0
    grid = np.zeros((width, n), dtype=np.uint8)  # byte j of every record is one contiguous row
    for column, i in enumerate(order.tolist()):
        grid[: len(chunks[i]), column] = np.frombuffer(chunks[i], dtype=np.uint8)
    live = np.searchsorted(-lengths_sorted, -np.arange(width), side="left")  # records longer than j
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    for j in range(width):
        k = live[j]
        crc[:k] = _CRC_TABLE[(crc[:k] ^ grid[j, :k]) & 0xFF] ^ (crc[:k] >> 8)
    out = np.empty(n, dtype=np.uint32)
    out[order] = crc ^ np.uint32(0xFFFFFFFF)
    return out


def masked_crc(crc: int | np.ndarray) -> int | np.ndarray:
    """TFRecord masks its CRCs so that CRCs of data holding CRCs stay well distributed."""
    if isinstance(crc, np.ndarray):
        crc = crc.astype(np.uint64)
        return ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF).astype(np.uint32)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def write_tfrecord(path: PathLike, payloads: Iterable[bytes]) -> Path:
    """Write records in TFRecord framing (used by tests and to re-export subsets)."""
    path = Path(path)
    with open(path, "wb") as f:
        for data in payloads:
            header = struct.pack("<Q", len(data))
            f.write(header + struct.pack("<I", masked_crc(crc32c(header))))
            f.write(data + struct.pack("<I", masked_crc(crc32c(data))))
    return path


def iter_tfrecords(path: PathLike, batch: int = 16384) -> Iterator[tuple[int, bytes]]:
    """(record index, payload) of every record, with both CRCs verified (in vectorised batches)."""
    path = Path(path)
    index = 0
    with open(path, "rb") as f:
        while True:
            chunk = _read_tfrecord_batch(path, f, index, batch)
            if not chunk:
                return
            yield from enumerate(chunk, start=index)
            index += len(chunk)


def _read_tfrecord_batch(path: Path, f: io.BufferedReader, first: int, batch: int) -> list[bytes]:
    headers, header_crcs, payloads, payload_crcs, offsets = [], [], [], [], []
    for i in range(first, first + batch):
        offset = f.tell()
        head = f.read(12)
        if not head:
            break
        if len(head) < 12:
            raise ConversionError(f"{path}: record {i} at byte {offset} is truncated (incomplete header)")
        (length,) = struct.unpack("<Q", head[:8])
        body = f.read(length + 4)
        if len(body) < length + 4:
            raise ConversionError(f"{path}: record {i} at byte {offset} is truncated ({length} bytes announced)")
        headers.append(head[:8])
        header_crcs.append(struct.unpack("<I", head[8:])[0])
        payloads.append(body[:length])
        payload_crcs.append(struct.unpack("<I", body[length:])[0])
        offsets.append(offset)
    if payloads:
        _check_crcs(path, first, offsets, "length", headers, header_crcs)
        _check_crcs(path, first, offsets, "data", payloads, payload_crcs)
    return payloads


def _check_crcs(path: Path, first: int, offsets: list[int], what: str, chunks: list[bytes], stored: list[int]) -> None:
    bad = np.flatnonzero(masked_crc(crc32c_many(chunks)) != np.asarray(stored, dtype=np.uint32))
    if bad.size:
        i = int(bad[0])
        raise ConversionError(
            f"{path}: checksum mismatch in the {what} of record {first + i} at byte {offsets[i]}: the file is corrupt"
        )


def _protobuf_fields(buf: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) pairs of a protobuf message; enough of the wire format for ModelMetrics."""
    pos, end = 0, len(buf)
    while pos < end:
        tag = buf[pos]
        tag, pos = (tag, pos + 1) if tag < 0x80 else _varint(buf, pos)  # one-byte tags are the rule
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<d", buf, pos)[0], pos + 8
        elif wire == 2:
            size = buf[pos]
            size, pos = (size, pos + 1) if size < 0x80 else _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = struct.unpack_from("<f", buf, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("protobuf message is truncated")
        yield field, value


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("protobuf varint is truncated")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


# nasbench model_metrics.proto: ModelMetrics{1: repeated EvaluationData, 2: trainable_parameters,
# 3: total_time}; EvaluationData{1: current_epoch, 2: training_time, 3: train_accuracy,
# 4: validation_accuracy, 5: test_accuracy, 6: checkpoint_path}
_EVALUATION_FIELDS = {1: "current_epoch", 2: "training_time", 3: "train_accuracy", 4: "validation_accuracy",
                      5: "test_accuracy"}


def parse_model_metrics(buf: bytes, final_only: bool = False) -> tuple[list[dict[str, float]], int | None]:
    """Decode a serialized nasbench ``ModelMetrics``: (evaluation_data dicts, trainable_parameters).

    ``final_only`` decodes only the last evaluation (the end of training), as the converter needs.
    """
    messages, params = [], None
    for field, value in _protobuf_fields(buf):
        if field == 1:
            messages.append(value)
        elif field == 2:
            params = value
    if final_only:
        messages = messages[-1:]
    evaluations = [{_EVALUATION_FIELDS[f]: v for f, v in _protobuf_fields(m) if f in _EVALUATION_FIELDS} for m in messages]
    return evaluations, params


class _NB101Accumulator:
    """Mean over repeats per (module hash, epoch budget) of the final evaluation, in numpy at the end."""

    #: (column name template, EvaluationData field, scale: the file stores fractions, columns percent)
    FIELDS = (("train_acc_{}ep", "train_accuracy", 100.0), ("valid_acc_{}ep", "validation_accuracy", 100.0),
              ("test_acc_{}ep", "test_accuracy", 100.0), ("train_time_{}ep_s", "training_time", 1.0))

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.params: list[float] = []
        self.samples: list[tuple[str, Any, Any]] = []  # (hash, matrix, ops) of the first records
        # epochs -> [row indices, then one value array per field]; typed arrays: 8 bytes per value
        self.entries: dict[int, list[array]] = defaultdict(
            lambda: [array("q"), *(array("d") for _ in self.FIELDS)]
        )

    def add(self, module_hash: str, epochs: int, final: dict[str, float], params: float | None) -> None:
        row = self.rows.setdefault(module_hash, len(self.rows))
        if row == len(self.params):
            self.params.append(np.nan if params is None else float(params))
        entry = self.entries[int(epochs)]
        entry[0].append(row)
        for values, (_, field, scale) in zip(entry[1:], self.FIELDS):
            values.append(final.get(field, np.nan) * scale)

    def benchmark(self, provenance: str, name: str) -> Benchmark:
        n = len(self.rows)
        if not n:
            raise ConversionError(f"{name}: the file holds no architectures")
        metrics = {"params": np.asarray(self.params, dtype=np.float32)}
        for epochs, (rows, *columns) in sorted(self.entries.items()):
            rows = np.frombuffer(rows, dtype=np.int64)
            counts = np.bincount(rows, minlength=n)
            for values, (column, _, _) in zip(columns, self.FIELDS):
                sums = np.bincount(rows, weights=np.frombuffer(values, dtype=np.float64), minlength=n)
                with np.errstate(invalid="ignore", divide="ignore"):
                    mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
                metrics[column.format(epochs)] = mean.astype(np.float32)
        keys = np.array(list(self.rows), dtype=str)
        return Benchmark("nb101", keys, metrics, provenance=provenance, name=name)


def convert_nb101_tfrecord(path: PathLike) -> Benchmark:
    """Official ``nasbench_only108.tfrecord`` / ``nasbench_full.tfrecord``: each record is the JSON list
    ``[module_hash, epochs, adjacency bits, ops "a,b,c", base64 ModelMetrics]`` (nasbench api.py)."""
    path = Path(path)
    acc = _NB101Accumulator()
    for i, payload in iter_tfrecords(path):
        try:
            module_hash, epochs, adjacency, operations, metrics = json.loads(payload.decode("utf-8"))
            evaluations, params = parse_model_metrics(base64.b64decode(metrics, validate=True), final_only=True)
            if not evaluations:
                raise ValueError("ModelMetrics has no evaluation_data")
        except (ValueError, TypeError, UnicodeDecodeError, KeyError, struct.error) as e:
            raise ConversionError(f"{path}: record {i} is not a NAS-Bench-101 record ({type(e).__name__}: {e})") from None
        if not isinstance(module_hash, str) or not _NB101_HASH.match(module_hash):
            raise ConversionError(f"{path}: record {i} has the malformed module hash {module_hash!r}")
        acc.add(module_hash, epochs, evaluations[-1], params)
        if len(acc.samples) < _HASH_SAMPLES and module_hash not in {s[0] for s in acc.samples}:
            acc.samples.append((module_hash, _square_matrix(adjacency), operations.split(",")))
    _check_nb101_hashes(path, acc.samples)
    return acc.benchmark(f"NAS-Bench-101 tfrecord {path.name}: mean over repeats, final evaluation", file_stem(path))


_HASH_SAMPLES = 20


def _check_nb101_hashes(path: Path, samples: list[tuple[str, Any, Any]]) -> None:
    """Archive keys are only useful if the project's NB101 hash reproduces the file's hashes."""
    nb101 = _optional_nb101()
    if nb101 is None:
        return  # the space is not there: keys are the file's own hashes, unchecked
    for module_hash, matrix, ops in samples:
        ours = nb101.key(nb101.from_matrix(np.asarray(matrix), list(ops)))
        if ours != module_hash:
            raise ConversionError(
                f"{path}: the NB101 space hashes a graph of the file to {ours}, the file says {module_hash}; "
                "lookups in the archive would fail"
            )


# ==========================================================================================
# NASLib pickles
# ==========================================================================================
def convert_naslib_nb201(path: PathLike, trust_pickle: bool = False) -> Benchmark:
    """NASLib ``nb201_{cifar10,cifar100,ImageNet16}_full_training.pickle``."""
    path = Path(path)
    _require_trust(path, trust_pickle, "NASLib NAS-Bench-201 pickle")
    return _naslib_nb201(path, _unpickle(path))


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
    return _columns_to_benchmark("nb201", records, provenance, file_stem(path))


def _naslib_nb201_columns(per_dataset: dict) -> dict[str, float]:
    out = {}
    for dataset, results in per_dataset.items():
        prefix = _NB201_PREFIX.get(dataset)
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
    _require_trust(path, trust_pickle, "NASLib NAS-Bench-101 pickle")
    return _naslib_nb101(path, _unpickle(path))


def _naslib_nb101(path: Path, data: Any) -> Benchmark:
    if not isinstance(data, dict) or not data:
        raise ConversionError(f"{path} is not a NASLib NAS-Bench-101 pickle: expected {{module hash: stats}}")
    acc = _NB101Accumulator()
    for module_hash, stats in data.items():
        if not isinstance(module_hash, str) or not _NB101_HASH.match(module_hash):
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
        if len(acc.samples) < _HASH_SAMPLES:
            acc.samples.append((module_hash, fixed["module_adjacency"], fixed["module_operations"]))
    _check_nb101_hashes(path, acc.samples)
    return acc.benchmark(f"NASLib pickle {path.name}: mean over repeats, final evaluation", file_stem(path))


def _naslib_pickle(path: PathLike, trust_pickle: bool = False) -> Benchmark:
    """Either NASLib pickle, told apart by its keys (arch strings vs module hashes)."""
    path = Path(path)
    _require_trust(path, trust_pickle, "NASLib pickle")
    data = _unpickle(path)
    first = next(iter(data), None) if isinstance(data, dict) else None
    if isinstance(first, str) and _NB101_HASH.match(first):
        return _naslib_nb101(path, data)
    return _naslib_nb201(path, data)


# ==========================================================================================
# entry points
# ==========================================================================================
FORMATS: dict[str, str] = {
    "table": "CSV table (.csv / .csv.gz) with an 'arch' or 'hash' column",
    "native": "native lightning-nas archive (.npz)",
    "nb201-pth": "NAS-Bench-201 v1_0 / v1_1 .pth",
    "nats-tss": "NATS-Bench topology: NATS-tss-v1_0-3ffb9-simple directory or .pickle.pbz2 file",
    "nb101-tfrecord": "NAS-Bench-101 nasbench_only108.tfrecord / nasbench_full.tfrecord",
    "naslib-nb201": "NASLib nb201_<dataset>_full_training.pickle",
    "naslib-nb101": "NASLib nasbench_only108.pkl",
    "naslib": "either NASLib pickle (told apart by content)",
}


def detect_format(path: PathLike) -> str:
    path = Path(path)
    name = path.name
    if path.is_dir():
        if (path / "meta.pickle.pbz2").is_file():
            return "nats-tss"
        raise ConversionError(f"{path} is a directory but not a NATS-Bench one (no meta.pickle.pbz2)")
    if not path.is_file():
        raise ConversionError(f"input {path} does not exist")
    if name.endswith((".csv", ".csv.gz")):
        return "table"
    if name.endswith(".npz"):
        return "native"
    if name.endswith(".pth"):
        return "nb201-pth"
    if name.endswith(".pbz2"):
        return "nats-tss"
    if name.endswith(".tfrecord"):
        return "nb101-tfrecord"
    if name.endswith((".pickle", ".pkl")):
        return "naslib"
    return _sniff_format(path)


def _sniff_format(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:2] == b"\x1f\x8b":
        return "table"
    if head[:2] == b"PK":
        return "native" if _zip_has(path, "meta.npy") else "nb201-pth"
    if head[:3] == b"BZh":
        return "nats-tss"
    if len(head) == 12 and masked_crc(crc32c(head[:8])) == struct.unpack("<I", head[8:])[0]:
        return "nb101-tfrecord"
    raise ConversionError(
        f"cannot tell the format of {path}; pass --format, one of: {', '.join(FORMATS)}"
    )


def _zip_has(path: Path, member: str) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return member in z.namelist()
    except zipfile.BadZipFile:
        return False


def _convert_one(path: Path, fmt: str, space: str | None, trust_pickle: bool) -> Benchmark:
    if fmt == "auto":
        fmt = detect_format(path)
    elif not path.exists():
        raise ConversionError(f"input {path} does not exist")
    if fmt in ("table", "native"):
        return read_table(path, space)
    readers: dict[str, Callable[[Path], Benchmark]] = {
        "nb201-pth": lambda p: convert_nb201_pth(p, trust_pickle),
        "nats-tss": lambda p: convert_nats_tss(p, trust_pickle),
        "nb101-tfrecord": convert_nb101_tfrecord,
        "naslib-nb201": lambda p: convert_naslib_nb201(p, trust_pickle),
        "naslib-nb101": lambda p: convert_naslib_nb101(p, trust_pickle),
        "naslib": lambda p: _naslib_pickle(p, trust_pickle),
    }
    if fmt not in readers:
        raise ConversionError(f"unknown format {fmt!r}; known: auto, {', '.join(FORMATS)}")
    bench = readers[fmt](path)
    if space is not None and bench.space_name != space:
        raise ConversionError(f"{path} holds the {bench.space_name} space, not {space}")
    return bench


def convert(
    inputs: Sequence[PathLike],
    output: PathLike,
    format: str = "auto",
    space: str | None = None,
    trust_pickle: bool = False,
) -> Path:
    """Convert one or more benchmark files into one native archive at `output` (written atomically).

    Several CSV tables merge with the table rule (later tables' columns get ``@<stem>``); several
    official files (e.g. NASLib's per-dataset pickles) merge by key, a column only getting
    ``@<stem>`` if an earlier input already has that name.
    """
    paths = [Path(p) for p in inputs]
    output = Path(output)
    if space is not None:  # stored as what rebuilds the space in another process (class path, spec)
        space = space_reference(_space(space))
    if not paths:
        raise ConversionError("no input files given")
    if output.suffix != ".npz":
        raise ConversionError(f"output {output} must end in .npz (the native archive format)")
    if format != "auto" and format not in FORMATS:
        raise ConversionError(f"unknown format {format!r}; known: auto, {', '.join(FORMATS)}")
    parts = [_convert_one(p, format, space, trust_pickle) for p in paths]
    tables = all(_is_table_input(p, format) for p in paths)
    bench = merge_benchmarks(parts, [file_stem(p) for p in paths], suffix_later=tables)
    bench.name = file_stem(output)
    return bench.save(output)


def _is_table_input(path: Path, fmt: str) -> bool:
    return fmt in ("table", "native") or (fmt == "auto" and path.name.endswith((".csv", ".csv.gz", ".npz")))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit status 2 from convert_main, not usage + SystemExit
        raise ConversionError(message)


def convert_main(argv: Sequence[str] | None = None) -> int:
    """``lightning-nas convert INPUT [INPUT ...] -o OUT.npz [--format F] [--space S] [--trust-pickle]``."""
    parser = _Parser(
        prog="lightning-nas convert",
        description="Convert benchmark files (official formats or CSV tables) into one native .npz archive.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="benchmark file(s) or NATS directory")
    parser.add_argument("-o", "--output", required=True, help="the archive to write (.npz)")
    parser.add_argument("--format", default="auto",
                        help=f"input format: auto (default: from the name and content), {', '.join(FORMATS)}")
    parser.add_argument("--space", default=None,
                        help="search space of CSV tables: a name, a class path (package.module.Class) or a "
                             "{class_path, init_args} spec (.yaml/.json file or JSON text); default: from the keys")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow loading pickle-based inputs (.pth, NATS, NASLib); pickles can run code")
    start = time.perf_counter()
    try:
        args = parser.parse_args(argv)
        out = convert(args.inputs, args.output, args.format, args.space, args.trust_pickle)
        bench = Benchmark.load(out)
    except (ConversionError, ArchiveError, InvalidArchitectureError, OSError) as e:
        print(f"lightning-nas: error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {out}: {len(bench)} {bench.space.name} architectures, {len(bench.metrics)} columns "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(convert_main())
