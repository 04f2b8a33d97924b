"""The flat CSV tables (plain or gzip) of ``shared/benchmarks``, read straight into a `Benchmark`.

One architecture column (``arch`` for NB201/TNB101 strings, ``hash`` for NB101 module hashes, or
``matrix`` + ``ops`` for NB101 graphs, keyed by the module hash the NB101 space computes) plus numeric
metric columns. A list of tables is merged by key: columns of the first table keep their names,
columns of every later table get the suffix ``@<stem>`` (``cifar100_valid_acc@nb201_12ep``).

`Benchmark.load` reads anything but a native archive through `read_table`: this module registers it
(the `lightning_nas.benchmarks` package imports it), so that the archive never imports its converters.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
import re
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from lightning_nas.benchmarks import archive
from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.benchmarks.converters.common import (
    NB101_HASH,
    ConversionError,
    PathLike,
    file_stem,
    merge_benchmarks,
    named_space,
    optional_nb101,
    square_matrix,
)
from lightning_nas.spaces.base import InvalidArchitectureError

_TNB101_KEY = re.compile(r"^\d+-\d+-[\d_]+$")


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
    if NB101_HASH.match(key):
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
        bad = next((i for i, k in enumerate(keys.tolist()) if not NB101_HASH.match(k)), None)
        if bad is not None:
            raise ConversionError(
                f"{path} line {bad + 2}: {str(keys[bad])!r} is not an NB101 module hash (32 lowercase hex digits); "
                "fix or delete that line and rerun"
            )
        return
    parse = named_space(space).from_string
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
            matrix = square_matrix(bits)
            keys.append(nb101.key(nb101.from_matrix(matrix, [o.strip() for o in names.split(",")])))
        except (InvalidArchitectureError, ValueError) as e:
            raise ConversionError(f"{path} line {i + 2}: malformed NB101 graph: {e}; fix or delete that line and rerun") from None
    return np.array(keys, dtype=str)



def _nb101_space(purpose: str):
    space = optional_nb101()
    if space is None:
        raise ConversionError(
            f"{purpose} needs the NB101 search space (lightning_nas/spaces/nb101.py), which is not available"
        )
    return space


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


archive.register_table_reader(read_table)
