"""Every row of docs/hard_edges.md: the bad input through the CLI, as a user meets it.

Each ends with one `lightning-nas: error: ...` line that names the problem and what to do, exit
code 2, no partial or temporary file, and earlier files (archives, checkpoints, finished
evaluations) intact."""
from __future__ import annotations

import csv
import errno
import gzip
import json
import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback

from lightning_nas.cli import main
from lightning_nas.spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
RE_CONFIGS = ("configs/methods/re.yaml", "configs/protocols/nb201-cifar10.yaml")


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # configs name ../shared relative to the project root


def error_line(capsys) -> str:
    """The last stderr line, checked to be the one-line CLI error."""
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("lightning-nas: error: ")
    return line


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def search(run_dir: Path, *args: str, method: str | None = None) -> int:
    """A search of NB201 CIFAR-10: regularized evolution, or `method` with its NB201 file."""
    configs = RE_CONFIGS if method is None else (f"configs/methods/{method}.yaml", f"configs/methods/nb201/{method}.yaml",
                                                  RE_CONFIGS[1])
    return main(["search", *[a for c in configs for a in ("--config", c)], "--run_dir", str(run_dir), "--progress", "false", *args])


def head_of(table: Path, rows: int) -> list[list[str]]:
    with gzip.open(table, "rt", newline="") as f:
        reader = csv.reader(f)
        return [next(reader) for _ in range(rows + 1)]


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def convert(tmp_path: Path, table: Path, *args: str) -> int:
    return main(["convert", str(table), "-o", str(tmp_path / "out.npz"), *args])


def darts_table(tmp_path: Path, edit) -> Path:
    """Three real-form DARTS genotypes (sampled) with a made-up accuracy column; `edit` damages row 2."""
    space = get_space("darts")
    rng = np.random.default_rng(0)
    rows = [["arch", "valid_acc"]] + [[space.to_string(space.sample(rng)), f"{90 + i}"] for i in range(3)]
    rows[2][0] = edit(rows[2][0])
    return write_csv(tmp_path / "darts.csv", rows)


# ------------------------------------------------------------------------------------------
# malformed architecture strings and invalid graphs
# ------------------------------------------------------------------------------------------
def test_malformed_nb201_string_in_a_search_table(tmp_path, capsys, shared):
    rows = head_of(shared / "nb201_200ep.csv.gz", 20)
    rows[3][0] = rows[3][0].replace("~1|", "~0|", 1)  # node 2's second edge must read node 1
    table = write_csv(tmp_path / "nb201.csv", rows)
    assert search(tmp_path / "run", "--data.init_args.benchmark", str(table)) == 2
    line = error_line(capsys)
    assert f"{table} line 4: malformed nb201 architecture string" in line
    assert "must read from node 1" in line and "fix or delete that line and rerun" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "stem, column, edit, problem",
    [
        ("tnb101_micro", 0, lambda s: s[:-1] + "7", "op digits must be 0..3"),
        ("tnb101_micro", 0, lambda s: s.replace("_", "", 1), "expected '64-41414-a_bc_def'"),
        ("nb101_hashed_30k", 0, lambda s: s[:-1].upper() + "g", "is not an NB101 module hash (32 lowercase hex digits)"),
    ],
    ids=["tnb101-op-digit", "tnb101-form", "nb101-hash"],
)
def test_malformed_string_in_convert(tmp_path, capsys, shared, stem, column, edit, problem):
    rows = head_of(shared / f"{stem}.csv.gz", 5)
    rows[2][column] = edit(rows[2][column])
    table = write_csv(tmp_path / f"{stem}.csv", rows)
    assert convert(tmp_path, table) == 2
    line = error_line(capsys)
    assert f"{table} line 3" in line and problem in line and "fix or delete that line and rerun" in line
    assert not list(tmp_path.glob("*.npz")) and not list(tmp_path.glob(".out.npz*"))


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda s: s.replace("Genotype(", "Genotype[", 1), "not a Python expression"),
        (lambda s: s.replace("sep_conv_3x3", "sep_conv_7x7"), "unknown op 'sep_conv_7x7'"),
        (lambda s: s.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 3]"), "normal_concat must be [2, 3, 4, 5]"),
    ],
    ids=["syntax", "unknown-op", "concat"],
)
def test_malformed_darts_genotype_in_convert(tmp_path, capsys, edit, problem):
    table = darts_table(tmp_path, edit)
    assert convert(tmp_path, table) == 2  # the space is inferred from "Genotype("
    line = error_line(capsys)
    assert f"{table} line 3: malformed darts architecture string" in line and problem in line
    assert "fix or delete that line" in line and not (tmp_path / "out.npz").exists()


