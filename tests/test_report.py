import dataclasses
import json
import math
import shutil
from pathlib import Path

import yaml

from lightning_nas.cli import main
from lightning_nas.performance import archive_load, nb101_enumeration
from lightning_nas.report import (BASELINES, PER_SEED_FIT, PREDICTORS, checkpoint_producers, fit_per_seed,
                                  protocols, run_method, run_tau_study, seed_fit_arguments, seed_fit_config,
                                  tau_recipe)
from lightning_nas.bench import RECIPE_FILE, seed_arguments

ROOT = Path(__file__).resolve().parents[1]


def test_quick_report_smoke(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out, runs = tmp_path / "report", tmp_path / "runs"
    args = ["report", "--quick", "--protocols", "nb201-cifar100", "--methods", "RS", "RE", "--predictors", "GIN",
            "--tau-seeds", "1", "--workers", "1", "--out", str(out), "--runs", str(runs),
            "--records", str(tmp_path / "records")]
    assert main(args) == 0
    text = (out / "REPORT.md").read_text()
    assert "### nb201-cifar100" in text and "| RS |" in text and "| RE |" in text
    assert "Search runs: 4, of which 4 searched by this invocation and 0 reused" in text
    for plot in ("nb201-cifar100.png", "tau.png"):
        assert (out / "plots" / plot).stat().st_size > 0
    data = json.loads((out / "report_data.json").read_text())
    rs = next(r for r in data["results"] if r["method"] == "RS")
    # CIFAR-100 protocol: searched on the 12-epoch validation column, reported on 200-epoch test accuracy
    first = json.loads((runs / "quick" / "nb201-cifar100" / "RS" / "seed_0" / "results.json").read_text())["queries"][0]
    assert set(first["report"]) == {"cifar100_test_acc"}
    assert rs["summary"]["budgets"]["20"]["count"] == 2
    # the tau study: one file per (predictor, labels, seed), tau over every other NB201 architecture
    assert [(r["predictor"], r["size"], r["heldout"]) for r in data["tau"]] == [("GIN", 20, 15605), ("GIN", 60, 15565)]
    assert all(-1 <= r["tau"] <= 1 for r in data["tau"])
    assert (runs / "quick" / "tau" / "GIN" / "n60_seed0.json").is_file()
    records = tmp_path / "records" / "quick"
    assert (records / "tau.tar.gz").is_file() and (records / "nb201-cifar100" / "RE.tar.gz").is_file()
    assert "| GIN | " in text.split("## Predictors: Kendall tau")[1]
    perf = data["performance"]
    assert perf["archives"]["TNB101 micro"]["rows"] == 4096
    assert perf["nb101_enumeration"]["warm_equals_cold"]
    assert set(perf["throughput"]["GIN"]) == {"50", "200"} and perf["ednag"]["architectures_scored"] > 0
    search_times = text.split("### Search wall time per run")[1]
    assert "| nb201-cifar100 |" in search_times and "x)" in search_times  # RE as a ratio to RS
    # an interrupted report resumes: finished tau fits are read back, not fitted again
    log = []
    again = run_tau_study(["GIN"], [20, 60], 1, True, runs / "quick", 1, checkpoint_producers(), log)
    assert again == data["tau"] and log == [f"tau study: 0 fits run, 2 reused from {runs / 'quick' / 'tau'}"]
    shutil.rmtree(runs / "quick" / "tau")  # another machine: only the committed record
    log = []
    again = run_tau_study(["GIN"], [20, 60], 1, True, runs / "quick", 1, checkpoint_producers(), log,
                          records / "tau.tar.gz")
    assert again == data["tau"] and log == [f"tau study: 0 fits run, 2 reused from {runs / 'quick' / 'tau'}"]
    # a fit made from another config is not reused: here the GIN config gains a line
    changed = tmp_path / "gin_fit.yaml"
    changed.write_text(Path(PREDICTORS["GIN"].config).read_text() + "# changed\n")
    monkeypatch.setitem(PREDICTORS, "GIN", dataclasses.replace(PREDICTORS["GIN"], config=str(changed)))
    log = []
    run_tau_study(["GIN"], [20], 1, True, runs / "quick", 1, checkpoint_producers(), log)
    assert log == [f"tau study: 1 fits run, 0 reused from {runs / 'quick' / 'tau'}"]


def test_tau_recipe_covers_the_training_length_and_every_config_behind_a_fit(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    producers = checkpoint_producers()
    assert tau_recipe("Delta-NAS", 1500, producers) != tau_recipe("Delta-NAS", 1000, producers)
    dcl = tau_recipe("DCL-ENAS", 100, producers)
    assert dcl != tau_recipe("DCL-ENAS", 60, producers)
    stage1 = "checkpoints/nb201/dcl_enas/pretrain.ckpt"  # written by the stage-1 config
    changed = tmp_path / "pretrain.yaml"
    changed.write_text(producers[stage1].read_text() + "# changed\n")
    monkeypatch.setitem(producers, stage1, changed)
    assert tau_recipe("DCL-ENAS", 100, producers) != dcl


def test_every_protocol_names_existing_configs_and_fits(monkeypatch):
    monkeypatch.chdir(ROOT)
    producers = checkpoint_producers()
    for protocol in protocols():
        for method, config in {**BASELINES, **protocol.configs}.items():
            assert Path(config).is_file(), (protocol.name, method, config)
            if method in PER_SEED_FIT:  # the per-seed fit derives from the config that writes the checkpoint
                assert yaml.safe_load(Path(config).read_text())["ckpt_path"] in producers, config


def test_seed_fit_config_puts_the_fit_on_the_protocol_and_the_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    jigsaw = next(p for p in protocols() if p.name == "tnb101-jigsaw")
    path = seed_fit_config(Path("configs/tnb101_micro/crlso_fit.yaml"), jigsaw, 3, tmp_path / "seed_3", quick=False)
    config = yaml.safe_load(path.read_text())
    data = config["data"]["init_args"]
    assert (config["seed_everything"], data["seed"], data["target"], data["num_labelled"]) == (3, 3, "jigsaw_valid", 50)
    assert data["benchmark"] == jigsaw.benchmark[0]
    callback = config["trainer"]["callbacks"][0]["init_args"]
    assert callback["dirpath"] == config["trainer"]["default_root_dir"] == str(tmp_path / "seed_3")
    assert config["trainer"]["max_epochs"] == 4  # the fit config's own, outside --quick


def test_per_seed_fits_are_reused(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    protocol = next(p for p in protocols() if p.name == "nb201-cifar10")
    run_dir, log = tmp_path / "CR-LSO", []
    for seed in range(2):  # finished fits: nothing is fitted again
        (run_dir / "fits" / f"seed_{seed}").mkdir(parents=True)
        (run_dir / "fits" / f"seed_{seed}" / "crlso.ckpt").write_bytes(b"")
    fit_per_seed(Path("configs/nb201/crlso.yaml"), protocol, "CR-LSO", run_dir, [0, 1], 1, checkpoint_producers(),
                 quick=True, log=log)
    assert log == [] and not (run_dir / "fits" / "seed_0" / "fit.yaml").exists()
    extra = seed_fit_arguments(Path("configs/nb201/crlso.yaml"), run_dir)
    assert extra == ["--ckpt_path", str(run_dir / "fits" / "seed_{seed}" / "crlso.ckpt"), "--data.init_args.seed", "{seed}"]


def test_finished_searches_need_no_fit(tmp_path, monkeypatch):
    """Runs reused from another machine (their checkpoints not kept) are summarised without fitting."""
    monkeypatch.chdir(ROOT)
    protocol = next(p for p in protocols() if p.name == "nb201-cifar10")
    config, run_dir, log = protocol.configs["CR-LSO"], tmp_path / "CR-LSO", []
    extra = protocol.overrides() + seed_fit_arguments(Path(config), run_dir)
    rs = _rs_run(tmp_path)
    for seed in range(2):
        seed_dir = run_dir / f"seed_{seed}"
        seed_dir.mkdir(parents=True)
        (seed_dir / RECIPE_FILE).write_text(json.dumps({"config": Path(config).read_text(),
                                                        "arguments": seed_arguments(extra, seed)}, indent=1))
        for name in ("results.json", "timing.json"):  # what a record keeps of a seed (RECORD_FILES)
            (seed_dir / name).write_text((rs / name).read_text())
    record = tmp_path / "records" / "CR-LSO.tar.gz"
    entry = run_method(protocol, "CR-LSO", config, run_dir, 2, [5, 10], 1, checkpoint_producers(), False, log, record)
    assert log == [] and not (run_dir / "fits").exists()
    assert entry["summary"]["seeds"] == 2 and entry["summary"]["budgets"]["10"]["count"] == 2
    kept = record.read_bytes()
    shutil.rmtree(run_dir)  # another machine: only the committed record
    again = run_method(protocol, "CR-LSO", config, run_dir, 2, [5, 10], 1, checkpoint_producers(), False, log, record)
    assert log == [] and again["summary"]["budgets"] == entry["summary"]["budgets"]
    assert record.read_bytes() == kept  # saved again byte for byte: no change for git to see
    assert sorted(p.name for p in (run_dir / "seed_0").iterdir()) == sorted(["results.json", "timing.json", RECIPE_FILE])


def _rs_run(tmp_path: Path) -> Path:
    run = tmp_path / "rs"
    assert main(["search", "--config", BASELINES["RS"], "--budget", "10", "--run_dir", str(run), "--progress", "false"]) == 0
    return run


def test_archive_load_and_enumeration_measure_beside_their_baselines(tmp_path, shared):
    load = archive_load([shared / "tnb101_micro.csv.gz"], tmp_path / "tnb.npz", repeats=1)
    assert load["rows"] == 4096 and load["native_s"] > 0 and load["csv_s"] > 0
    assert math.isclose(load["csv_over_native"], load["csv_s"] / load["native_s"])
    assert load["csv_peak_mb"] > 0 and load["native_peak_mb"] > 0
    cells = nb101_enumeration(max_vertices=4)
    assert cells["warm_equals_cold"] and cells["cells"] > 0 and cells["cold_s"] > cells["warm_s"] > 0


def test_unknown_names_are_user_errors(capsys):
    assert main(["report", "--methods", "RS", "FOO"]) == 2
    assert "unknown method FOO; known: RS, RE" in capsys.readouterr().err
    assert main(["report", "--protocols", "nb201-cifar10", "nb999"]) == 2
    assert "unknown protocol nb999" in capsys.readouterr().err
