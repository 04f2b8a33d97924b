"""Lightning's DDP on CPU (gloo, 2 processes): predictor fit and resume, and a search whose ranks
share the evaluations and end with the results of one process."""
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lightning_nas.benchmarks.oracle import Evaluation, Oracle
from lightning_nas.search.loop import SearchLoop
from lightning_nas.search.outputs import TIMING_FILE
from lightning_nas.search.baselines import RandomSearch
from lightning_nas.spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "lightning_nas", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def results_without_launch_settings(run_dir: Path) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    del results["config"]["trainer"], results["config"]["run_dir"]
    return results


def ranks(run_dir: Path) -> int:
    return json.loads((run_dir / TIMING_FILE).read_text())["ranks"]


def test_ddp_fit_splits_the_batches_and_resumes_from_last(shared, tmp_path):
    fit = yaml.safe_load((ROOT / "configs/fits/nb201/gin.yaml").read_text())
    fit["trainer"].update(max_epochs=2, default_root_dir=str(tmp_path), enable_progress_bar=False)
    fit["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(tmp_path)
    fit["model"]["init_args"].update(hidden=16, num_layers=2)
    fit["data"]["init_args"].update(num_labelled=256, max_val=128, batch_size=64)
    config = tmp_path / "fit.yaml"
    config.write_text(yaml.safe_dump(fit))
    cli("fit", "--config", str(config), *DDP)
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    # 256 labels in batches of 64 on each of 2 ranks: 2 steps per epoch (4 in one process)
    assert last["epoch"] == 1 and last["global_step"] == 4
    cli("fit", "--config", str(config), *DDP, "--trainer.max_epochs", "3", "--ckpt_path", "last")
    resumed = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 2 and resumed["global_step"] == 6


TABLE_SEARCH = ["search", "--config", "configs/methods/re.yaml", "--config", "configs/protocols/nb201-cifar10.yaml", "--budget", "30", "--ask_batch", "4", "--progress", "false"]


def in_this_process(*args: str) -> None:
    from lightning_nas.cli import main

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert main(list(args)) == 0
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("one")
    in_this_process(*TABLE_SEARCH, "--run_dir", str(run_dir))
    assert ranks(run_dir) == 1
    return results_without_launch_settings(run_dir)


def test_ddp_search_on_a_table_equals_one_process(tmp_path, one_process):
    cli(*TABLE_SEARCH, "--run_dir", str(tmp_path / "two"), *DDP)
    assert results_without_launch_settings(tmp_path / "two") == one_process
    assert ranks(tmp_path / "two") == 2


def test_two_slurm_tasks_form_one_search(tmp_path, one_process):
    """What `srun` starts: one process per task, Lightning's SLURMEnvironment makes them the ranks."""
    slurm = dict(SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="2", SLURM_NNODES="1", SLURM_NODEID="0",
                 SLURM_NODELIST="localhost", SLURM_JOB_ID="777", SLURM_JOB_NAME="nas", OMP_NUM_THREADS="1")
    tasks = [subprocess.Popen([sys.executable, "-m", "lightning_nas", *TABLE_SEARCH, "--run_dir", str(tmp_path / "slurm"), *DDP],
                              cwd=ROOT, env={**os.environ, **slurm, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    for task in tasks:
        _, err = task.communicate(timeout=600)
        assert task.returncode == 0, err[-3000:]
    assert results_without_launch_settings(tmp_path / "slurm") == one_process and ranks(tmp_path / "slurm") == 2


def test_ddp_live_training_shares_the_candidates_and_equals_one_process(tmp_path):
    config = yaml.safe_load((ROOT / "configs/quickstart.yaml").read_text())
    config["oracle"]["init_args"].update(epochs=1, network={"channels": 4, "cells_per_stage": 1})
    config.update(budget=4, ask_batch=4)
    for name in ("one", "two"):
        config["oracle"]["init_args"]["store"] = str(tmp_path / name / "evaluations.sqlite")
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
    in_this_process("search", "--config", str(tmp_path / "one.yaml"), "--run_dir", str(tmp_path / "one"), "--progress", "false")
    cli("search", "--config", str(tmp_path / "two.yaml"), "--run_dir", str(tmp_path / "two"), "--progress", "false", *DDP)
    one, two = (results_without_launch_settings(tmp_path / n) for n in ("one", "two"))
    for r in (one, two):
        del r["config"]["oracle"]["init_args"]["store"], r["config"]["config"]
        for record in [r["best"], *r["queries"], *(q["best"] for q in r["queries"])]:
            del record["report"]["train_time_s"]  # measured, not computed
    assert two == one and len(one["queries"]) == 4 and ranks(tmp_path / "two") == 2


class CountingOracle(Oracle):
    shard_evaluations = True

    def __init__(self):
        super().__init__(get_space("nb201"), budget=6)
        self.computed = []

    def _evaluate(self, a):
        self.computed.append(str(a))
        return Evaluation(score=float(sum(a.genotype)))


class SecondOfTwoRanks:
    """Rank 1 of 2, whose peer (rank 0) answers its own share with score -1."""

    rank, size, is_zero = 1, 2, False

    def gather(self, mine):
        peer = {k: Evaluation(score=-1.0) for k in self.peer_keys}
        return [peer, mine]

    def broadcast(self, obj):
        return obj


def test_a_rank_evaluates_only_its_share_of_a_round(tmp_path):
    oracle = CountingOracle()
    loop = SearchLoop(RandomSearch(), oracle, tmp_path, seed=0, ask_batch=6, progress=False)
    loop.ranks = SecondOfTwoRanks()
    space = oracle.space
    archs = list(itertools.islice(space.enumerate(), 6))
    loop.ranks.peer_keys = [space.key(a) for a in archs[0::2]]
    loop._share_out(archs)
    assert oracle.computed == [str(a) for a in archs[1::2]]  # rank 1 trained only its share
    scores = [oracle.evaluate(a).score for a in archs]
    assert scores[0::2] == [-1.0] * 3 and oracle.used == 6 and not oracle.prefetched
