"""Kill a search anywhere, resume it, get the same results.json byte for byte; stop signals are graceful.

Every method runs as the user runs it (`lightning-nas search` in its own process) against a table
oracle that takes 20 ms a query (tests/slow_oracle.py), so that a SIGKILL lands inside a round: in
an evaluation, a fine-tune or a checkpoint write."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lightning_nas.search.journal import JOURNAL_FILE
from lightning_nas.search.loop import STATE_FILE
from lightning_nas.search.outputs import TIMING_FILE
from tiny_crlso import tiny_crlso

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TINY_DCL = ["--model.init_args.pretrained=null", "--model.init_args.from_scratch=true", "--model.init_args.hidden=16",
            "--model.init_args.embed_dim=16",
            "--model.init_args.gin_layers=2", "--model.init_args.transformer_layers=1", "--model.init_args.heads=2"]
TINY_CTNAS = ["--model.init_args.hidden=16", "--model.init_args.num_layers=2", "--strategy.init_args.initial_size=8",
              "--strategy.init_args.controller_steps=4", "--strategy.init_args.candidate_pool=16",
              "--strategy.init_args.explore_pairs=8"]


def slow_oracle(shared: Path) -> str:
    return json.dumps({"class_path": "slow_oracle.SlowTabularOracle", "init_args": {
        "benchmark": str(shared / "nb201_200ep.csv.gz"), "objective": "cifar10_valid_valid_acc",
        "report": ["cifar10_test_acc"], "delay": 0.02}})


@pytest.fixture(scope="module")
def crlso_config(shared, tmp_path_factory) -> Path:
    """A small CR-LSO fit (its search needs a trained G-VAE) and the search config that loads it."""
    return tiny_crlso(shared, tmp_path_factory.mktemp("crlso"), num_labelled=10, max_epochs=1, top_k=4)


@pytest.fixture(scope="module")
def delta_nas_ckpt(tmp_path_factory) -> Path:
    """Delta-NAS's search only needs the predictor's weights; an untrained one resumes the same way."""
    from lightning_nas.predictors.difference import DifferencePredictor

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("delta") / "delta.ckpt"
    torch.save({"state_dict": DifferencePredictor(space="nb201", encoding="adjacency", hidden=128, num_layers=3).state_dict()}, path)
    return path


def method_args(method: str, request) -> list[str]:
    """The search command line of each method, small enough for a test; at least four rounds."""
    def config(name: str) -> list[str]:  # the method, its NB201 file where it has one, NB201 CIFAR-10
        files = [f"configs/methods/{name}.yaml", f"configs/methods/nb201/{name}.yaml", "configs/protocols/nb201-cifar10.yaml"]
        return [arg for f in files if (ROOT / f).is_file() for arg in ("--config", f)]

    if method == "RS":
        return [*config("rs"), "--budget", "30", "--ask_batch", "2"]
    if method == "RE":
        return [*config("re"), "--budget", "30", "--ask_batch", "2"]
    if method == "DCL-ENAS":
        return [*config("dcl_enas"), *TINY_DCL, "--budget", "25", "--ask_batch", "5", "--finetune_epochs", "2",
                "--strategy.init_args.initial_size", "5", "--strategy.init_args.infill_size", "5"]
    if method == "CTNAS":
        return [*config("ctnas"), *TINY_CTNAS, "--budget", "40", "--ask_batch", "8", "--finetune_epochs", "2"]
    if method == "CR-LSO":
        return ["--config", str(request.getfixturevalue("crlso_config"))]
    if method == "EDNAG":
        return [*config("ednag"), "--strategy.init_args.steps", "10", "--strategy.init_args.population_size", "10",
                "--budget", "25", "--ask_batch", "5", "--finetune_epochs", "2"]
    if method == "Delta-NAS":
        return [*config("delta_nas"), "--ckpt_path", str(request.getfixturevalue("delta_nas_ckpt")), "--budget", "40"]
    raise KeyError(method)


def search_command(args: list[str], run_dir: Path, shared: Path) -> list[str]:
    return [sys.executable, "-m", "lightning_nas", "search", *args, "--run_dir", str(run_dir),
            "--progress", "false", "--oracle", slow_oracle(shared)]


def search_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", **extra}
    return env


def run_to_end(command: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=ROOT, env=env or search_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def uninterrupted(command: list[str], monkeypatch) -> bytes:
    """The results.json of the same search run to its end in this process (one torch thread, as
    the subprocesses), then removed so that the interrupted run starts from nothing."""
    from lightning_nas.cli import main

    monkeypatch.chdir(ROOT)
    argv = command[command.index("search"):]
    assert main(argv) == 0
    run_dir = Path(argv[argv.index("--run_dir") + 1])
    assert (run_dir / TIMING_FILE).is_file()  # wall-clock figures live apart from the results
    results = (run_dir / "results.json").read_bytes()
    shutil.rmtree(run_dir)
    return results


def start_and_wait_for_rounds(command: list[str], run_dir: Path, rounds: int, env: dict | None = None):
    """Start a search and return it (still running) once `rounds` rounds have been journaled, with
    the duration of the last round. (A full checkpoint is written only now and then; the journal
    gets a line per round.)"""
    journal = run_dir / JOURNAL_FILE
    process = subprocess.Popen(command, cwd=ROOT, env=env or search_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    versions, stamps = set(), []
    deadline = time.monotonic() + 300
    while len(versions) < rounds:
        if process.poll() is not None:
            pytest.fail(f"the search ended before its round {rounds}: {process.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, "no round within 300 s"
        try:
            st = os.stat(journal)
        except FileNotFoundError:
            pass
        else:
            if (st.st_ino, st.st_mtime_ns, st.st_size) not in versions:
                versions.add((st.st_ino, st.st_mtime_ns, st.st_size))
                stamps.append(time.monotonic())
        time.sleep(0.005)
    last_round = stamps[-1] - stamps[-2] if len(stamps) > 1 else 0.05
    return process, last_round


METHODS = ["RS", "RE", "DCL-ENAS", "CTNAS", "CR-LSO", "EDNAG", "Delta-NAS"]


@pytest.mark.parametrize("method", METHODS)
def test_sigkill_anywhere_then_resume_gives_identical_results(method, shared, tmp_path, request, monkeypatch):
    run_dir = tmp_path / "run"
    command = search_command(method_args(method, request), run_dir, shared)
    expected = uninterrupted(command, monkeypatch)

    rng = random.Random(f"kill {method}")
    for attempt in range(3):  # a kill drawn too late finds the search finished: draw again
        process, last_round = start_and_wait_for_rounds(command, run_dir, rounds=rng.randint(2, 3))
        time.sleep(rng.uniform(0.0, 0.8 * last_round))
        process.kill()
        process.wait()
        if not (run_dir / "results.json").exists():
            break
        shutil.rmtree(run_dir)
    assert process.returncode == -signal.SIGKILL and not (run_dir / "results.json").exists()

    run_to_end(command)
    assert (run_dir / "results.json").read_bytes() == expected


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_stop_after_a_checkpoint(signum, shared, tmp_path, request, monkeypatch):
    run_dir = tmp_path / "run"
    command = search_command([*method_args("DCL-ENAS", request)], run_dir, shared)
    expected = uninterrupted(command, monkeypatch)
    process, _ = start_and_wait_for_rounds(command, run_dir, rounds=2)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signum, stderr[-2000:]
    message = stderr.strip().splitlines()[-1]
    assert f"stopped by {signal.Signals(signum).name}" in message and "run the same command again to resume" in message
    assert not (run_dir / "results.json").exists()
    stopped_at = len(json.loads(torch.load(run_dir / STATE_FILE, weights_only=True)["history"]))
    assert f"after {stopped_at} of 25 queries" in message

    run_to_end(command)
    assert (run_dir / "results.json").read_bytes() == expected


def test_slurm_requeue_signal_checkpoints_and_requeues(shared, tmp_path, request, monkeypatch):
    """Under SLURM (Lightning's SLURMEnvironment, detected from the job's variables) the requeue
    signal checkpoints, calls `scontrol requeue <job id>`, and the requeued job resumes."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "scontrol_calls"
    (fake_bin / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    (fake_bin / "scontrol").chmod(0o755)
    env = search_env(SLURM_NTASKS="1", SLURM_JOB_ID="4242", SLURM_JOB_NAME="nas-search", SLURM_PROCID="0",
                     SLURM_LOCALID="0", SLURM_NODEID="0", PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    run_dir = tmp_path / "run"
    command = search_command(method_args("RE", request), run_dir, shared)
    expected = uninterrupted(command, monkeypatch)
    process, _ = start_and_wait_for_rounds(command, run_dir, rounds=2, env=env)
    process.send_signal(signal.SIGUSR1)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]
    assert "SLURM job requeued" in stderr
    assert calls.read_text().split() == ["requeue", "4242"]
    assert not (run_dir / "results.json").exists()
    run_to_end(command, env)  # what the requeued job runs
    assert (run_dir / "results.json").read_bytes() == expected


def test_a_checkpoint_of_another_search_is_refused(tmp_path, capsys, monkeypatch):
    from lightning_nas.cli import main

    monkeypatch.chdir(ROOT)
    run = ["--run_dir", str(tmp_path / "run"), "--progress", "false", "--budget", "10"]
    assert main(["search", "--config", "configs/methods/re.yaml", "--config", "configs/protocols/nb201-cifar10.yaml", *run]) == 0
    state = (tmp_path / "run" / STATE_FILE).read_bytes()
    assert main(["search", "--config", "configs/methods/rs.yaml", "--config", "configs/protocols/nb201-cifar10.yaml", *run]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "belongs to another search" in err and "RegularizedEvolution" in err and "--run_dir" in err
    assert main(["search", "--config", "configs/methods/re.yaml", "--config", "configs/protocols/nb201-cifar10.yaml", "--seed_everything", "5", *run]) == 2
    assert "seed 0 there, 5 here" in capsys.readouterr().err
    assert (tmp_path / "run" / STATE_FILE).read_bytes() == state  # nothing was overwritten


def test_a_budget_below_the_queries_already_made_is_refused(tmp_path, capsys, monkeypatch):
    from lightning_nas.cli import main

    monkeypatch.chdir(ROOT)
    run = ["--config", "configs/methods/re.yaml", "--config", "configs/protocols/nb201-cifar10.yaml", "--run_dir", str(tmp_path / "run"), "--progress", "false"]
    assert main(["search", *run, "--budget", "12"]) == 0
    results = (tmp_path / "run" / "results.json").read_bytes()
    assert main(["search", *run, "--budget", "8"]) == 2
    assert "holds a search with 12 queries, more than the budget of 8" in capsys.readouterr().err
    assert main(["search", *run, "--budget", "12"]) == 0  # a finished run asked again: the same answer, no query
    assert (tmp_path / "run" / "results.json").read_bytes() == results


def test_a_foreign_or_damaged_checkpoint_is_refused(tmp_path, capsys, monkeypatch):
    from lightning_nas.cli import main

    monkeypatch.chdir(ROOT)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / STATE_FILE).write_bytes(b"not a checkpoint")
    args = ["search", "--config", "configs/methods/re.yaml", "--config", "configs/protocols/nb201-cifar10.yaml", "--run_dir", str(tmp_path / "run"), "--progress", "false"]
    assert main(args) == 2
    assert "is not a search checkpoint this version can resume" in capsys.readouterr().err
