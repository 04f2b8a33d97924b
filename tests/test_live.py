"""The live-training oracle and its SQLite store; the image data modules."""
from __future__ import annotations

import json
import pickle
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_nas.data.images import CIFAR10DataModule, DigitsDataModule
from lightning_nas.proxies.live import LiveTrainingOracle
from lightning_nas.spaces import get_space

NB201 = get_space("nb201")
TINY = {"channels": 4, "cells_per_stage": 1}
ARCHS = [
    "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|skip_connect~1|avg_pool_3x3~2|",
    "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|nor_conv_3x3~1|skip_connect~2|",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks: one torch thread avoids spinning on shared cores (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _oracle(store: Path, epochs: int = 1, seed: int = 0) -> LiveTrainingOracle:
    return LiveTrainingOracle("nb201", DigitsDataModule(batch_size=128, seed=0), epochs=epochs, store=str(store), seed=seed, network=TINY)


def test_a_live_evaluation_trains_reports_and_is_stored_in_wal_mode(tmp_path):
    oracle = _oracle(tmp_path / "live.sqlite")
    assert oracle.store.journal_mode == "wal"
    torch.manual_seed(7)
    expected_next = torch.rand(2)
    torch.manual_seed(7)
    result = oracle.evaluate(NB201.from_string(ARCHS[0]))
    torch.testing.assert_close(torch.rand(2), expected_next)  # training used its own RNG stream
    assert 0 <= result.score <= 100 and 0 <= result.report["test_acc"] <= 100
    assert result.report["params"] > 0 and result.report["train_time_s"] > 0
    with sqlite3.connect(tmp_path / "live.sqlite") as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = other.execute("SELECT space, arch, dataset, epochs, seed, setting, val_acc FROM evaluations").fetchall()
    assert len(rows) == 1
    space, arch, dataset, epochs, seed, setting, val_acc = rows[0]
    assert (space, arch, dataset, epochs, seed, val_acc) == ("nb201", ARCHS[0], "digits", 1, 0, result.score)
    assert json.loads(setting)["network"] == TINY


def test_training_is_reproducible_for_a_seed(tmp_path):
    a = NB201.from_string(ARCHS[1])
    first = _oracle(tmp_path / "a.sqlite").evaluate(a)
    second = _oracle(tmp_path / "b.sqlite").evaluate(a)
    assert first.score == second.score and first.report["test_acc"] == second.report["test_acc"]


CRASHING_RUN = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from lightning_nas.data.images import DigitsDataModule
    from lightning_nas.proxies import live
    from lightning_nas.spaces import get_space

    torch.set_num_threads(1)
    store, archs = sys.argv[1], sys.argv[2:]
    oracle = live.LiveTrainingOracle("nb201", DigitsDataModule(batch_size=128, seed=0), epochs=1, store=store,
                                     network={"channels": 4, "cells_per_stage": 1})
    real_step = live.ImageClassifier.training_step

    def step(self, batch, batch_idx):
        if oracle.trainings == 3:  # the third training dies mid-epoch, as in a power cut
            os.kill(os.getpid(), signal.SIGKILL)
        return real_step(self, batch, batch_idx)

    live.ImageClassifier.training_step = step
    for s in archs:
        oracle.evaluate(get_space("nb201").from_string(s))
    """
)


def test_a_crash_loses_only_the_evaluation_in_progress_and_a_rerun_trains_only_that(tmp_path):
    store = tmp_path / "live.sqlite"
    crashed = subprocess.run([sys.executable, "-c", CRASHING_RUN, str(store), *ARCHS], capture_output=True, text=True, timeout=300)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    with sqlite3.connect(store) as db:
        stored = {row[0] for row in db.execute("SELECT arch FROM evaluations")}
    assert stored == set(ARCHS[:2])

    rerun = _oracle(store)
    results = [rerun.evaluate(NB201.from_string(s)) for s in ARCHS]
    assert rerun.trainings == 1  # only the architecture whose training was killed
    assert len(rerun.store) == 3 and all(0 <= r.score <= 100 for r in results)

    again = _oracle(store)
    [again.evaluate(NB201.from_string(s)) for s in ARCHS]
    assert again.trainings == 0
    assert _oracle(store, epochs=2).store.get("nb201", ARCHS[0], "digits", 2, 0, again.setting) is None


def test_bad_live_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        _oracle(tmp_path / "x.sqlite", epochs=0)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="cannot open the live-training store"):
        _oracle(tmp_path / "a_file" / "x.sqlite")


# --- data modules -----------------------------------------------------------------------------
def test_digits_split_is_fixed_by_seed_disjoint_and_complete():
    dm = DigitsDataModule(seed=3)
    dm.setup()
    sizes = {k: dm.split_size(k) for k in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797 and sizes["val"] == sizes["test"] == 359
    assert dm.input_shape == (1, 8, 8) and dm.num_classes == 10
    x, y = dm.sample_batch(32, seed=1)
    x2, _ = DigitsDataModule(seed=3).sample_batch(32, seed=1)
    torch.testing.assert_close(x, x2)
    train_mean = dm.splits["train"].tensors[0].mean().item()
    assert abs(train_mean) < 1e-5  # normalised by the training split's statistics
    wide = DigitsDataModule(image_size=32, channels=3)
    assert wide.input_shape == (3, 32, 32)
    with pytest.raises(ValueError, match="sum to less than 1"):
        DigitsDataModule(val_fraction=0.6, test_fraction=0.5)


def _write_fake_cifar(folder: Path, per_batch: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [*CIFAR10DataModule.TRAIN_FILES, CIFAR10DataModule.TEST_FILE]:
        entry = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, per_batch).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)


def test_cifar10_reads_the_official_python_batches(tmp_path):
    _write_fake_cifar(tmp_path / "cifar-10-batches-py", per_batch=20)
    dm = CIFAR10DataModule(str(tmp_path), batch_size=8, val_size=40)
    dm.setup()
    assert (dm.split_size("train"), dm.split_size("val"), dm.split_size("test")) == (60, 40, 20)
    assert dm.input_shape == (3, 32, 32)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and y.dtype == torch.int64


def test_cifar10_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="lacks data_batch_1.*cifar-10-python.tar.gz.*nothing is downloaded"):
        CIFAR10DataModule(str(tmp_path)).setup()


def test_quickstart_config_runs_a_live_search_through_the_cli(tmp_path, capsys):
    from lightning_nas.cli import main

    config = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    store = tmp_path / "evaluations.sqlite"
    code = main([
        "search", "--config", str(config), "--budget", "3", "--run_dir", str(tmp_path),
        "--oracle.init_args.store", str(store), "--oracle.init_args.epochs", "1",
        "--oracle.init_args.network", json.dumps(TINY), "--progress", "false",
    ])
    assert code == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["queries"]) == 3 and results["strategy"] == "RegularizedEvolution"
    assert results["best"]["score"] == max(q["score"] for q in results["queries"])
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0] == 3
