"""Leaf helpers for writing files: atomically, and as strict JSON."""
from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

from lightning_nas.errors import UserError

_UMASK = os.umask(0o022)
os.umask(_UMASK)


class WriteError(UserError, OSError):
    """A file could not be written (e.g. a full disk); the file it was to replace is intact."""


def atomic_write(path: Path, data: bytes | str | Callable[[BinaryIO], Any],
                 rerun: str = "rerun the same command: it resumes") -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file.
    `data` may be a function that writes into the open file. An OSError (full disk, no permission)
    leaves `path` as it was and becomes a `WriteError` whose advice ends in `rerun`."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared like any other file
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename, so a power cut cannot leave an empty file
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if not isinstance(e, OSError):
            raise
        raise write_error(path, e, rerun) from e


def write_error(path: Path, e: OSError, rerun: str = "rerun the same command: it resumes") -> WriteError:
    """The `WriteError` of an OSError met while writing `path`: what went wrong and what to do."""
    full = e.errno in (errno.ENOSPC, errno.EDQUOT)
    problem, fix = ("the disk is full", "free space") if full else (e.strerror or str(e), "fix that")
    return WriteError(f"{problem}: could not write {path}; {fix} and {rerun}")


def strict(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by None, so that it dumps as strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """JSON that every parser reads: NaN and infinities become null (json.dumps would write bare NaN)."""
    return json.dumps(strict(obj), allow_nan=False, **kwargs)
