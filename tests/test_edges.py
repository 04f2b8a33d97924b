"""Hard edges found by using the landed main as a new user would (issue 32): two searches on one run
directory, blank or NaN targets, a table smaller than the budget, overwriting an archive, the cost of
a query in a long search, loggers, and the README's fit-once workflow."""
import csv
import gzip
import importlib.util
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.benchmarks.oracle import TabularOracle
from lightning_nas.cli import main
from lightning_nas.errors import ConfigError
from lightning_nas.search.baselines import RandomSearch, RegularizedEvolution
from lightning_nas.search.journal import JOURNAL_FILE
from lightning_nas.search.lock import LOCK_FILE
from lightning_nas.search.loop import STATE_FILE, SearchLoop
from test_resume import ROOT, search_env

RS = ("configs/methods/rs.yaml", "configs/protocols/nb201-cifar10.yaml")
OBJECTIVE, REPORT = "cifar10_valid_valid_acc", "cifar10_test_acc"


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.fixture(scope="module")
def nb201(shared) -> Benchmark:
    return Benchmark.load(shared / "nb201_200ep.csv.gz")


def strict_json(path: Path):
    """The file parsed as strict JSON: a bare NaN or Infinity fails."""
    def refuse(name):
        raise AssertionError(f"{path} holds a bare {name}: not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def table_rows(shared: Path, n: int) -> list[list[str]]:
    with gzip.open(shared / "nb201_200ep.csv.gz", "rt", newline="") as f:
        reader = csv.reader(f)
        return [row for _, row in zip(range(n + 1), reader)]


def write_table(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def args_of(*configs: str) -> list[str]:
    return [arg for c in configs for arg in ("--config", c)]


def last_err_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


# ------------------------------------------------------------------------------------------
# 1. one search at a time per run directory
# ------------------------------------------------------------------------------------------
def rs_command(run_dir: Path, shared: Path, delay: float) -> list[str]:
    """RS on NB201 against the table oracle that takes `delay` seconds a query (tests/slow_oracle.py)."""
    oracle = json.dumps({"class_path": "slow_oracle.SlowTabularOracle", "init_args": {
        "benchmark": str(shared / "nb201_200ep.csv.gz"), "objective": OBJECTIVE, "report": [REPORT], "delay": delay}})
    return [sys.executable, "-m", "lightning_nas", "search", *args_of(*RS), "--budget", "300", "--run_dir",
            str(run_dir), "--progress", "false", "--oracle", oracle]


@pytest.mark.slow
def test_a_second_search_on_a_run_directory_is_refused_and_a_dead_ones_lock_is_taken_over(shared, tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.Popen(rs_command(run_dir, shared, delay=0.2), cwd=ROOT, env=search_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / JOURNAL_FILE).is_file():  # it holds the lock and is searching (for a minute)
        assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()[-2000:]
        time.sleep(0.05)
    second = subprocess.run(rs_command(run_dir, shared, delay=0.0), cwd=ROOT, env=search_env(), capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 2, second.stderr[-2000:]
    assert second.stderr.strip().splitlines()[-1] == (
        f"lightning-nas: error: run_dir {run_dir} is in use by another search (pid {first.pid}): wait for it "
        "to end, or give another --run_dir")
    assert first.poll() is None  # the first goes on undisturbed
    first.kill()  # a dead process's lock file stays, with its pid, but holds no lock
    first.wait()
    assert (run_dir / LOCK_FILE).read_text().strip() == str(first.pid)
    third = subprocess.run(rs_command(run_dir, shared, delay=0.0), cwd=ROOT, env=search_env(), capture_output=True,
                           text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    assert len(strict_json(run_dir / "results.json")["queries"]) == 300 and not (run_dir / LOCK_FILE).exists()


# ------------------------------------------------------------------------------------------
# 2. blank or NaN targets
# ------------------------------------------------------------------------------------------
def with_gaps(bench: Benchmark, every: int) -> Benchmark:
    """`bench` with the objective blank (NaN) in every `every`-th cell and the report in every 7th."""
    metrics = {k: v.copy() for k, v in bench.metrics.items()}
    metrics[OBJECTIVE][::every] = np.nan
    metrics[REPORT][3::7] = np.nan
    return replace(bench, metrics=metrics, _index=None)


def test_convert_counts_the_cells_without_a_value(shared, tmp_path, capsys):
    rows = table_rows(shared, 30)
    column = rows[0].index(OBJECTIVE)
    for row in rows[1:4]:
        row[column] = ""
    rows[5][column] = "nan"
    assert main(["convert", str(write_table(tmp_path / "gaps.csv", rows)), "-o", str(tmp_path / "gaps.npz")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[1].startswith(f"cells without a value (blank or NaN), of 30: {OBJECTIVE} 4;")


@pytest.mark.parametrize("table_only", [False, True])
def test_cells_without_the_objective_are_charged_and_skipped_or_never_offered(nb201, tmp_path, table_only):
    gaps = with_gaps(nb201, every=3)
    oracle = TabularOracle(gaps, OBJECTIVE, [REPORT], budget=40)
    results = SearchLoop(RandomSearch(), oracle, tmp_path, seed=0, progress=False, table_only=table_only).run()
    skipped = results["skipped_without_objective"]
    assert len(results["queries"]) + skipped == 40  # a charged cell without objective takes budget
    assert (skipped > 5) if not table_only else (skipped == 0)
    assert all(math.isfinite(q["score"]) for q in results["queries"])  # never recorded, never told
    assert [q["query"] for q in results["queries"]] == sorted(q["query"] for q in results["queries"])
    written = strict_json(tmp_path / "results.json")
    assert written["skipped_without_objective"] == skipped
    blank_reports = [q for q in written["queries"] if q["report"][REPORT] is None]  # NaN -> null
    assert blank_reports and all(q["best"]["score"] is not None for q in written["queries"])
    csv_rows = list(csv.DictReader(open(tmp_path / "queries.csv")))
    assert [r[REPORT] for r in csv_rows].count("") == len(blank_reports)  # an empty cell, not "nan"


# ------------------------------------------------------------------------------------------
# 3. a table smaller than the budget
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_table(shared, tmp_path_factory) -> Path:
    """A user's table: the first 30 cells of NB201."""
    return write_table(tmp_path_factory.mktemp("small") / "thirty.csv", table_rows(shared, 30))


SMALL_METHODS = {
    "RS": [*args_of(*RS)],
    "RE": [*args_of("configs/methods/re.yaml", "configs/protocols/nb201-cifar10.yaml")],
    "EDNAG": [*args_of("configs/methods/ednag.yaml", "configs/methods/nb201/ednag.yaml",
                       "configs/protocols/nb201-cifar10.yaml"),
              "--strategy.init_args.steps", "10", "--finetune_epochs", "1"],
}


@pytest.mark.parametrize("method", SMALL_METHODS)
def test_a_table_smaller_than_the_budget_ends_the_search_early_with_its_results(method, small_table, tmp_path, capsys):
    run = [*SMALL_METHODS[method], "--data.init_args.benchmark", str(small_table), "--table_only", "true",
           "--run_dir", str(tmp_path / "run"), "--progress", "false"]
    assert main(["search", *run]) == 0
    results = strict_json(tmp_path / "run" / "results.json")
    table = {row[0] for row in table_rows_of(small_table)}
    assert {q["arch"] for q in results["queries"]} <= table and results["skipped_without_objective"] == 0
    # RS and RE query all 30; EDNAG counts isomorphic cells once (as NB201 cells they are one network)
    assert len(results["queries"]) == 30 if method != "EDNAG" else 20 <= len(results["queries"]) <= 30
    line = last_err_line(capsys)
    assert line.startswith(f"lightning-nas: stopped early after {len(results['queries'])} of 100 queries: ")
    assert results["stopped_early"] in line
    finished = (tmp_path / "run" / "results.json").read_bytes()
    assert main(["search", *run]) == 0  # asked again: the same results, no query
    assert (tmp_path / "run" / "results.json").read_bytes() == finished


def table_rows_of(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))[1:]


def test_without_table_only_a_stalled_search_ends_early_and_says_what_to_set(small_table, tmp_path, capsys):
    run = [*SMALL_METHODS["RS"], "--data.init_args.benchmark", str(small_table), "--run_dir", str(tmp_path),
           "--progress", "false"]
    assert main(["search", *run]) == 0
    results = strict_json(tmp_path / "results.json")
    assert "1000 rounds in a row" in results["stopped_early"] and "set table_only: true" in results["stopped_early"]
    assert results["skipped_not_in_benchmark"] > 1000 and "stopped early" in last_err_line(capsys)


# ------------------------------------------------------------------------------------------
# 4. convert onto an existing archive
# ------------------------------------------------------------------------------------------
def test_convert_refuses_to_replace_an_archive_unless_forced(small_table, tmp_path, capsys):
    out = tmp_path / "thirty.npz"
    out.write_bytes(b"the user's 13-column archive")
    assert main(["convert", str(small_table), "-o", str(out)]) == 2
    assert last_err_line(capsys) == (f"lightning-nas: error: {out} exists: pass --force to replace it, "
                                     "or give another -o")
    assert out.read_bytes() == b"the user's 13-column archive"
    assert main(["convert", str(small_table), "-o", str(out), "--force"]) == 0
    assert len(Benchmark.load(out)) == 30


# ------------------------------------------------------------------------------------------
# 5. the journal: a constant cost per query, resumption still exact
# ------------------------------------------------------------------------------------------
class Crash(Exception):
    pass


class CrashingOracle(TabularOracle):
    """Dies (as a killed process would) at its `crash_at`-th evaluation; counts its evaluations."""

    def __init__(self, *args, crash_at: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.crash_at, self.evaluations = crash_at, 0

    def _evaluate(self, a):
        self.evaluations += 1
        if self.evaluations == self.crash_at:
            raise Crash
        return super()._evaluate(a)


def re_search(nb201, run_dir: Path, crash_at: int | None = None, ask_batch: int = 3, share: float = 1e-9):
    """RE on NB201 with full checkpoints rare (a tiny `checkpoint_share`): the journal holds the rounds."""
    oracle = CrashingOracle(nb201, OBJECTIVE, [REPORT], budget=60, crash_at=crash_at)
    loop = SearchLoop(RegularizedEvolution(), oracle, run_dir, seed=1, ask_batch=ask_batch, progress=False)
    loop.checkpoint_share = share
    return loop, oracle


def test_a_crash_replays_the_journal_and_ends_byte_identical(nb201, tmp_path):
    loop, _ = re_search(nb201, tmp_path / "full")
    loop.run()
    expected = (tmp_path / "full" / "results.json").read_bytes()

    loop, _ = re_search(nb201, tmp_path / "cut", crash_at=41)
    with pytest.raises(Crash):
        loop.run()
    journal = (tmp_path / "cut" / JOURNAL_FILE).read_text().splitlines()
    assert len(journal) > 5  # rounds since the last full checkpoint: one line each
    with open(tmp_path / "cut" / JOURNAL_FILE, "a") as f:
        f.write('{"first": 39, "charges": [["|nor_conv')  # a line cut off by the crash
    loop, oracle = re_search(nb201, tmp_path / "cut")
    loop.run()
    assert (tmp_path / "cut" / "results.json").read_bytes() == expected
    assert oracle.evaluations == 60 - 39  # the 13 rounds of 3 journaled before the crash are not asked again


def test_a_resumed_search_that_goes_another_way_is_refused(nb201, tmp_path):
    loop, _ = re_search(nb201, tmp_path, crash_at=31)
    with pytest.raises(Crash):
        loop.run()
    journal = (tmp_path / JOURNAL_FILE).read_bytes()
    loop, _ = re_search(nb201, tmp_path, ask_batch=5)
    with pytest.raises(ConfigError, match="went another way than before it stopped .* resume with the same config"):
        loop.run()
    assert (tmp_path / JOURNAL_FILE).read_bytes() == journal  # nothing lost: the right config still resumes


def test_full_checkpoints_are_few_in_a_long_search(nb201, tmp_path, monkeypatch):
    writes = []
    real = SearchLoop._checkpoint
    monkeypatch.setattr(SearchLoop, "_checkpoint", lambda self, rng: (writes.append(self.oracle.used), real(self, rng)))
    oracle = TabularOracle(nb201, OBJECTIVE, [REPORT], budget=3000)
    SearchLoop(RandomSearch(), oracle, tmp_path, seed=0, progress=False, table_only=True).run()
    # the old loop wrote the whole state 3,000 times; now the first round, a few more, and the end
    assert writes[0] == 1 and writes[-1] == 3000 and len(writes) < 100
    assert len((tmp_path / JOURNAL_FILE).read_text().splitlines()) == 1  # emptied by the last checkpoint


def test_the_performance_figures_of_the_loop(shared):
    from benchmarks.report.performance import query_cost

    cost = query_cost(shared / "nb201_200ep.csv.gz", sizes=(20, 60), old_sizes=(20,))
    assert set(cost["journal"]) == {"20", "60"} and set(cost["every_round"]) == {"20"}
    assert all(v["second_half_s"] > 0 and v["mean_s"] > 0 for v in cost["journal"].values())


# ------------------------------------------------------------------------------------------
# 6. loggers
# ------------------------------------------------------------------------------------------
def test_search_logs_every_query_to_a_csv_logger_in_the_run_directory(tmp_path):
    base = ["search", *args_of(*RS), "--budget", "12", "--progress", "false"]
    assert main([*base, "--run_dir", str(tmp_path / "logged")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "logged" / "logs" / "version_0" / "metrics.csv")))
    results = strict_json(tmp_path / "logged" / "results.json")
    assert [int(r["step"]) for r in rows] == [q["query"] for q in results["queries"]]
    assert [float(r["score"]) for r in rows] == pytest.approx([q["score"] for q in results["queries"]])
    assert [float(r["best_" + REPORT]) for r in rows] == pytest.approx([q["best"]["report"][REPORT] for q in results["queries"]])

    assert main([*base, "--run_dir", str(tmp_path / "quiet"), "--trainer.logger", "false"]) == 0
    assert not (tmp_path / "quiet" / "logs").exists()
    quiet = strict_json(tmp_path / "quiet" / "results.json")
    for r in (results, quiet):  # the logger changes nothing else
        del r["config"]["trainer"]["logger"], r["config"]["run_dir"]
    assert quiet == results

    assert main([*base, "--run_dir", str(tmp_path / "own"), "--trainer.logger", "CSVLogger",
                 "--trainer.logger.save_dir", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "lightning_logs" / "version_0" / "metrics.csv").is_file()


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_a_missing_logger_package_is_a_one_line_error(tmp_path, capsys):
    assert main(["search", *args_of(*RS), "--run_dir", str(tmp_path), "--trainer.logger", "TensorBoardLogger",
                 "--trainer.logger.save_dir", str(tmp_path)]) == 2
    line = last_err_line(capsys)
    assert "Neither `tensorboard` nor `tensorboardX` is available" in line and "--trainer.logger CSVLogger" in line


def test_a_predictor_reports_its_tau_and_loss_each_round(tmp_path):
    args = ["search", *SMALL_METHODS["EDNAG"], "--budget", "15", "--run_dir", str(tmp_path), "--progress", "false"]
    assert main(args) == 0
    rows = list(csv.DictReader(open(tmp_path / "logs" / "version_0" / "metrics.csv")))
    rounds = [r for r in rows if r["predictor_train_loss"]]
    assert len(rounds) >= 2 and all(math.isfinite(float(r["predictor_train_loss"])) for r in rounds)
    assert any(r["predictor_tau"] for r in rounds)


# ------------------------------------------------------------------------------------------
# 9. the README's fit-once workflow, command by command
# ------------------------------------------------------------------------------------------
#: what makes each README command small enough for a test (appended to it), by its first config file
QUIET = ["--trainer.enable_progress_bar", "false"]
TINY = {
    ("fit", "configs/fits/nb201/gin.yaml"): ["--trainer.max_epochs", "1", "--data.init_args.max_val", "20", *QUIET],
    ("test", "configs/fits/nb201/gin.yaml"): ["--trainer.limit_test_batches", "2", *QUIET],
    ("search", "configs/methods/ednag.yaml"): ["--strategy.init_args.steps", "5", "--finetune_epochs", "1",
                                               "--progress", "false"],
    ("fit", "configs/fits/nb201/dcl_enas_pretrain.yaml"): [
        "--trainer.max_epochs", "1", "--data.init_args.pool_size", "300", "--data.init_args.num_clusters", "5",
        "--model.init_args.num_clusters", "5", *QUIET],
    ("search", "configs/methods/dcl_enas.yaml"): ["--budget", "30", "--strategy.init_args.initial_size", "10",
                                                  "--finetune_epochs", "1", "--progress", "false"],
    ("bench", "configs/methods/re.yaml"): ["--seeds", "2", "--workers", "1", "--budgets", "10", "20"],
}


def readme_workflow() -> list[list[str]]:
    """The commands of the README's "fit once, search many times" block, one argument list each."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## The usual workflow: fit once, search many times\n+```bash\n(.*?)```", text, re.S).group(1)
    commands = [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()]
    return [c[1:] for c in commands if c and c[0] == "lightning-nas"]


@pytest.mark.slow
def test_the_readme_fit_once_workflow_runs_as_written(shared, tmp_path, monkeypatch):
    project = tmp_path / "project"  # the layout the commands expect: configs/, and ../shared/benchmarks
    project.mkdir()
    (project / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "shared").symlink_to(shared.parent)
    monkeypatch.chdir(project)
    commands = readme_workflow()
    assert [c[0] for c in commands] == ["fit", "test", "search", "search", "fit", "search", "bench"]
    for command in commands:
        assert main([*command, *TINY[command[0], command[2]]]) == 0, command
    for run_dir in ("checkpoints/nb201/ednag", "checkpoints/nb201/ednag_seed7"):
        results = json.loads((project / run_dir / "results.json").read_text())
        assert results["strategy"] == "EDNAG" and len(results["queries"]) == results["budget"] == 100
        assert results["predictor_labels_charged"] == 50  # the fitted GIN's labels: the first 50 queries


@pytest.mark.parametrize("command", [["search", *[a for c in RS for a in ("--config", c)], "--budget", "3"],
                                     ["fit", "--config", "configs/fits/nb201/gin.yaml"]])
@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_numpy_cannot_take_is_a_one_line_error(command, seed, tmp_path, capsys):
    """Lightning seeds numpy too, which accepts 0 to 2**32 - 1: outside that is the config's fault (exit 2)."""
    assert main([*command, "--seed_everything", str(seed), *(["--run_dir", str(tmp_path / "run")] if command[0] == "search" else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"lightning-nas: error: `seed_everything: {seed}` is out of range: give an integer from 0 to 4294967295"
