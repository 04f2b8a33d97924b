"""Where the runs of `bench` and `report` execute: a local process pool, or SLURM job arrays through
submitit. Both take the same tasks (picklable callables with a `name`) and return the failures, each
with the path of its log; a failed task never stops the others.

A task must be safe to start again: a search run resumes from its own checkpoint (search_state.pt) and
a finished one is reused, so the executors requeue or rerun a task whole. Under SLURM, the time limit's
warning signal (`--signal=USR2@<slurm_signal_delay_s>`, submitit's) makes submitit call the task's
`checkpoint()`, which resubmits the same task; the requeued task resumes the interrupted search.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import yaml

from lightning_nas.errors import ConfigError, MissingFileError, one_line
from lightning_nas.io import atomic_write

#: `--executor` -> submitit's cluster name (None: the local process pool). Tests map "slurm" to
#: submitit's "local" cluster, which runs the same job files as local processes.
CLUSTERS: dict[str, str | None] = {"local": None, "slurm": "slurm"}
#: command-line options of `--executor slurm` -> submitit parameter (AutoExecutor.update_parameters)
SLURM_OPTIONS = {"slurm_partition": "slurm_partition", "slurm_time": "timeout_min", "slurm_gpus": "gpus_per_node",
                 "slurm_cpus": "cpus_per_task", "slurm_mem_gb": "mem_gb",
                 "slurm_array_parallelism": "slurm_array_parallelism"}
#: keys of a --slurm file for submitit's executor itself, not for its jobs: how often a task may be
#: requeued after its time limit (besides runs_per_task, this module's own)
CONSTRUCTOR_KEYS = ("slurm_max_num_timeout",)
#: the jobs of the last submission, beside submitit's files: no later invocation submits while any
#: of them is still queued or running
JOBS_FILE = "jobs.json"
#: array tasks in one submission at most (SLURM's MaxArraySize is 1001 by default)
MAX_ARRAY = 1000


class Task(Protocol):
    name: str  # how messages and the local log files name it, e.g. "nb201-cifar10/RE/seed_3"

    def __call__(self) -> None: ...


@dataclass(frozen=True)
class Failure:
    task: str
    error: str  # one line; the traceback is in the log
    log: str

    def __str__(self) -> str:
        return f"{self.task}: {self.error} (log: {self.log})"


class RunsFailed(Exception):
    """Some tasks of a sweep failed; the others finished and are kept."""

    def __init__(self, failures: Sequence[Failure], total: int):
        self.failures = list(failures)
        lines = [f"{len(failures)} of {total} runs failed; the finished runs are kept and rerunning the same "
                 "command runs only what is missing:", *(f"  {f}" for f in failures)]
        super().__init__("\n".join(lines))


class Executor(Protocol):
    def run(self, tasks: Sequence[Task], title: str) -> list[Failure]:
        """Run every task; the failures (an empty list when all finished)."""


# --- the local process pool ------------------------------------------------------------------
class LocalPool:
    """Tasks in `workers` spawned processes, each task's output in `logs/<name>.log`. A worker that dies
    (killed, out of memory) breaks the pool: the tasks it may have been running run again alone, so
    that only the one that kills its process is reported."""

    def __init__(self, workers: int, logs: Path):
        self.workers, self.logs = workers, Path(logs)

    def log_of(self, task: Task) -> Path:
        return self.logs / f"{task.name}.log"

    def run(self, tasks: Sequence[Task], title: str) -> list[Failure]:
        failures: list[Failure] = []
        if not tasks:
            return failures
        from rich.progress import Progress

        with Progress() as progress:
            bar = progress.add_task(title, total=len(tasks))
            todo, suspects = list(tasks), []
            while todo:  # a broken pool leaves the tasks it had not started to the next one
                unfinished, started = self._pool(todo, self.workers, failures, lambda: progress.advance(bar))
                if unfinished and not started and len(unfinished) == len(todo):
                    raise RuntimeError(f"the worker processes of {title!r} died before starting a task")
                suspects += started
                todo = [t for t in unfinished if t not in started]
            for task in suspects:
                _, started = self._pool([task], 1, failures, lambda: progress.advance(bar))
                if started:  # it broke a pool of its own
                    failures.append(Failure(task.name, "its process died (killed? out of memory?)",
                                            str(self.log_of(task))))
                    progress.advance(bar)
        return failures

    def _pool(self, tasks: list[Task], workers: int, failures: list[Failure],
              advance: Callable[[], None]) -> tuple[list[Task], list[Task]]:
        """Run `tasks` in one pool, adding their failures to `failures`. Unless a worker died: ([], []);
        else the tasks without an outcome, and those of them that had started."""
        context = mp.get_context("spawn")
        started = context.SimpleQueue()
        finished: set[int] = set()
        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context, initializer=_init_worker,
                                 initargs=(started,)) as pool:
            futures = {pool.submit(_run_logged, i, task, str(self.log_of(task))): i for i, task in enumerate(tasks)}
            for future in as_completed(futures):
                try:
                    error = future.result()
                except BrokenProcessPool:
                    continue
                task = tasks[futures[future]]
                finished.add(futures[future])
                if error is not None:
                    failures.append(Failure(task.name, error, str(self.log_of(task))))
                advance()
        if len(finished) == len(tasks):
            return [], []
        begun = set()
        while not started.empty():
            begun.add(started.get())
        unfinished = [i for i in range(len(tasks)) if i not in finished]
        return [tasks[i] for i in unfinished], [tasks[i] for i in unfinished if i in begun]


_started: Any = None  # in a worker: where it says which task it starts


def _init_worker(started) -> None:
    global _started
    _started = started


def _run_logged(index: int, task: Task, log: str) -> str | None:
    """Run `task` in this worker with its output appended to `log`; its error in one line, or None."""
    _started.put(index)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f, _output_to(f):
        return run_reporting(task)


def run_reporting(task: Task, passing: tuple[type[BaseException], ...] = ()) -> str | None:
    """Run `task`; on an exception (but those of `passing`), print its traceback (to the task's log) and
    return it in one line."""
    print(f"--- {task.name}: started {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()}, "
          f"pid {os.getpid()}", flush=True)
    try:
        task()
    except passing:
        raise
    except Exception as e:
        traceback.print_exc()
        print(f"--- {task.name}: failed", flush=True)
        return f"{type(e).__name__}: {one_line(str(e))}"
    print(f"--- {task.name}: finished", flush=True)
    return None


@contextmanager
def _output_to(f) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so that also what libraries
    and child processes print goes there) to `f` for a while."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(f.fileno(), 1)
    os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


# --- submitit: SLURM job arrays ----------------------------------------------------------------
class TaskGroup:
    """What one array task runs: a few tasks, one after the other, each failure caught and reported.
    submitit calls `checkpoint()` on the time limit's signal (or a pre-emption's): the same group is
    submitted again, where finished runs are reused and the interrupted one resumes."""

    def __init__(self, tasks: Sequence[Task]):
        self.tasks = list(tasks)

    def __call__(self) -> list[str | None]:
        # submitit's signal handler raises this when it cannot requeue: it ends the job, not one task
        ends_the_job = (_submitit().core.utils.UncompletedJobError,)
        return [run_reporting(task, ends_the_job) for task in self.tasks]

    def checkpoint(self, *args: Any, **kwargs: Any):
        return _submitit().helpers.DelayedSubmission(self)


class Submitit:
    """Tasks as submitit jobs, `runs_per_task` to a job, submitted as one array; waits for all of them.
    `folder` holds submitit's job files and the logs (<job id>_<rank>_log.out / .err)."""

    def __init__(self, cluster: str, folder: Path, parameters: dict[str, Any], runs_per_task: int = 1,
                 constructor: dict[str, Any] | None = None, source: str = "the cluster settings"):
        self.cluster, self.folder, self.parameters = cluster, Path(folder), dict(parameters)
        self.runs_per_task, self.constructor, self.source = runs_per_task, dict(constructor or {}), source
        self.poll_s = 30.0 if cluster == "slurm" else 0.5  # SLURM: submitit asks sacct at most this often

    def executor(self):
        """submitit's executor with these parameters (checked by submitit: a wrong name is refused)."""
        try:
            executor = _submitit().AutoExecutor(folder=self.folder, cluster=self.cluster, **self.constructor)
        except RuntimeError as e:  # SLURM's commands are not here
            raise ConfigError(f"{one_line(str(e))}: submit from a machine of the cluster") from None
        except TypeError as e:
            raise ConfigError(f"{self.source}: submitit refuses {one_line(str(e))}") from None
        try:
            executor.update_parameters(**self.parameters)
        except (NameError, AssertionError, ValueError, TypeError) as e:
            raise ConfigError(f"{self.source}: submitit refuses {one_line(str(e))}") from None
        return executor

    def run(self, tasks: Sequence[Task], title: str) -> list[Failure]:
        if not tasks:
            return []
        self.refuse_if_in_flight()
        groups = [TaskGroup(tasks[i:i + self.runs_per_task]) for i in range(0, len(tasks), self.runs_per_task)]
        executor = self.executor()
        executor.update_parameters(name=f"lightning-nas {title}"[:100])
        jobs = []
        for start in range(0, len(groups), MAX_ARRAY):  # one array per submission
            with executor.batch():
                jobs += [executor.submit(group) for group in groups[start:start + MAX_ARRAY]]
        atomic_write(self.folder / JOBS_FILE, json.dumps({"cluster": self.cluster, "jobs": [j.job_id for j in jobs]}))
        print(f"{title}: {len(tasks)} runs in {len(jobs)} {self.cluster} jobs ({jobs[0].job_id.split('_')[0]}...); "
              f"logs in {self.folder}", flush=True)
        failures = []
        from rich.progress import Progress

        with Progress() as progress:
            bar = progress.add_task(title, total=len(tasks))
            by_job = {id(job): group for job, group in zip(jobs, groups)}
            for job in _submitit().helpers.as_completed(jobs, poll_frequency=self.poll_s):
                group = by_job[id(job)]
                log = str(job.paths.stderr)
                try:
                    errors = job.result()
                except Exception as e:  # the job itself failed: cancelled, killed, requeued too often
                    errors = [f"{type(e).__name__}: {one_line(str(e))}"] * len(group.tasks)
                failures += [Failure(t.name, error, log) for t, error in zip(group.tasks, errors) if error is not None]
                progress.advance(bar, len(group.tasks))
        return failures

    def refuse_if_in_flight(self) -> None:
        """An earlier invocation's jobs still queued or running would search the same runs twice."""
        path = self.folder / JOBS_FILE
        if not path.is_file():
            return
        earlier = json.loads(path.read_text())
        live = in_flight(earlier.get("cluster", ""), [str(j) for j in earlier.get("jobs", [])])
        if live:
            raise ConfigError(f"jobs {', '.join(live[:5])}{' ...' if len(live) > 5 else ''} of an earlier invocation "
                              f"(listed in {path}) are still queued or running and would search the same runs: "
                              "wait for them to end (squeue --me) or cancel them (scancel), then run this again")