def _darts_reads(genotype: str, **sources: int) -> str:
    """The genotype with normal-cell edges `edge<k>=source` reading another input."""
    space = get_space("darts")
    g = space.to_genotype(space.from_string(genotype))
    for edge, source in sources.items():
        k = int(edge.removeprefix("edge"))
        g.normal[k] = (g.normal[k][0], source)
    return repr(g)


@pytest.mark.parametrize(
    "edge, source, problem",
    [(0, 2, "input must be an int in 0..1"), (5, 9, "input must be an int in 0..3")],
    ids=["later-node", "out-of-range"],
)
def test_darts_edge_reading_a_later_node(tmp_path, capsys, edge, source, problem):
    table = darts_table(tmp_path, lambda s: _darts_reads(s, **{f"edge{edge}": source}))
    assert convert(tmp_path, table, "--space", "darts") == 2
    line = error_line(capsys)
    assert "line 3: malformed darts architecture string" in line and f"normal edge {edge}" in line and problem in line
    assert not (tmp_path / "out.npz").exists()


def test_darts_node_reading_one_input_twice(tmp_path, capsys):
    table = darts_table(tmp_path, lambda s: _darts_reads(s, edge2=0, edge3=0))
    assert convert(tmp_path, table) == 2
    assert "both edges of the node read input 0; NB301 needs two distinct inputs" in error_line(capsys)


@pytest.mark.parametrize(
    "damage, problem",
    [
        ("disconnected", "no path leads from the input to the output"),
        ("dense", "21 edges after pruning, at most 9 allowed"),
        ("lower", "strictly upper triangular"),
        ("ops", "7 ops given for a 6x6 matrix"),
    ],
    ids=["disconnected", "dense", "lower", "ops"],
)
def test_invalid_nb101_graph(tmp_path, capsys, shared, damage, problem):
    rows = head_of(shared / "nb101_graphs_500.csv.gz", 5)
    matrix = np.array([int(c) for c in rows[2][0]]).reshape(7, 7)
    if damage == "disconnected":
        matrix[:, 6] = 0  # nothing feeds the output
    elif damage == "dense":
        matrix = np.triu(np.ones((7, 7), dtype=int), 1)
    elif damage == "lower":
        matrix[3, 1] = 1
    else:
        matrix = matrix[:6, :6]
    rows[2][0] = "".join(map(str, matrix.ravel()))
    table = write_csv(tmp_path / "nb101.csv", rows)
    assert convert(tmp_path, table) == 2
    line = error_line(capsys)
    assert f"{table} line 3: malformed NB101 graph" in line and problem in line
    assert "fix or delete that line" in line and not (tmp_path / "out.npz").exists()


