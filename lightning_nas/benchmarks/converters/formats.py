"""Which converter reads a file (by name, then by content), and `convert`: inputs -> one native archive."""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Callable, Sequence

from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.benchmarks.converters.common import (
    ConversionError,
    PathLike,
    file_stem,
    merge_benchmarks,
    named_space,
    open_input,
)
from lightning_nas.benchmarks.converters.naslib import convert_naslib_nb101, convert_naslib_nb201, convert_naslib_pickle
from lightning_nas.benchmarks.converters.nb101 import convert_nb101_tfrecord
from lightning_nas.benchmarks.converters.nb201 import convert_nats_tss, convert_nb201_pth
from lightning_nas.benchmarks.converters.tables import read_table
from lightning_nas.benchmarks.converters.tfrecord import crc32c, masked_crc
from lightning_nas.spaces.base import space_reference


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
    with open_input(path) as f:
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
        "naslib": lambda p: convert_naslib_pickle(p, trust_pickle),
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
    if space is not None:
        space = space_reference(named_space(space))  # what rebuilds the space in another process
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
