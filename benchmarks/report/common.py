"""Where the repository and the shared tables are, and the process settings every part shares."""
from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from lightning_nas.errors import MissingFileError

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
#: the shared benchmark tables, beside the repository (`--shared` points elsewhere)
DEFAULT_SHARED = ROOT.parent / "shared" / "benchmarks"


def shared_tables(folder: str | Path | None) -> Path:
    """The folder of the shared benchmark tables, checked to exist."""
    path = Path(folder).resolve() if folder else DEFAULT_SHARED
    if not path.is_dir():
        raise MissingFileError(f"the shared benchmark tables are not in {path}: give their folder with --shared")
    return path


def from_root(path: Path) -> Path:
    """`path` relative to the repository root when it lies inside it (how configs and recipes name
    files: the same on every clone), else absolute."""
    path = path.resolve()
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


@contextmanager
def at_root() -> Iterator[None]:
    """Run with the repository root as the working directory: the configs name checkpoints/ from there."""
    before = Path.cwd()
    os.chdir(ROOT)
    try:
        yield
    finally:
        os.chdir(before)


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def add_script_arguments(parser, writes: bool = True) -> None:
    """The options of the bench scripts: where the tables are, and where a trial run writes."""
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="folder of the shared benchmark tables")
    if writes:
        parser.add_argument("--out", type=Path, help="write results and runs under this folder instead of "
                                                     "benchmarks/results/ and benchmarks/runs/ (a trial run)")


def script_folders(args, name: str) -> tuple[Path, Path]:
    """(results, runs) of the bench script `name`: benchmarks/results/ and benchmarks/runs/<name>/, or
    both under --out."""
    if args.out:
        return args.out.resolve() / "results", args.out.resolve() / "runs" / name
    return ROOT / "benchmarks" / "results", ROOT / "benchmarks" / "runs" / name
