"""Signals that stop a search between rounds, after its checkpoint is written.

SIGINT (Ctrl-C) and SIGTERM ask the search to stop once the round in progress is checkpointed; a
second SIGINT stops at once (the previous checkpoint resumes). Under SLURM with Lightning's
`SLURMEnvironment(auto_requeue=True)`, its requeue signal (SIGUSR1 by default, `#SBATCH
--signal=USR1@90`) checkpoints, requeues the job with `scontrol requeue`, and the requeued job
resumes from that checkpoint."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from types import FrameType

from lightning.fabric.plugins.environments import SLURMEnvironment

log = logging.getLogger(__name__)


class SearchStopped(Exception):
    """Raised after the checkpoint of the last finished round is on disk."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class StopRequests:
    """A context manager that turns stop signals into a flag the loop reads between rounds."""

    def __init__(self, slurm: SLURMEnvironment | None = None):
        self.slurm = slurm if slurm is not None and slurm.auto_requeue else None
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def requeue(self) -> bool:
        return self.slurm is not None and self.signum == self.slurm.requeue_signal

    def signals(self) -> list[int]:
        out = [signal.SIGINT, signal.SIGTERM]
        if self.slurm is not None:
            out.append(self.slurm.requeue_signal)
        return out

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals():
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, the last checkpoint resumes
        self.signum = signum
        log.warning("%s received: the search stops after this round is checkpointed", signal.Signals(signum).name)

    def stop(self, queries: int, budget: int | None, run_dir: str, rank_zero: bool) -> SearchStopped:
        """The exception that ends the run, after requeueing the SLURM job when that was asked for."""
        name = signal.Signals(self.signum).name
        where = f"after {queries} of {budget} queries; checkpoint in {run_dir}"
        if self.requeue:
            if rank_zero:
                requeue_slurm_job()
            return SearchStopped(f"{name}: SLURM job requeued {where}; the requeued job resumes from it", 0)
        return SearchStopped(f"stopped by {name} {where}; run the same command again to resume", 128 + self.signum)


def requeue_slurm_job() -> None:
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job_id = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ.get("SLURM_JOB_ID")
    if not job_id:
        raise RuntimeError("asked to requeue a SLURM job, but SLURM_JOB_ID is not set")
    result = subprocess.call(["scontrol", "requeue", job_id])
    if result != 0:
        log.warning("`scontrol requeue %s` failed with exit code %s; resume by resubmitting the job", job_id, result)
