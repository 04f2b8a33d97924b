"""`lightning_nas.callbacks.ModelCheckpoint`: `last.ckpt` follows every epoch, so `fit --ckpt_path last`
resumes from the newest epoch even when the monitored metric stopped improving."""
from pathlib import Path

import pytest
import torch

from lightning_nas.cli import main

ROOT = Path(__file__).resolve().parents[1]


def fit(folder: Path, shared: Path, epochs: int, *extra: str) -> int:
    # monitor `epoch` with mode `min`: only epoch 0 is ever the best, later epochs never improve
    return main(["fit", "--config", "configs/fits/nb201/gin.yaml",
                 "--data.init_args.benchmark", str(shared / "nb201_200ep.csv.gz"), "--data.init_args.num_labelled", "20",
                 "--data.init_args.max_val", "20", "--data.init_args.batch_size", "10",
                 "--trainer.max_epochs", str(epochs), "--trainer.default_root_dir", str(folder),
                 "--trainer.callbacks.init_args.dirpath", str(folder), "--trainer.callbacks.init_args.monitor", "epoch",
                 "--trainer.callbacks.init_args.mode", "min", "--trainer.enable_progress_bar", "false",
                 "--trainer.enable_model_summary", "false", *extra])


@pytest.mark.slow
def test_last_checkpoint_follows_every_epoch_and_resumes(tmp_path, shared, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert fit(tmp_path, shared, 3) == 0
    best, last = (torch.load(tmp_path / name, weights_only=True) for name in ("best.ckpt", "last.ckpt"))
    assert best["epoch"] == 0 and last["epoch"] == 2  # epochs 1 and 2 did not improve, last.ckpt still followed
    assert fit(tmp_path, shared, 4, "--ckpt_path", "last") == 0
    resumed = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 3 and resumed["global_step"] == last["global_step"] * 4 // 3  # one epoch more
