"""What the converters share: the error type, file stems, merging by key, pickles, space lookup."""
from __future__ import annotations

import math
import os
import pickle
import re
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Sequence

import numpy as np

from lightning_nas.benchmarks.archive import ArchiveError, Benchmark
from lightning_nas.spaces.base import get_space


class ConversionError(ArchiveError):
    """Input that cannot be converted: missing, malformed, truncated, or of an unknown format.

    An `ArchiveError`, since `Benchmark.load` reads tables through `converters.tables`."""


PathLike = str | os.PathLike
_SUFFIXES = (".csv.gz", ".csv", ".npz", ".pickle.pbz2", ".pbz2", ".pickle", ".pkl", ".pth", ".tfrecord")
NB101_HASH = re.compile(r"^[0-9a-f]{32}$")


def file_stem(path: PathLike) -> str:
    """`nb201_12ep.csv.gz` -> `nb201_12ep` (the suffix used for columns of a later table)."""
    name = Path(path).name
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def open_input(path: Path) -> BinaryIO:
    """`path` opened for reading; a file the user cannot read is their problem, said in one line."""
    try:
        return open(path, "rb")
    except OSError as e:
        raise ConversionError(f"cannot read {path}: {e.strerror or e}") from None


def square_matrix(bits: str) -> np.ndarray:
    bits = bits.strip()
    n = math.isqrt(len(bits))
    if n * n != len(bits) or set(bits) - {"0", "1"}:
        raise ValueError(f"matrix {bits!r} is not a row-major square 0/1 string")
    return np.frombuffer(bits.encode(), dtype=np.uint8).reshape(n, n) - ord("0")


def named_space(name: str):
    if name == "nb101":
        optional_nb101()
    try:
        return get_space(name)
    except ValueError as e:
        raise ConversionError(str(e)) from None


def optional_nb101():
    try:
        import lightning_nas.spaces.nb101  # noqa: F401  (registers "nb101")
    except ImportError:
        return None
    return get_space("nb101")


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


def columns_to_benchmark(space: str, records: dict[str, dict[str, float]], provenance: str, name: str) -> Benchmark:
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


def require_trust(path: Path, trust_pickle: bool, what: str) -> None:
    if not trust_pickle:
        raise ConversionError(
            f"{path} is a {what}, which is a Python pickle: loading a pickle can run arbitrary code. "
            "Pass --trust-pickle (trust_pickle=True) only for files from a source you trust, "
            "such as the benchmark authors' own download"
        )


def unpickle(path: Path, opener: Callable[..., Any] = open) -> Any:
    try:
        with opener(path, "rb") as f:
            return pickle.load(f)
    except (EOFError, pickle.UnpicklingError, OSError, ValueError, AttributeError, ImportError, IndexError) as e:
        raise ConversionError(f"{path} is truncated or not a readable pickle ({type(e).__name__}: {e})") from None


def mean_or_none(values: Iterable[float | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None

