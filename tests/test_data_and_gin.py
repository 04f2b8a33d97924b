from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from lightning_nas.cli import main
from lightning_nas.data.datamodule import ArchitectureDataModule
from lightning_nas.encodings.graph import to_data
from lightning_nas.predictors.gin import GINRegressor
from lightning_nas.search.runner import load_predictor
from lightning_nas.spaces.base import get_space

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dm(shared):
    dm = ArchitectureDataModule(str(shared / "nb201_200ep.csv.gz"), "cifar10_valid_valid_acc", num_labelled=0.01, seed=1)
    dm.setup("fit")
    return dm


def test_split_is_seeded_disjoint_and_complete(dm, shared):
    assert len(dm.train_rows) == 156 and len(dm.heldout_rows) == 15625 - 156
    assert not set(dm.train_rows) & set(dm.heldout_rows)
    again = ArchitectureDataModule(str(shared / "nb201_200ep.csv.gz"), "cifar10_valid_valid_acc", num_labelled=0.01, seed=1)
    again.setup()
    other = ArchitectureDataModule(str(shared / "nb201_200ep.csv.gz"), "cifar10_valid_valid_acc", num_labelled=0.01, seed=2)
    other.setup()
    assert (again.train_rows == dm.train_rows).all() and not (other.train_rows == dm.train_rows).all()
    batch = next(iter(dm.train_dataloader()))
    assert batch.num_graphs == 64 and batch.path.shape == (64, 84) and batch.x.shape[1] == 7
    y = torch.cat([b.y for b in dm.train_dataloader()])
    assert y.mean().abs() < 1e-4 and (y.std(unbiased=False) - 1).abs() < 1e-3  # z-scored by the labelled set


def test_canonical_inputs_featurise_equivalent_cells_alike(shared):
    space = get_space("nb201")
    direct = space.from_string("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
    through_skip = space.from_string("|skip_connect~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|none~2|")
    assert not torch.equal(to_data(space, direct).x, to_data(space, through_skip).x)
    a, b = to_data(space, direct, canonical=True), to_data(space, through_skip, canonical=True)
    assert torch.equal(a.x, b.x) and torch.equal(a.path, b.path)
    dm = ArchitectureDataModule(str(shared / "nb201_200ep.csv.gz"), "cifar10_valid_valid_acc", num_labelled=40,
                                canonical_inputs=True)
    dm.setup()
    for data, arch in zip(dm.dataset(dm.train_rows), dm.train_archs):
        assert torch.equal(data.x, to_data(space, space.representative(arch)).x)


def test_num_labelled_errors(shared):
    dm = ArchitectureDataModule(str(shared / "nb201_200ep.csv.gz"), "cifar10_valid_valid_acc", num_labelled=20000)
    with pytest.raises(ValueError, match="asks for 20000"):
        dm.setup()


def test_gin_fit_then_load_for_search(tmp_path, monkeypatch):
    """`fit` through the CLI writes a checkpoint that ranks held-out architectures, and the search
    side loads it into the same model."""
    monkeypatch.chdir(ROOT)
    ckpt_dir = tmp_path / "gin"
    code = main(["fit", "--config", "configs/fits/nb201/gin.yaml", "--trainer.max_epochs", "8",
                 "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(ckpt_dir),
                 "--trainer.callbacks.init_args.dirpath", str(ckpt_dir), "--model.init_args.max_epochs_hint", "8",
                 "--data.init_args.num_labelled", "400", "--data.init_args.max_val", "1000"])
    assert code == 0 and (ckpt_dir / "best.ckpt").is_file()
    model = load_predictor(GINRegressor(), str(ckpt_dir / "best.ckpt"))
    dm = ArchitectureDataModule("../shared/benchmarks/nb201_200ep.csv.gz", "cifar10_valid_valid_acc",
                                num_labelled=400, max_val=1000)
    result = L.Trainer(logger=False, enable_progress_bar=False, limit_test_batches=30).test(model, datamodule=dm)
    assert result[0]["test_tau"] > 0.5
    with pytest.raises(ValueError, match="does not fit the configured"):
        load_predictor(GINRegressor(hidden=32), str(ckpt_dir / "best.ckpt"))


def test_predictor_labels_count_as_queries(tmp_path, monkeypatch, capsys):
    """A search that starts from a predictor fitted on n labels has spent n queries already."""
    monkeypatch.chdir(ROOT)
    ckpt_dir = tmp_path / "gin"
    assert main(["fit", "--config", "configs/fits/nb201/gin.yaml", "--trainer.max_epochs", "1",
                 "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(ckpt_dir),
                 "--trainer.callbacks.init_args.dirpath", str(ckpt_dir), "--data.init_args.num_labelled", "30",
                 "--data.init_args.max_val", "100"]) == 0
    search = ["search", "--config", "configs/methods/rs.yaml", "--config", "configs/protocols/nb201-cifar10.yaml", "--progress", "false",
              "--model", "lightning_nas.predictors.gin.GINRegressor", "--ckpt_path", str(ckpt_dir / "best.ckpt")]
    assert main([*search, "--budget", "20", "--run_dir", str(tmp_path / "small")]) == 2
    assert "fitted on 30 labelled architectures, more than the budget of 20" in capsys.readouterr().err
    # the search must featurise as the fit did
    assert main([*search, "--budget", "35", "--run_dir", str(tmp_path / "other"),
                 "--data.init_args.canonical_inputs", "true"]) == 2
    assert "fitted with data.init_args.canonical_inputs=False" in capsys.readouterr().err
    assert main([*search, "--budget", "35", "--run_dir", str(tmp_path / "run")]) == 0
    import json

    results = json.loads((tmp_path / "run" / "results.json").read_text())
    dm = ArchitectureDataModule("../shared/benchmarks/nb201_200ep.csv.gz", "cifar10_valid_valid_acc", num_labelled=30)
    dm.load()
    assert [q["arch"] for q in results["queries"][:30]] == [str(a) for a in dm.train_archs]
    assert len(results["queries"]) == 35 and results["predictor_labels_charged"] == 30