def _submitit():
    try:
        import submitit
    except ImportError:
        raise ConfigError("--executor slurm submits through submitit, which is not installed: "
                          "pip install 'lightning-nas[cluster]' (or pip install submitit)") from None
    return submitit


def in_flight(cluster: str, jobs: list[str]) -> list[str]:
    """Which of `jobs` are still queued or running (SLURM: as squeue lists them; the local cluster:
    a job is its controller's process id)."""
    if not jobs:
        return []
    if cluster == "slurm":
        if shutil.which("squeue") is None:
            return []
        arrays = sorted({j.split("_")[0] for j in jobs})
        done = subprocess.run(["squeue", "--noheader", "--array", "--format=%i", f"--jobs={','.join(arrays)}"],
                              capture_output=True, text=True)
        return sorted(set(done.stdout.split()) & set(jobs)) if done.returncode == 0 else []
    live = []
    for job in jobs:
        try:
            os.kill(int(job), 0)
        except (ProcessLookupError, ValueError):
            continue
        except PermissionError:
            pass
        live.append(job)
    return live


# --- the command-line options ---------------------------------------------------------------------
def add_executor_arguments(parser: argparse.ArgumentParser, workers_default: int) -> None:
    """The options of `bench` and `report` that say where their runs execute."""
    parser.add_argument("--executor", choices=list(CLUSTERS), default="local",
                        help="where the runs execute: local processes (default), or SLURM job arrays through "
                             "submitit (the command waits for them, then writes its summary)")
    parser.add_argument("--workers", type=int, default=workers_default,
                        help=f"with --executor local: runs in parallel, one process each (default: {workers_default})")
    group = parser.add_argument_group("SLURM (with --executor slurm; the options override the --slurm file)")
    group.add_argument("--slurm", metavar="YAML",
                       help="cluster settings: submitit's executor parameters (timeout_min, cpus_per_task, "
                            "gpus_per_node, mem_gb, slurm_partition, slurm_array_parallelism, slurm_signal_delay_s, "
                            "slurm_setup, slurm_additional_parameters ...) and runs_per_task; "
                            "e.g. configs/slurm/sweep.yaml")
    group.add_argument("--slurm-partition", metavar="NAME", help="the partition to submit to")
    group.add_argument("--slurm-time", type=int, metavar="MINUTES", help="time limit of an array task")
    group.add_argument("--slurm-gpus", type=int, metavar="N", help="GPUs per array task")
    group.add_argument("--slurm-cpus", type=int, metavar="N", help="CPUs per array task")
    group.add_argument("--slurm-mem-gb", type=float, metavar="GB", help="memory per array task")
    group.add_argument("--slurm-array-parallelism", type=int, metavar="N", help="array tasks running at once")
    group.add_argument("--runs-per-task", type=int, metavar="N",
                       help="runs one array task searches one after the other (default 1; more for cheap runs)")