# ------------------------------------------------------------------------------------------
# damaged archives and tables
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nb201_archive(shared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("archive") / "nb201.npz"
    assert main(["convert", str(shared / "nb201_200ep.csv.gz"), "-o", str(out)]) == 0
    return out


def _edit_one_value(path: Path) -> None:
    with np.load(path) as z:
        arrays = {name: z[name] for name in z.files}
    arrays["metric/cifar10_valid_valid_acc"][7] += 0.5  # a well-formed zip that keeps the old checksum
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    "damage, problem",
    [
        ("truncate", "is truncated or corrupt (not a zip file)"),
        ("empty", "is truncated or corrupt (not a zip file)"),
        ("garbage", "is truncated or corrupt (not a zip file)"),
        ("edit", "checksum mismatch in benchmark archive"),
    ],
    ids=["truncate", "empty", "garbage", "edit"],
)
def test_damaged_archive(tmp_path, capsys, nb201_archive, damage, problem):
    archive = tmp_path / "nb201.npz"
    data = nb201_archive.read_bytes()
    if damage == "edit":
        shutil.copy(nb201_archive, archive)
        _edit_one_value(archive)
    else:
        archive.write_bytes({"truncate": data[: len(data) // 3], "empty": b"", "garbage": os.urandom(4096)}[damage])
    damaged = archive.read_bytes()
    assert search(tmp_path / "run", "--data.init_args.benchmark", str(archive)) == 2
    line = error_line(capsys)
    assert str(archive) in line and problem in line and "convert it again" in line
    assert archive.read_bytes() == damaged and not (tmp_path / "run").exists()


def test_truncated_gzip_table(tmp_path, capsys, shared):
    table = tmp_path / "nb201_200ep.csv.gz"
    data = (shared / "nb201_200ep.csv.gz").read_bytes()
    table.write_bytes(data[: len(data) // 2])
    assert search(tmp_path / "run", "--data.init_args.benchmark", str(table)) == 2
    line = error_line(capsys)
    assert f"{table} is truncated or not a CSV table" in line and "download or export it again" in line
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------
# unknown config keys
# ------------------------------------------------------------------------------------------
def test_misspelt_option_on_the_command_line(tmp_path, capsys):
    assert search(tmp_path / "run", "--strategy.init_args.populaton_size", "5") == 2
    line = error_line(capsys)
    assert "Option 'populaton_size' is not accepted" in line and "RegularizedEvolution" in line
    assert "see `lightning-nas search --help`" in line
    assert not (tmp_path / "run").exists()


def test_unknown_top_level_key_in_yaml(tmp_path, capsys):
    config = tmp_path / "re.yaml"
    config.write_text(Path(RE_CONFIGS[0]).read_text().replace("budget: 100", "budgett: 100"))
    assert search(tmp_path / "run", "--config", str(config)) == 2
    line = error_line(capsys)
    assert "Option 'budgett' is not accepted" in line and "see `lightning-nas search --help`" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        ("trainer: null", "`trainer:` must be a mapping of Trainer options, not None: fix or delete it"),
        ("budget: null", "`budget:` is null in the config: give it a value (default 100) or delete it"),
        ("config: {}", "the config cannot be parsed ('dict' object has no attribute 'append'): does a config file set `config:`? remove that key"),
    ],
    ids=["trainer-null", "budget-null", "config-key"],
)
def test_config_value_of_the_wrong_shape(tmp_path, capsys, extra, message):
    second = tmp_path / "extra.yaml"
    second.write_text(extra + "\n")
    assert search(tmp_path / "run", "--config", str(second)) == 2
    assert error_line(capsys) == f"lightning-nas: error: {message}"
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------
# predictor checkpoints
# ------------------------------------------------------------------------------------------
def fit(root: Path, config: str, benchmark: Path, *args: str) -> Path:
    """A one-epoch fit on 20 labels of a real table; returns the folder with its checkpoints."""
    argv = ["fit", "--config", config, "--data.init_args.benchmark", str(benchmark),
            "--data.init_args.num_labelled", "20", "--data.init_args.max_val", "20",
            "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(root),
            "--trainer.callbacks.init_args.dirpath", str(root), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", *args]
    assert main(argv) == 0
    return root


@pytest.fixture(scope="module")
def fits(shared, tmp_path_factory) -> dict[str, Path]:
    tnb101 = ["--data.init_args.target", "class_scene_valid"]
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return {
            "gin_nb201": fit(tmp_path_factory.mktemp("gin_nb201"), "configs/fits/nb201/gin.yaml",
                             shared / "nb201_200ep.csv.gz", "--data.init_args.batch_size", "4"),
            "gin_tnb101": fit(tmp_path_factory.mktemp("gin_tnb101"), "configs/fits/tnb101/gin.yaml",
                              shared / "tnb101_micro.csv.gz", *tnb101),
            "nac_tnb101": fit(tmp_path_factory.mktemp("nac_tnb101"), "configs/fits/nb201/ctnas.yaml",
                              shared / "tnb101_micro.csv.gz", "--model.init_args.space", "tnb101_micro", *tnb101,
                              "--trainer.check_val_every_n_epoch", "1"),
        }
    finally:
        os.chdir(cwd)


def test_checkpoint_of_another_method(tmp_path, capsys, fits):
    ckpt = fits["gin_nb201"] / "best.ckpt"
    assert search(tmp_path / "run", "--ckpt_path", str(ckpt), method="delta_nas") == 2
    line = error_line(capsys)
    assert f"predictor checkpoint {ckpt} holds a GINRegressor" in line
    assert "`model:` is lightning_nas.predictors.difference.DifferencePredictor" in line
    assert "pass the checkpoint written by the `fit` of this method" in line
    assert not (tmp_path / "run").exists()


def test_checkpoint_of_a_model_for_another_space(tmp_path, capsys, fits):
    ckpt = fits["nac_tnb101"] / "nac.ckpt"
    assert search(tmp_path / "run", "--ckpt_path", str(ckpt), method="ctnas") == 2
    line = error_line(capsys)
    assert f"predictor checkpoint {ckpt} was fitted on the tnb101_micro space, but `model:` is for nb201" in line
    assert "pass a checkpoint fitted on nb201" in line and not (tmp_path / "run").exists()


def test_checkpoint_fitted_on_labels_of_another_space(tmp_path, capsys, fits):
    # GIN has no `space` argument: its labels (charged as the first queries) give the space away
    ckpt = fits["gin_tnb101"] / "best.ckpt"
    assert search(tmp_path / "run", "--ckpt_path", str(ckpt), method="ednag") == 2
    line = error_line(capsys)
    assert "is not a nb201 architecture but a tnb101_micro one" in line
    assert "use one made for nb201" in line and not (tmp_path / "run").exists()


def test_predictor_labels_exceed_the_budget(tmp_path, capsys, fits):
    ckpt = fits["gin_nb201"] / "best.ckpt"
    assert search(tmp_path / "run", "--ckpt_path", str(ckpt), "--budget", "10", method="ednag") == 2
    line = error_line(capsys)
    assert "was fitted on 20 labelled architectures, more than the budget of 10 queries" in line
    assert "fit on fewer (data.num_labelled) or raise the budget" in line and not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------
# a full disk, NaN losses
# ------------------------------------------------------------------------------------------
class _DiskFillsUp:
    """An open file that takes half of what is written, then reports a full disk (ENOSPC)."""

    def __init__(self, f):
        self.f = f

    def write(self, data) -> int:
        self.f.write(bytes(data[: len(data) // 2]))
        self.f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def fill_the_disk(monkeypatch):
    """From now on every file opened by `atomic_write` / `Benchmark.save` (os.fdopen) hits a full disk;
    returns what frees it again."""
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _DiskFillsUp(real_fdopen(fd, *a, **k)))
    return lambda: monkeypatch.setattr(os, "fdopen", real_fdopen)


def test_full_disk_during_a_search_write(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert search(run, "--budget", "5") == 0
    finished = files_in(run)
    free_space = fill_the_disk(monkeypatch)
    assert search(run, "--budget", "10") == 2
    line = error_line(capsys)
    assert line == (f"lightning-nas: error: the disk is full: could not write {run / 'search_journal.jsonl'}; "
                    "free space and rerun the same command: it resumes")
    assert files_in(run) == finished  # no temporary file, every earlier file byte for byte
    free_space()
    assert search(run, "--budget", "10") == 0  # the same command resumes: the 5 finished queries are kept
    results = json.loads((run / "results.json").read_text())
    assert results["queries"][:5] == json.loads(finished["results.json"])["queries"] and len(results["queries"]) == 10


def test_full_disk_during_convert(tmp_path, capsys, shared, monkeypatch):
    table = write_csv(tmp_path / "nb201.csv", head_of(shared / "nb201_200ep.csv.gz", 20))
    assert convert(tmp_path, table) == 0
    earlier = files_in(tmp_path)
    fill_the_disk(monkeypatch)
    assert convert(tmp_path, table, "--force") == 2
    line = error_line(capsys)
    assert line == (f"lightning-nas: error: the disk is full: could not write {tmp_path / 'out.npz'}; "
                    "free space and rerun the same command")
    assert files_in(tmp_path) == earlier  # the earlier archive intact, no temporary file


def test_nan_loss_stops_the_fit_and_keeps_the_last_good_checkpoint(tmp_path, capsys, fits, shared):
    root = tmp_path / "gin"
    shutil.copytree(fits["gin_nb201"], root)
    good = {name: data for name, data in files_in(root).items() if name.endswith(".ckpt")}
    args = ["fit", "--config", "configs/fits/nb201/gin.yaml", "--data.init_args.benchmark", str(shared / "nb201_200ep.csv.gz"),
            "--data.init_args.num_labelled", "20", "--data.init_args.max_val", "20", "--data.init_args.batch_size", "4",
            "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(root),
            "--trainer.callbacks.init_args.dirpath", str(root), "--trainer.enable_progress_bar", "false",
            "--model.init_args.lr", "1e30"]
    assert main(args) == 2
    line = error_line(capsys)
    assert re.search(r"error: GINRegressor: the training loss is (nan|inf) at epoch 0, step 1:", line)
    assert "lower the learning rate (model.init_args.lr is 1e+30)" in line and "checkpoints already written are kept" in line
    after = files_in(root)
    assert {name: data for name, data in after.items() if name.endswith(".ckpt")} == good
    assert set(after) == set(good) | {"config.yaml"}  # config.yaml: the failed run's own settings


# ------------------------------------------------------------------------------------------
# help and messages (issue 32 item 7)
# ------------------------------------------------------------------------------------------
def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def option_help(text: str, option: str) -> str:
    """The help of one option: its line and the indented lines below it, up to the next option."""
    match = re.search(rf"^  {re.escape(option)}\b.*?(?=^  -|^\S|\Z)", text, flags=re.M | re.S)
    assert match, f"{option} is not in the help"
    return " ".join(match.group(0).split())


def test_search_help_describes_its_arguments_strategies_and_oracles(capsys):
    text = help_text(capsys, "search")
    for option, words in [("--budget BUDGET", "the number of oracle queries"), ("--report REPORT", "recorded beside the objective"),
                          ("--run_dir RUN_DIR", "resumes the search"), ("--ask_batch ASK_BATCH", "proposes per round"),
                          ("--finetune_epochs FINETUNE_EPOCHS", "epochs of each fine-tune"),
                          ("--table_only", "search only the table's architectures")]:
        assert words in option_help(text, option), option
    strategies = option_help(text, "--strategy STRATEGY")
    for name in ("RandomSearch", "RegularizedEvolution", "DCLENAS", "CTNAS", "CRLSO", "EDNAG", "DeltaNAS"):
        assert f"lightning_nas.search." in strategies and f".{name}" in strategies, name
    oracles = option_help(text, "--oracle ORACLE")
    assert "TabularOracle" in oracles and "ProxyOracle" in oracles and "LiveTrainingOracle" in oracles
    assert "--optimizer" not in text and "--lr_scheduler" not in text
    assert text.startswith("usage: lightning-nas search")


def test_bench_options_have_help(capsys):
    text = help_text(capsys, "bench")
    for option in ("--config CONFIG", "--seeds SEEDS", "--first-seed FIRST_SEED", "--budgets BUDGETS", "--workers WORKERS",
                   "--out OUT"):
        assert len(option_help(text, option).split()) > 4, option  # more than the option and its metavar


def test_top_level_usage_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "search", "convert", "bench", "report"):
        assert re.search(rf"^  {command} ", out, flags=re.M), command
    assert main(["serach"]) == 2
    assert "unknown command 'serach'; choose one of fit, validate" in error_line(capsys)


def test_yaml_syntax_error_names_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("budget: 10\nreport: [cifar10_test_acc\n")
    assert search(tmp_path / "run", "--config", str(bad)) == 2
    line = error_line(capsys)
    assert f"config file {bad} line 3, column 1: not valid YAML" in line and "fix it and rerun" in line
    assert not (tmp_path / "run").exists()


def test_run_dir_that_is_a_file(tmp_path, capsys):
    afile = tmp_path / "results"
    afile.write_text("not a folder")
    assert search(afile, "--budget", "3") == 2
    assert error_line(capsys) == (f"lightning-nas: error: run_dir {afile} is a file, not a folder: "
                                  "give --run_dir a folder (new or of this search)")
    assert afile.read_text() == "not a folder"


def test_report_given_as_one_name(tmp_path, capsys):
    assert search(tmp_path / "run", "--budget", "3", "--report", "cifar10_test_acc") == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert all(set(q["report"]) == {"cifar10_test_acc"} for q in results["queries"])
    assert search(tmp_path / "typo", "--budget", "3", "--report", "cifar10_tset_acc") == 2
    assert "unknown metric 'cifar10_tset_acc'" in error_line(capsys)


@pytest.mark.parametrize("option, value", [("--seeds", "-3"), ("--workers", "0"), ("--budgets", "0")])
def test_bench_names_the_bad_option(tmp_path, capsys, option, value):
    assert main(["bench", "--config", RE_CONFIGS[0], "--config", RE_CONFIGS[1], "--out", str(tmp_path / "bench"), option, value]) == 2
    assert error_line(capsys) == f"lightning-nas: error: {option} must be positive, got {value}"
    assert not (tmp_path / "bench").exists()


class CtrlCAtEpoch1(Callback):
    """Ctrl-C in the middle of a fit (Lightning sees the KeyboardInterrupt a SIGINT raises)."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt


def test_ctrl_c_during_fit_says_how_to_resume(tmp_path, capsys, shared):
    args = ["fit", "--config", "configs/fits/nb201/gin.yaml", "--data.init_args.benchmark", str(shared / "nb201_200ep.csv.gz"),
            "--data.init_args.num_labelled", "20", "--data.init_args.max_val", "20", "--data.init_args.batch_size", "10",
            "--trainer.max_epochs", "3", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.callbacks.init_args.dirpath", str(tmp_path), "--trainer.enable_progress_bar", "false"]
    handler = signal.getsignal(signal.SIGINT)
    assert main([*args, "--trainer.callbacks+=test_hard_edges.CtrlCAtEpoch1"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "lightning-nas: interrupted; to resume from the newest checkpoint, run the same command with `--ckpt_path last`")
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C works again afterwards
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 0
    assert main([*args, "--ckpt_path", "last"]) == 0
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 3 * 2  # 2 steps an epoch
