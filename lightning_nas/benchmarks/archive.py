"""The native benchmark archive: one `.npz` file per benchmark.

Contents: `keys` (the benchmark's own architecture keys, unicode), one float32 array per metric
column (NaN where the benchmark has no value), and `meta`: a JSON string with the space, the
columns, provenance and a SHA-256 checksum over keys and metric arrays. Loading verifies the
checksum, so a truncated or edited archive is refused instead of silently mis-reporting.

`Benchmark.load` also reads what is not a native archive (CSV tables, lists of files merged by key)
through the reader `converters.tables` registers here: the archive never imports its converters.
"""
from __future__ import annotations

import hashlib
import json
import os
import tokenize
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from lightning_nas.errors import UserError
from lightning_nas.io import atomic_write
from lightning_nas.spaces.base import Architecture, SearchSpace, get_space

FORMAT_VERSION = 1
PathOrPaths = str | os.PathLike | Sequence[str | os.PathLike]


class ArchiveError(UserError, ValueError):
    """An archive that cannot be read or trusted (missing, truncated, corrupt, bad checksum)."""


class UnknownMetricError(UserError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; users should see plain text
        return str(self.args[0])


@dataclass
class Benchmark:
    """Arrays in memory: architecture keys and one metric array per column."""

    space_name: str
    keys: np.ndarray  # unicode array, the benchmark's own keys
    metrics: dict[str, np.ndarray]  # column -> float32 array aligned with keys
    provenance: str = ""
    name: str = ""
    _index: dict[str, int] | None = field(default=None, repr=False)

    # --- lookups -------------------------------------------------------------------------
    @property
    def space(self) -> SearchSpace:
        return get_space(self.space_name)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self.keys.tolist())}
        return self._index

    def row(self, a: Architecture | str) -> int | None:
        key = a if isinstance(a, str) else self.space.key(a)
        return self.index.get(key)

    def __contains__(self, a: Architecture | str) -> bool:
        return self.row(a) is not None

    def column(self, metric: str) -> np.ndarray:
        try:
            return self.metrics[metric]
        except KeyError:
            raise UnknownMetricError(
                f"unknown metric {metric!r} in the {self.name or self.space_name} archive; "
                f"available: {', '.join(sorted(self.metrics))}"
            ) from None

    def query(self, a: Architecture | str, metric: str) -> float:
        column = self.column(metric)
        i = self.row(a)
        if i is None:
            raise KeyError(f"architecture {a} is not in the {self.name or self.space_name} archive")
        return float(column[i])

    def archs(self) -> list[Architecture]:
        """Every architecture of the archive (NB101 needs the enumeration to turn hashes into cells)."""
        space = self.space
        from_key = getattr(space, "from_key", space.from_string)
        return [from_key(k) for k in self.keys.tolist()]

    def best(self, metric: str) -> tuple[str, float]:
        column = self.column(metric)
        i = int(np.nanargmax(column))
        return str(self.keys[i]), float(column[i])

    # --- native file ---------------------------------------------------------------------
    def checksum(self) -> str:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(np.asarray(self.keys, dtype=str)).tobytes())  # never object pointers
        for name in sorted(self.metrics):
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.metrics[name], dtype=np.float32).tobytes())
        return h.hexdigest()

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically: a crash never leaves a half-written archive under `path`."""
        path = Path(path)
        meta = {
            "format": FORMAT_VERSION,
            "space": self.space_name,
            "name": self.name,
            "provenance": self.provenance,
            "columns": sorted(self.metrics),
            "rows": len(self.keys),
            "sha256": self.checksum(),
        }
        arrays = {f"metric/{k}": np.asarray(v, dtype=np.float32) for k, v in self.metrics.items()}
        keys = np.asarray(self.keys, dtype=str)
        atomic_write(path, lambda f: np.savez(f, keys=keys, meta=np.array(json.dumps(meta)), **arrays),
                     rerun="rerun the same command")
        return path

    @classmethod
    def load(cls, path: PathOrPaths) -> "Benchmark":
        """A native archive, a table, or several of them merged by key (`converters.tables.read_table`)."""
        if isinstance(path, (list, tuple)):
            return _read_tables(path)
        path = Path(path)
        if not path.is_file():
            raise ArchiveError(f"benchmark archive {path} does not exist; build one with `lightning-nas convert`")
        if path.suffix != ".npz":
            return _read_tables(path)
        if not zipfile.is_zipfile(path):  # else numpy reads it as a pickle and talks of allow_pickle
            raise ArchiveError(f"benchmark archive {path} is truncated or corrupt (not a zip file); convert it again")
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                keys = z["keys"]
                metrics = {name: z[f"metric/{name}"] for name in meta["columns"]}
        # besides the usual: zipfile on a damaged header (unknown compression, "encrypted") and numpy
        # parsing a damaged .npy header (it tokenizes and evaluates the header text)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError,
                SyntaxError, tokenize.TokenError) as e:
            raise ArchiveError(f"benchmark archive {path} is truncated or corrupt ({e}); convert it again") from None
        bench = cls(meta["space"], keys, metrics, meta.get("provenance", ""), meta.get("name", path.stem))
        if bench.checksum() != meta["sha256"]:
            raise ArchiveError(f"checksum mismatch in benchmark archive {path}: the file was altered; convert it again")
        return bench


_table_reader: Callable[[PathOrPaths], Benchmark] | None = None


def register_table_reader(reader: Callable[[PathOrPaths], Benchmark]) -> None:
    """Called by `converters.tables` when it is imported (the `lightning_nas.benchmarks` package imports it)."""
    global _table_reader
    _table_reader = reader


def _read_tables(path: PathOrPaths) -> Benchmark:
    assert _table_reader is not None, "lightning_nas.benchmarks imports converters.tables, which registers it"
    return _table_reader(path)