def executor_from_arguments(args: argparse.Namespace, folder: Path) -> Executor:
    """The executor `args` asks for; its logs (and submitit's files) go to `folder`."""
    given = [name for name in (*SLURM_OPTIONS, "slurm", "runs_per_task") if getattr(args, name) is not None]
    if args.executor == "local":
        if given:
            raise ConfigError(f"--{given[0].replace('_', '-')} applies to --executor slurm only")
        if args.workers < 1:
            raise ConfigError(f"--workers must be positive, got {args.workers}")
        return LocalPool(args.workers, folder)
    settings = read_settings(args.slurm) if args.slurm else {}
    settings.update({SLURM_OPTIONS[name]: getattr(args, name) for name in SLURM_OPTIONS if getattr(args, name) is not None})
    if args.runs_per_task is not None:
        settings["runs_per_task"] = args.runs_per_task
    runs_per_task = settings.pop("runs_per_task", 1)
    if not isinstance(runs_per_task, int) or runs_per_task < 1:
        raise ConfigError(f"runs_per_task must be a positive integer, got {runs_per_task!r}")
    constructor = {key: settings.pop(key) for key in CONSTRUCTOR_KEYS if key in settings}
    options = any(getattr(args, name) is not None for name in (*SLURM_OPTIONS, "runs_per_task"))
    source = " and ".join([*([args.slurm] if args.slurm else []), *(["the --slurm-* options"] if options else [])])
    executor = Submitit(CLUSTERS[args.executor], folder / "submitit", settings, runs_per_task, constructor, source)
    executor.executor()  # the settings are checked now, before any run starts
    return executor


def read_settings(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"cluster settings file {path} does not exist")
    try:
        settings = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({one_line(str(e))})") from None
    if not isinstance(settings, dict):
        raise ConfigError(f"{path}: expected a mapping of submitit parameters, got {type(settings).__name__}")
    return settings
