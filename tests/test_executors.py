"""Where `bench` and `report` run their searches: the local process pool and submitit's job arrays.

SLURM is not here (nor in CI): submitit's local executor runs the very job files a SLURM array would
(pickled task groups, one process per array task, submitit's signal handling and requeue), so the
sweep tests map `--executor slurm` onto it (`executors.CLUSTERS`)."""
import dataclasses
import itertools
import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from benchmarks.report.fits import checkpoint_producers
from benchmarks.report.protocols import methods as every_method
from benchmarks.report.protocols import protocol
from benchmarks.report.searches import run_searches
from lightning_nas import executors
from lightning_nas.bench import SearchRun, run_one
from lightning_nas.cli import main
from lightning_nas.executors import Failure, LocalPool, RunsFailed, Submitit, TaskGroup
from lightning_nas.search.loop import STATE_FILE
from sweep_tasks import Dies, Raises, Writes

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
RE_CONFIGS = ("configs/methods/re.yaml", "configs/protocols/nb201-cifar10.yaml")
BENCH = ["bench", *[arg for config in RE_CONFIGS for arg in ("--config", config)], "--budgets", "5", "12"]
SWEEP = ["--executor", "slurm", "--slurm", "configs/slurm/sweep.yaml"]


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # configs name ../shared relative to the project root; so do the jobs


@pytest.fixture
def local_cluster(monkeypatch):
    """`--executor slurm` through submitit's local executor; the jobs also find tests/ (slow_oracle)."""
    monkeypatch.setitem(executors.CLUSTERS, "slurm", "local")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture
def slurm_commands(tmp_path, monkeypatch) -> Path:
    """A folder of stand-ins for SLURM's commands, first on PATH (submitit looks for srun)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, script in (("srun", "exit 1"), ("squeue", "exit 0")):
        command(folder, name, script)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


def command(folder: Path, name: str, script: str) -> None:
    (folder / name).write_text(f"#!/bin/sh\n{script}\n")
    (folder / name).chmod(0o755)


def slow_oracle(shared: Path, delay: float = 0.02) -> list[str]:
    """A table oracle that takes `delay` s a query (tests/slow_oracle.py): a signal lands mid-search."""
    return ["--oracle", json.dumps({"class_path": "slow_oracle.SlowTabularOracle", "init_args": {
        "benchmark": str(shared / "nb201_200ep.csv.gz"), "objective": "cifar10_valid_valid_acc",
        "report": ["cifar10_test_acc"], "delay": delay}})]


def without_timings(summary: Path) -> str:
    """summary.json as written, with the numbers of its two wall-clock entries blanked: everything
    else (every figure, the key order, the formatting) must match byte for byte."""
    text = summary.read_text()
    for key in ("bench_wall_time_s", "wall_time_s"):
        text, found = re.subn(rf'("{key}": (?:\{{\s*"mean": )?)[-0-9.e]+', r"\1#", text)
        assert found == 1, key
    return text


# --- the command-line options ----------------------------------------------------------------------
def executor(argv: list[str], folder: Path) -> executors.Executor:
    """The executor of `bench`'s / `report`'s executor options `argv`."""
    import argparse

    parser = argparse.ArgumentParser()
    executors.add_executor_arguments(parser, workers_default=1)
    return executors.executor_from_arguments(parser.parse_args(argv), folder)


def sbatch_flags(argv: list[str], folder: Path) -> set[str]:
    """The #SBATCH flags of the script that an array of 3 tasks of the executor `argv` submits."""
    slurm = executor(argv, folder).executor()._executor
    slurm.parameters["map_count"] = 3  # what submitit sets for an array of 3 tasks
    return set(re.findall(r"#SBATCH (--\S+)", slurm._make_submission_file_text("python -m x", "uid")))


def test_the_sweep_file_and_the_options_reach_the_sbatch_script(tmp_path, slurm_commands):
    flags = sbatch_flags(SWEEP + ["--slurm-partition", "gpu", "--slurm-gpus", "1", "--slurm-time", "30"], tmp_path)
    # the options override the file; the file's requeue signal, requeue flag and parallelism stay
    assert {"--partition=gpu", "--gpus-per-node=1", "--time=30", "--cpus-per-task=1", "--mem=4GB",
            "--signal=USR2@120", "--requeue", "--array=0-2%3"} <= flags, flags
    assert "--partition=cpu" not in flags
    assert not any(flag.startswith("--gpus") for flag in sbatch_flags(SWEEP, tmp_path))  # a CPU sweep
    sweep = executor(SWEEP, tmp_path)
    assert sweep.runs_per_task == 10 and sweep.constructor == {"slurm_max_num_timeout": 5}
    assert executor(SWEEP + ["--runs-per-task", "3"], tmp_path).runs_per_task == 3
    assert isinstance(executor(["--workers", "3"], tmp_path), LocalPool)


