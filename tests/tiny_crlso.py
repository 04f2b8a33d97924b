"""A CR-LSO small enough for a test: its fit (a search needs a trained G-VAE) and the search config
that loads the fit. Shared by tests/test_crlso.py and tests/test_resume.py."""
from pathlib import Path

import yaml


def tiny_crlso(shared: Path, folder: Path, num_labelled: int, max_epochs: int, top_k: int) -> Path:
    """Fit a tiny CR-LSO into `folder` through the CLI; returns the search config (budget 30, a round
    = `top_k` queries)."""
    from lightning_nas.cli import main

    data = {"class_path": "lightning_nas.data.gvae.GVAEDataModule",
            "init_args": {"benchmark": str(shared / "nb201_200ep.csv.gz"), "target": "cifar10_valid_valid_acc",
                          "num_labelled": num_labelled, "pool_size": 300, "max_val": 50, "batch_size": 64}}
    model = {"class_path": "lightning_nas.predictors.crlso.CRLSOModel",
             "init_args": {"space": "nb201", "latent_dim": 8, "hidden": 32, "decoder_hidden": 32, "head_hidden": 32,
                           "semi_hidden": 16, "semi_epochs": 3}}
    fit = {"seed_everything": 0, "model": model, "data": data,
           "trainer": {"max_epochs": max_epochs, "accelerator": "cpu", "logger": False, "enable_progress_bar": False,
                       "enable_model_summary": False, "default_root_dir": str(folder),
                       "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                      "init_args": {"dirpath": str(folder), "filename": "crlso"}}]}}
    (folder / "fit.yaml").write_text(yaml.safe_dump(fit))
    assert main(["fit", "--config", str(folder / "fit.yaml")]) == 0
    search = {"seed_everything": 0, "model": model, "data": data, "ckpt_path": str(folder / "crlso.ckpt"),
              "strategy": {"class_path": "lightning_nas.search.crlso.CRLSO",
                           "init_args": {"top_k": top_k, "finetune_epochs": 2}},
              "budget": 30, "ask_batch": top_k, "report": ["cifar10_test_acc"]}
    (folder / "search.yaml").write_text(yaml.safe_dump(search))
    return folder / "search.yaml"
