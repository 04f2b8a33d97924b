"""One search at a time per run directory: an exclusive advisory lock (`flock`) on `search.lock`.

The lock itself is the truth: the kernel releases it when its process ends, however it ends, so a
lock file left by a killed search holds no lock and the next search takes it over. The file holds
the pid of the search that locks it, for the message of the one that is refused. Under DDP rank 0
takes the lock and tells the other ranks whether it got it."""
from __future__ import annotations

import errno
import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from lightning_nas.errors import UserError
from lightning_nas.search.ranks import Ranks

LOCK_FILE = "search.lock"
log = logging.getLogger(__name__)


class RunDirectoryInUse(UserError):
    """Another search runs in the run directory."""


@contextmanager
def locked_run_dir(run_dir: Path, ranks: Ranks | None = None) -> Iterator[None]:
    """Hold the lock of `run_dir` (created if need be, and removed again if the block leaves it
    empty) while the block runs, or raise `RunDirectoryInUse` naming the process that holds it."""
    ranks = ranks or Ranks()
    created = not run_dir.exists()
    fd, holder = _acquire(run_dir) if ranks.is_zero else (None, None)
    holder = ranks.broadcast(holder)
    if holder is not None:
        raise RunDirectoryInUse(
            f"run_dir {run_dir} is in use by another search (pid {holder}): wait for it to end, or give "
            "another --run_dir"
        )
    try:
        yield
    finally:
        if fd is not None:
            _release(run_dir / LOCK_FILE, fd)
            if created and not any(run_dir.iterdir()):  # a search that failed before writing anything
                run_dir.rmdir()


def _acquire(run_dir: Path) -> tuple[int | None, str | None]:
    """(the locked file's descriptor, None), or (None, the holder's pid)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            return None, holder
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            os.close(fd)  # a file system without locks (some network mounts): run unguarded
            log.warning("cannot lock %s (%s): make sure no other search uses this run directory", path, e.strerror)
            return None, None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file its previous holder removed after we opened it
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd, None
        os.close(fd)


def _release(path: Path, fd: int) -> None:
    path.unlink(missing_ok=True)  # while still locked: whoever opened it meanwhile sees it is gone
    os.close(fd)