@pytest.mark.parametrize("argv, settings, message", [
    (["--slurm-partition", "gpu"], None, "--slurm-partition applies to --executor slurm only"),
    (["--executor", "slurm", "--slurm", "missing.yaml"], None, "cluster settings file missing.yaml does not exist"),
    (["--executor", "slurm", "--slurm", "{s}"], "slurm_partitio: gpu\n", "Unknown argument 'partitio'"),
    (["--executor", "slurm", "--slurm", "{s}"], "runs_per_task: 0\n", "runs_per_task must be a positive integer"),
    (["--executor", "slurm", "--slurm", "{s}"], "- a list\n", "expected a mapping of submitit parameters"),
])
def test_bad_cluster_settings_are_one_line_errors(tmp_path, capsys, slurm_commands, argv, settings, message):
    if settings is not None:
        (tmp_path / "s.yaml").write_text(settings)
    argv = [arg.replace("{s}", str(tmp_path / "s.yaml")) for arg in argv]
    assert main([*BENCH, "--seeds", "1", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("lightning-nas: error:")
    assert not (tmp_path / "out" / "seed_0").exists()  # nothing ran


@pytest.mark.parametrize("command", ["bench", "report"])
def test_bench_and_report_explain_their_executor_options(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    lines = capsys.readouterr().out.splitlines()
    for option in ("--executor {local,slurm}", "--workers WORKERS", "--slurm YAML", "--slurm-partition NAME",
                   "--slurm-time MINUTES", "--slurm-gpus N", "--slurm-cpus N", "--slurm-mem-gb GB",
                   "--slurm-array-parallelism N", "--runs-per-task N"):
        i = next(i for i, line in enumerate(lines) if line.startswith(f"  {option}"))
        more = itertools.takewhile(lambda line: line.startswith(" " * 20), lines[i + 1:])  # the help's next lines
        explained = " ".join([lines[i][len(option) + 2:], *more])
        assert len(explained.split()) > 2, option


def test_jobs_of_an_earlier_invocation_still_in_flight_are_not_submitted_again(tmp_path, capsys, slurm_commands):
    command(slurm_commands, "squeue", "echo 4242_1")  # one array task still queued
    out = tmp_path / "out"
    (out / "logs" / "submitit").mkdir(parents=True)
    (out / "logs" / "submitit" / executors.JOBS_FILE).write_text(
        json.dumps({"cluster": "slurm", "jobs": ["4242_0", "4242_1"]}))
    assert main([*BENCH, "--seeds", "2", "--out", str(out), *SWEEP]) == 2
    err = capsys.readouterr().err
    assert "jobs 4242_1 of an earlier invocation" in err and "are still queued or running" in err
    assert not (out / "seed_0").exists()
    command(slurm_commands, "squeue", "exit 0")  # all ended: nothing in flight
    assert executors.in_flight("slurm", ["4242_0", "4242_1"]) == []


def test_without_slurm_the_slurm_executor_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    assert main([*BENCH, "--seeds", "1", "--out", str(tmp_path / "out"), *SWEEP]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'Could not detect "srun"' in err[0] and "submit from a machine of the cluster" in err[0]


# --- the local process pool ------------------------------------------------------------------------
@pytest.mark.slow
def test_the_local_pool_reports_each_failure_with_its_log_and_finishes_the_others(tmp_path):
    tasks = [Writes("a", str(tmp_path / "a")), Raises("bad/raises", ""), Dies("bad/dies", ""),
             Writes("b", str(tmp_path / "b")), Writes("c", str(tmp_path / "c"))]
    failures = LocalPool(2, tmp_path / "logs").run(tasks, "test")
    assert [(tmp_path / name).read_text() for name in "abc"] == ["a", "b", "c"]
    assert sorted((f.task, f.error, f.log) for f in failures) == [
        ("bad/dies", "its process died (killed? out of memory?)", str(tmp_path / "logs" / "bad" / "dies.log")),
        ("bad/raises", "ValueError: bad/raises went wrong; second line", str(tmp_path / "logs" / "bad" / "raises.log")),
    ]
    log = (tmp_path / "logs" / "bad" / "raises.log").read_text()
    assert "Traceback" in log and "ValueError: bad/raises went wrong" in log
    assert f"writing {tmp_path / 'a'}" in (tmp_path / "logs" / "a.log").read_text()


# --- submitit ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_submitit_sweep_writes_the_summary_of_the_local_pool(tmp_path, capsys, local_cluster):
    """The same bench through the process pool and through job arrays (two runs to a task): the same
    runs, byte for byte, and the same summary.json but for its wall-clock figures; run again, the
    sweep submits nothing."""
    pool, sweep = tmp_path / "pool", tmp_path / "sweep"  # in the same folder: results.json names its run_dir
    assert main([*BENCH, "--seeds", "3", "--workers", "2", "--out", str(sweep)]) == 0
    sweep.rename(pool)
    assert main([*BENCH, "--seeds", "3", "--out", str(sweep), *SWEEP, "--runs-per-task", "2"]) == 0
    assert without_timings(sweep / "summary.json") == without_timings(pool / "summary.json")
    for seed in range(3):
        assert (sweep / f"seed_{seed}" / "results.json").read_bytes() == (pool / f"seed_{seed}" / "results.json").read_bytes()
    jobs = json.loads((sweep / "logs" / "submitit" / executors.JOBS_FILE).read_text())
    assert jobs["cluster"] == "local" and len(jobs["jobs"]) == 2  # seeds 0-1 and seed 2
    assert "3 runs in 2 local jobs" in capsys.readouterr().out
    assert main([*BENCH, "--seeds", "3", "--out", str(sweep), *SWEEP]) == 0
    assert "3 of 3 runs finished before, reused" in capsys.readouterr().out
    assert json.loads((sweep / "logs" / "submitit" / executors.JOBS_FILE).read_text()) == jobs  # nothing submitted


@pytest.mark.slow
def test_a_task_signalled_before_its_time_limit_is_requeued_and_resumes(tmp_path, shared, local_cluster):
    """SLURM's warning signal before the time limit (USR2, `--signal=USR2@<delay>`, sent here by the
    test to the job's process): submitit calls the task's checkpoint(), which resubmits it, and the
    requeued task resumes the search from its search_state.pt and ends with the results of an
    uninterrupted run."""
    extra = tuple(slow_oracle(shared))
    run = SearchRun("seed_0", RE_CONFIGS, 0, 60, str(tmp_path / "seed_0"), extra)
    run_one(RE_CONFIGS, 0, 60, run.run_dir, list(extra))  # uninterrupted (results.json names its run_dir)
    expected = (Path(run.run_dir) / "results.json").read_bytes()
    shutil.rmtree(run.run_dir)
    # a time limit of 5 minutes: submitit takes a signal after 80 % of it, or 10 minutes before its
    # end (here: at once), for the time limit's, which a task without checkpoint() does not survive
    executor = Submitit("local", tmp_path / "submitit", {"timeout_min": 5}).executor()
    job = executor.submit(TaskGroup([run]))
    state, deadline = Path(run.run_dir) / STATE_FILE, time.monotonic() + 300
    while not state.is_file():
        assert job.state == "RUNNING" and time.monotonic() < deadline, job.paths.stderr.read_text()[-3000:]
        time.sleep(0.01)
    (task,) = _children(int(job.job_id))  # the local controller's one task: the job's process
    os.kill(task, signal.SIGUSR2)
    assert job.result() == [None]
    log = job.paths.stdout.read_text() + job.paths.stderr.read_text()
    assert "this job is timed-out" in log and "Calling checkpoint method" in log and "Requeued job" in log
    assert log.count("--- seed_0: started") == 2
    assert f"{run.run_dir}: resuming from its {STATE_FILE}" in log
    assert (Path(run.run_dir) / "results.json").read_bytes() == expected


@pytest.mark.slow
def test_a_sweep_cut_off_reports_the_lost_task_and_resumes_it_alone(tmp_path, capsys, shared, local_cluster):
    """A job killed outright (no signal first: a node failure, scancel): the sweep reports that run
    with its log and keeps the other; the same command then submits only the lost run, which resumes."""
    out, extra = tmp_path / "sweep", ["--", *slow_oracle(shared, delay=0.05)]
    command = [*BENCH[:-3], "--budgets", "40", "--seeds", "2", "--out", str(out), *SWEEP, "--runs-per-task", "1"]
    reference = tmp_path / "pool"  # run in the same folder: results.json names its run_dir
    assert main([*BENCH[:-3], "--budgets", "40", "--seeds", "2", "--workers", "2", "--out", str(out), *extra]) == 0
    out.rename(reference)

    import threading

    result = {}
    thread = threading.Thread(target=lambda: result.update(code=main([*command, *extra])))
    thread.start()
    jobs, deadline = out / "logs" / "submitit" / executors.JOBS_FILE, time.monotonic() + 300
    while not (jobs.is_file() and any((out / f"seed_{s}" / STATE_FILE).is_file() for s in range(2))):
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    controllers = json.loads(jobs.read_text())["jobs"]
    killed = next(s for s in range(2) if (out / f"seed_{s}" / STATE_FILE).is_file())
    for task in _children(int(controllers[killed])):  # one array task per seed, in seed order
        os.kill(task, signal.SIGKILL)
    thread.join(300)
    assert result == {"code": 1}
    err = capsys.readouterr().err
    assert f"1 of 2 runs failed" in err and f"seed_{killed}: UncompletedJobError" in err
    assert f"(log: {out / 'logs' / 'submitit' / controllers[killed]}_0_log.err)" in err
    assert (out / f"seed_{1 - killed}" / "results.json").is_file()
    assert not (out / f"seed_{killed}" / "results.json").exists()

    assert main([*command, *extra]) == 0
    assert "1 of 2 runs finished before, reused" in capsys.readouterr().out
    rerun = json.loads(jobs.read_text())["jobs"]
    log = (out / "logs" / "submitit" / f"{rerun[0]}_0_log.out").read_text()
    assert len(rerun) == 1 and f"resuming from its {STATE_FILE}" in log
    assert without_timings(out / "summary.json") == without_timings(reference / "summary.json")


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


# --- the report --------------------------------------------------------------------------------------
class InProcess:
    """An executor that runs each task in this process, except those named in `fail`, which fail."""

    def __init__(self, fail: list[str]):
        self.fail, self.ran = set(fail), []

    def run(self, tasks, title: str) -> list[Failure]:
        failures = []
        for task in tasks:
            self.ran.append(task.name)
            if task.name in self.fail:
                failures.append(Failure(task.name, "RuntimeError: lost", "the.log"))
            else:
                task()
        return failures


@pytest.mark.slow
def test_a_failed_run_fails_its_cell_only_and_the_rerun_submits_only_it(tmp_path, shared):
    cifar10, methods = protocol("nb201-cifar10"), [m for m in every_method() if m.name in ("RS", "RE")]
    runs, records, lost = tmp_path / "runs", tmp_path / "records", "nb201-cifar10/RE/seed_1"
    executor = InProcess([lost])
    arguments = (shared, 2, [5], executor, runs, records, checkpoint_producers(), False, [])
    with pytest.raises(RunsFailed) as failed:
        run_searches([cifar10], methods, *arguments, [])
    assert [str(f) for f in failed.value.failures] == [f"{lost}: RuntimeError: lost (log: the.log)"]
    assert executor.ran == [f"nb201-cifar10/{m}/seed_{s}" for m in ("RS", "RE") for s in range(2)]
    assert (records / "nb201-cifar10" / "RS.tar.gz").is_file()  # the finished cell is kept
    assert not (records / "nb201-cifar10" / "RE.tar.gz").exists()
    # on a partial table the cell is listed as not completed instead; only the lost run is submitted
    executor.ran, not_completed = [], []
    results = run_searches([dataclasses.replace(cifar10, partial=True)], methods, *arguments, not_completed)
    assert executor.ran == [lost] and [r["method"] for r in results] == ["RS"]
    assert not_completed == [{"protocol": "nb201-cifar10", "method": "RE",
                              "reason": f"1 of 1 runs failed, e.g. {lost}: RuntimeError: lost (log: the.log)"}]


@pytest.mark.slow
def test_the_report_submits_its_searches_as_a_sweep(tmp_path, capsys, shared, local_cluster):
    """`report --executor slurm` gives the results of the local pool (wall-clock figures apart)."""
    runs, records = tmp_path / "runs", tmp_path / "records"
    common = ["report", "--quick", "--parts", "search", "--protocols", "nb201-cifar10", "--methods", "RS",
              "--runs", str(runs), "--records", str(records), "--shared", str(shared)]
    assert main([*common, "--workers", "2", "--out", str(tmp_path / "pool")]) == 0
    shutil.rmtree(runs)
    shutil.rmtree(records)
    assert main([*common, *SWEEP, "--out", str(tmp_path / "sweep")]) == 0
    assert "2 runs in 1 local jobs" in capsys.readouterr().out  # runs_per_task: 10

    def results(folder: str) -> list[dict]:
        data = json.loads((tmp_path / folder / "report_data.json").read_text())["results"]
        for entry in data:
            entry["summary"].pop("wall_time_s")
        return data

    assert results("sweep") == results("pool") and results("pool")[0]["searched_here"] == 2
    assert (runs / "quick" / "logs" / "submitit" / executors.JOBS_FILE).is_file()
