"""Records: what a later invocation needs of finished runs to reuse them, one gzipped tar per protocol
and method (and one for the tau study), committed, so that a report begun on one machine resumes on
another."""
from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Callable

from lightning_nas.errors import ConfigError
from lightning_nas.io import atomic_write

#: what a later invocation needs of a run to reuse it: results, recipe and timing of each seed, fit times
RECORD_FILES = ("results.json", "bench_recipe.json", "timing.json", "fit_time.json")


def save_record(run_dir: Path, archive: Path, names: Callable[[str], bool] = RECORD_FILES.__contains__) -> None:
    """Keep the files of `run_dir` whose name `names` accepts (by default: what a search run needs to be
    reused) in one gzipped tar, byte-identical for identical files (so that git sees no change)."""
    files = sorted(p for p in run_dir.rglob("*") if names(p.name) and p.is_file())

    def write(f) -> None:
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as zipped, tarfile.open(fileobj=zipped, mode="w") as tar:
            for path in files:
                data = path.read_bytes()
                info = tarfile.TarInfo(path.relative_to(run_dir).as_posix())
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))

    atomic_write(archive, write)


def restore_record(archive: Path, run_dir: Path) -> None:
    """Put back what `archive` keeps and `run_dir` lacks: a seed's run only where its folder is absent
    (a run here is never mixed with another's files), other files where missing."""
    if not archive.is_file():
        return
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        absent = {m.name.split("/")[0] for m in members if not (run_dir / m.name.split("/")[0]).exists()}
        for member in members:
            top, target = member.name.split("/")[0], run_dir / member.name
            if not member.isfile() or Path(member.name).is_absolute() or ".." in Path(member.name).parts:
                raise ConfigError(f"{archive}: unexpected entry {member.name!r}; delete the file to run afresh")
            if (top in absent if top.startswith("seed_") else not target.exists()):
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
