"""`lightning-nas report`: the harness in benchmarks/report/ through the CLI, its reuse of finished runs
and fits, and the measurements of its performance part."""
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml

import lightning_nas.report
from benchmarks.report.fits import (changed_settings, checkpoint_producers, ensure_fitted, seed_fit_arguments,
                                    seed_fit_config, seed_fits)
from lightning_nas.errors import ConfigError
from benchmarks.report.performance import archive_load, nb101_enumeration, search_costs
from benchmarks.report.protocols import methods, protocol
from benchmarks.report.searches import run_method
from benchmarks.report.main import keep_earlier_parts
from benchmarks.report.render import group_means
from benchmarks.report.tau import PREDICTORS, STUDIES, TAU_SPACES, TNB101_TASKS, run_tau_study, tau_recipe
from lightning_nas.cli import main
from lightning_nas.executors import LocalPool
from lightning_nas.bench import RECIPE_FILE, recipe, seed_arguments

ROOT = Path(__file__).resolve().parents[1]
METHODS = {m.name: m for m in methods()}


@pytest.mark.slow
def test_quick_report_smoke(tmp_path, monkeypatch, shared):
    monkeypatch.chdir(tmp_path)  # any directory: the harness resolves its paths from the repository root
    out, runs = tmp_path / "report", tmp_path / "runs"
    committed = (ROOT / "benchmarks" / "REPORT.md").read_bytes()
    common = ["--quick", "--protocols", "nb201-cifar100", "--methods", "RS", "RE", "--workers", "1", "--runs", str(runs),
              "--records", str(tmp_path / "records"), "--shared", str(shared)]
    assert main(["report", *common, "--predictors", "GIN", "--tau-seeds", "1", "--out", "report"]) == 0
    assert (ROOT / "benchmarks" / "REPORT.md").read_bytes() == committed  # written to --out only
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
    records = tmp_path / "records" / "quick"
    assert (records / "tau.tar.gz").is_file() and (records / "nb201-cifar100" / "RE.tar.gz").is_file()
    assert "| GIN | " in text.split("## Predictors: Kendall tau")[1]
    # the bench scripts' committed tables, one heading level down
    assert "\n## Zero-cost proxies on DARTS" in text and "From benchmarks/results/proxies_darts.md" in text
    perf = data["performance"]
    assert perf["archives"]["TNB101 micro"]["rows"] == 4096
    assert perf["nb101_enumeration"]["warm_equals_cold"]
    assert set(perf["throughput"]["GIN"]) == {"50", "200"} and perf["ednag"]["architectures_scored"] > 0
    assert set(perf["query_cost"]["journal"]) == {"20", "60"} and set(perf["query_cost"]["every_round"]) == {"20"}
    assert "### Cost of a query as a search goes on" in text and "| whole state every round |" in text
    search_times = text.split("### Search wall time per run")[1]
    assert "| nb201-cifar100 |" in search_times and "x)" in search_times  # RE as a ratio to RS
    # an interrupted report resumes: the finished runs are reused, not searched again
    again = tmp_path / "again"
    assert main(["report", *common, "--parts", "search", "--out", str(again)]) == 0
    assert "Search runs: 4, of which 0 searched by this invocation and 4 reused" in (again / "REPORT.md").read_text()
    # and so are the finished tau fits, here and from the committed record on another machine
    monkeypatch.chdir(ROOT)
    tau_args = (["GIN"], {"nb201": [20, 60]}, 1, True, runs / "quick", LocalPool(1, tmp_path / "logs"), checkpoint_producers())
    log = []
    assert run_tau_study(*tau_args, log, shared) == data["tau"]
    assert log == [f"tau study: 0 fits run, 2 reused from {runs / 'quick' / 'tau'}"]
    shutil.rmtree(runs / "quick" / "tau")
    log = []
    assert run_tau_study(*tau_args, log, shared, records / "tau.tar.gz") == data["tau"]
    assert log == [f"tau study: 0 fits run, 2 reused from {runs / 'quick' / 'tau'}"]


def test_the_report_needs_the_repository(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lightning_nas.report, "ROOT", tmp_path)  # an installed package without benchmarks/
    assert main(["report", "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the repository's experiment harness (benchmarks/report/)" in err[0]


def test_tau_recipe_covers_the_training_length_and_every_config_behind_a_fit(tmp_path, monkeypatch):
    producers = checkpoint_producers()
    assert tau_recipe("Delta-NAS", 1500, producers) != tau_recipe("Delta-NAS", 1000, producers)
    dcl = tau_recipe("DCL-ENAS", 100, producers)
    assert dcl != tau_recipe("DCL-ENAS", 60, producers)
    stage1 = "checkpoints/nb201/dcl_enas/pretrain.ckpt"  # written by the stage-1 config
    text = producers[stage1].read_text()
    changed = tmp_path / "pretrain.yaml"
    changed.write_text(text + "# a comment: the same fit\n")
    monkeypatch.setitem(producers, stage1, changed)
    assert tau_recipe("DCL-ENAS", 100, producers) == dcl
    changed.write_text(text.replace("num_clusters: 100       # K", "num_clusters: 10       # K", 1))
    assert tau_recipe("DCL-ENAS", 100, producers) != dcl
    gin = tau_recipe("GIN", 100, producers)  # the predictor's own fit config too
    changed_gin = tmp_path / "gin.yaml"
    changed_gin.write_text(PREDICTORS["GIN"].config().read_text().replace("hidden: 64", "hidden: 32"))
    monkeypatch.setitem(PREDICTORS, "GIN", dataclasses.replace(PREDICTORS["GIN"], config_name=str(changed_gin)))  # absolute
    assert tau_recipe("GIN", 100, producers) != gin


def test_the_darts_tau_study_ranks_the_other_nb301_cells_with_the_darts_fits(tmp_path, monkeypatch, shared):
    monkeypatch.chdir(ROOT)
    producers = checkpoint_producers()
    for name in ("GIN", "Delta-NAS"):  # a fit config of configs/fits/darts, and the table alone
        assert tau_recipe(name, 2, producers, STUDIES["darts"]) != tau_recipe(name, 2, producers)
    log = []
    [gin] = run_tau_study(["GIN"], {"darts": [20]}, 1, True, tmp_path, LocalPool(1, tmp_path / "logs"), producers,
                          log, shared)
    assert (gin["space"], gin["size"], gin["labelled"], gin["heldout"]) == ("darts", 20, 20, 480)
    assert -1 <= gin["tau"] <= 1 and (tmp_path / "tau" / "darts" / "GIN" / "n20_seed0.json").is_file()


def test_tnb101_tasks_are_studies_of_one_group_reported_as_their_mean(tmp_path, monkeypatch, shared):
    monkeypatch.chdir(ROOT)
    assert TAU_SPACES["tnb101"] == [f"tnb101-{task}" for task in TNB101_TASKS] and TAU_SPACES["nb101"] == ["nb101"]
    producers = checkpoint_producers()
    jigsaw, normal = STUDIES["tnb101-jigsaw"], STUDIES["tnb101-normal"]
    for name in ("GIN", "Delta-NAS"):  # one fit config, two targets: two recipes
        assert tau_recipe(name, 2, producers, jigsaw) != tau_recipe(name, 2, producers, normal)
    [gin] = run_tau_study(["GIN"], {"tnb101-jigsaw": [20]}, 1, True, tmp_path, LocalPool(1, tmp_path / "logs"),
                          producers, [], shared)
    assert (gin["space"], gin["labelled"], gin["heldout"]) == ("tnb101-jigsaw", 20, 4076)
    assert (tmp_path / "tau" / "tnb101" / "jigsaw" / "GIN" / "n20_seed0.json").is_file()
    # the report's row of a seed is the mean over the seven tasks; a seed some task lacks is left out
    rows = [{"predictor": "GIN", "size": 41, "seed": seed, "space": f"tnb101-{task}", "tau": 0.1 * i, "fit_s": 2.0}
            for i, task in enumerate(TNB101_TASKS) for seed in (0, 1) if seed == 0 or task != "normal"]
    assert [(r["seed"], round(r["tau"], 9), r["fit_s"]) for r in group_means(rows, TAU_SPACES["tnb101"])] == [(0, 0.3, 2.0)]


def test_a_report_of_some_parts_keeps_the_others_from_the_report_in_out(tmp_path):
    old, new = "lightning-nas report --out benchmarks", "lightning-nas report --parts tau --tau-spaces nb101"
    earlier = {"command": old, "wall_time_s": 1617.0, "seeds": 20, "budgets": [50, 100], "results": [{"method": "RE"}],
               "not_completed": [], "tau": [{"predictor": "GIN", "tau": 0.6}, {"predictor": "GIN", "space": "darts"},
                                             {"predictor": "GIN", "space": "nb101", "tau": 0.1}],
               "performance": {"throughput": {}}, "moo": {"protocols": {}}, "results_tables": {"live": "table"},
               "log": ["search part: 168 s"]}
    (tmp_path / "report_data.json").write_text(json.dumps(earlier))
    data = {"command": new, "mode": "full", "wall_time_s": 7.0, "seeds": 2, "budgets": [10], "results": [], "not_completed": [],
            "tau": [{"predictor": "GIN", "space": "nb101", "tau": 0.7}], "performance": {}, "moo": {},
            "log": ["tau part: 7 s"]}
    keep_earlier_parts(tmp_path, data, ["tau"], ["nb101"])
    assert (data["seeds"], data["results"], data["performance"], data["results_tables"]) == (
        20, [{"method": "RE"}], {"throughput": {}}, {"live": "table"})
    # the NB101 rows are this invocation's; the other spaces' rows are kept
    assert [(r.get("space", "nb201"), r.get("tau")) for r in data["tau"]] == [("nb201", 0.6), ("darts", None), ("nb101", 0.7)]
    assert [(m["command"], m["parts"]) for m in data["made_by"]] == [
        (new, ["tau"]), (old, ["search", "tau", "performance", "moo", "results"])]
    assert data["log"] == ["tau part: 7 s", "(earlier) search part: 168 s"]
    # a report that makes every part keeps nothing
    again = {**data, "command": old, "made_by": None, "log": []}
    keep_earlier_parts(tmp_path, again, ["search", "tau", "performance", "moo", "results"], list(STUDIES))
    assert [m["command"] for m in again["made_by"]] == [old] and again["tau"] == data["tau"] and again["log"] == []
    # nor does a --quick report into a folder that holds a full one
    quick = {**data, "mode": "quick", "made_by": None, "results": [], "tau": [], "log": []}
    keep_earlier_parts(tmp_path, quick, ["tau"], ["nb201"])
    assert (quick["results"], quick["tau"], len(quick["made_by"])) == ([], [], 1)


def test_a_checkpoint_fitted_with_other_settings_than_its_fit_config_is_not_reused(tmp_path, shared):
    config = yaml.safe_load((ROOT / "configs" / "fits" / "nb201" / "gin.yaml").read_text())
    config["trainer"].update(max_epochs=1, default_root_dir=str(tmp_path), enable_progress_bar=False)
    config["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(tmp_path)
    config["model"]["init_args"]["hidden"] = 8
    config["data"]["init_args"].update(benchmark=str(shared / "nb201_200ep.csv.gz"), num_labelled=20, max_val=50)
    producer, ckpt = tmp_path / "gin.yaml", tmp_path / "last.ckpt"
    producer.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(producer)]) == 0 and ckpt.is_file()
    user = tmp_path / "resume.yaml"  # a config that loads the checkpoint
    user.write_text(yaml.safe_dump({**config, "ckpt_path": str(ckpt)}))
    producers, log = {str(ckpt): producer}, []
    assert changed_settings(ckpt, producer) == []
    ensure_fitted("fit", [user], producers, log)
    assert log == [f"reused {ckpt} (delete it to fit again)"]
    config["model"]["init_args"]["hidden"] = 16  # the fit config changed since the checkpoint was written
    config["data"]["init_args"]["num_labelled"] = 30
    producer.write_text(yaml.safe_dump(config))
    assert changed_settings(ckpt, producer) == ["model.hidden: 8 -> 16", "data.num_labelled: 20.0 -> 30.0"]
    with pytest.raises(ConfigError, match=r"last.ckpt was fitted with other settings .*model.hidden: 8 -> 16.*delete or move it"):
        ensure_fitted("fit", [user], producers, log)


def test_seed_fit_config_puts_the_fit_on_the_protocol_and_the_seed(tmp_path):
    jigsaw = protocol("tnb101-jigsaw")
    fit = ROOT / "configs" / "fits" / "tnb101" / "crlso.yaml"
    path = seed_fit_config(fit, jigsaw, tmp_path / "tables", 3, tmp_path / "seed_3", quick=False)
    config = yaml.safe_load(path.read_text())
    data = config["data"]["init_args"]
    assert (config["seed_everything"], data["seed"], data["target"], data["num_labelled"]) == (3, 3, "jigsaw_valid", 50)
    assert data["benchmark"] == str(tmp_path / "tables" / "tnb101_micro.csv.gz")
    callback = config["trainer"]["callbacks"][0]["init_args"]
    assert callback["dirpath"] == config["trainer"]["default_root_dir"] == str(tmp_path / "seed_3")
    assert config["trainer"]["max_epochs"] == 4  # the fit config's own, outside --quick


def test_per_seed_fits_are_reused(tmp_path):
    cifar10 = protocol("nb201-cifar10")
    configs = cifar10.configs(METHODS["CR-LSO"])
    run_dir = tmp_path / "CR-LSO"
    for seed in range(2):  # finished fits: nothing is fitted again
        (run_dir / "fits" / f"seed_{seed}").mkdir(parents=True)
        (run_dir / "fits" / f"seed_{seed}" / "crlso.ckpt").write_bytes(b"")
    assert seed_fits(configs, cifar10, tmp_path, "CR-LSO", run_dir, [0, 1], checkpoint_producers(), quick=True) == []
    assert not (run_dir / "fits" / "seed_0" / "fit.yaml").exists()
    extra = seed_fit_arguments(configs, run_dir)
    assert extra == ["--ckpt_path", str(run_dir / "fits" / "seed_{seed}" / "crlso.ckpt"), "--data.init_args.seed", "{seed}"]


@pytest.mark.slow
def test_finished_searches_need_no_fit(tmp_path, monkeypatch, shared):
    """Runs reused from another machine (their checkpoints not kept) are summarised without fitting."""
    monkeypatch.chdir(ROOT)
    cifar10, crlso = protocol("nb201-cifar10"), METHODS["CR-LSO"]
    configs, run_dir, log = cifar10.configs(crlso), tmp_path / "CR-LSO", []
    extra = cifar10.overrides(shared) + seed_fit_arguments(configs, run_dir)
    rs = _rs_run(tmp_path, shared)
    for seed in range(2):
        seed_dir = run_dir / f"seed_{seed}"
        seed_dir.mkdir(parents=True)
        (seed_dir / RECIPE_FILE).write_text(recipe(configs, seed, seed_arguments(extra, seed)))
        for name in ("results.json", "timing.json"):  # what a record keeps of a seed (RECORD_FILES)
            (seed_dir / name).write_text((rs / name).read_text())
    record, pool = tmp_path / "records" / "CR-LSO.tar.gz", LocalPool(1, tmp_path / "logs")
    entry = run_method(cifar10, crlso, shared, run_dir, 2, [5, 10], pool, checkpoint_producers(), False, log, record)
    assert log == [] and not (run_dir / "fits").exists()
    assert entry["summary"]["seeds"] == 2 and entry["summary"]["budgets"]["10"]["count"] == 2
    kept = record.read_bytes()
    shutil.rmtree(run_dir)  # another machine: only the committed record
    again = run_method(cifar10, crlso, shared, run_dir, 2, [5, 10], pool, checkpoint_producers(), False, log, record)
    assert log == [] and again["summary"]["budgets"] == entry["summary"]["budgets"]
    assert record.read_bytes() == kept  # saved again byte for byte: no change for git to see
    assert sorted(p.name for p in (run_dir / "seed_0").iterdir()) == sorted(["results.json", "timing.json", RECIPE_FILE])


def _rs_run(tmp_path: Path, shared: Path) -> Path:
    run = tmp_path / "rs"
    files = protocol("nb201-cifar10").configs(METHODS["RS"])
    assert main(["search", *[a for f in files for a in ("--config", str(f))], "--data.init_args.benchmark",
                 str(shared / "nb201_200ep.csv.gz"), "--budget", "10", "--run_dir", str(run), "--progress", "false"]) == 0
    return run


def test_archive_load_and_enumeration_measure_beside_their_baselines(tmp_path, shared):
    load = archive_load([shared / "tnb101_micro.csv.gz"], tmp_path / "tnb.npz", repeats=1)
    assert load["rows"] == 4096 and load["columns"] == 7 and load["tables"] == ["tnb101_micro.csv.gz"]
    assert load["csv_over_native"] == load["csv_s"] / load["native_s"]
    assert load["csv_peak_mb"] > 0 and load["native_peak_mb"] > 0
    small, smaller = nb101_enumeration(max_vertices=4), nb101_enumeration(max_vertices=3)
    assert small["warm_equals_cold"] and smaller["warm_equals_cold"]
    assert small["max_vertices"] == 4 and small["cells"] > smaller["cells"] > 0  # more vertices, more cells
    assert small["cold_over_warm"] == small["cold_s"] / small["warm_s"]


@pytest.mark.slow
def test_search_cost_measures_each_method_beside_re_in_processes_of_their_own(monkeypatch, shared):
    from benchmarks.report.render import search_cost_table

    monkeypatch.chdir(ROOT)
    log = []
    costs = search_costs([METHODS["RS"], METHODS["RE"]], 6, shared, checkpoint_producers(), log,
                         spaces={"DARTS": None})
    darts = costs["DARTS"]
    assert set(darts) == {"protocol", "budget", "RE", "RS"} and darts["RE"]["runs"] == 2  # RE, RS, RE
    rs = darts["RS"]
    assert rs["queries"] == 6 and rs["s_per_query"] == rs["loop_s"] / 6 > 0
    assert rs["over_re"] == rs["s_per_query"] / rs["re_s_per_query"] and rs["peak_mb"] > 50 and rs["process_cpu_s"] > 0
    row = search_cost_table(costs)[-2]
    assert row.startswith("| DARTS (no table") and "x RE)" in row and " MB" in row


def test_every_darts_search_cost_config_loads_fits_the_report_can_make(monkeypatch, tmp_path, shared):
    """The performance part's DARTS searches run the methods as users do: DCL-ENAS and Delta-NAS load
    their label-free fits (never an untrained predictor, which the search refuses), each of which a
    configs/fits/ config writes, so that the report makes it first where it is missing."""
    from benchmarks.report.fits import needed_checkpoints
    from benchmarks.report.performance import search_parts
    from lightning_nas.bench import config_arguments, resolved_config

    monkeypatch.chdir(ROOT)
    producers = checkpoint_producers()
    needed = {}
    for name, method in METHODS.items():
        configs, extra = search_parts(method, None, shared, tmp_path)
        needed[name] = needed_checkpoints(resolved_config(["search", *config_arguments(configs), *extra]))
        assert all(ckpt in producers for ckpt in needed[name]), (name, needed[name])
    assert needed["DCL-ENAS"] == ["checkpoints/darts/dcl_enas/pretrain.ckpt"]
    assert needed["Delta-NAS"] == ["checkpoints/darts/delta_nas/last.ckpt"]


def test_unknown_names_are_user_errors(capsys, shared):
    assert main(["report", "--methods", "RS", "FOO", "--shared", str(shared)]) == 2
    assert "unknown method FOO; known: RS, RE, DCL-ENAS" in capsys.readouterr().err
    assert main(["report", "--protocols", "nb201-cifar10", "nb999", "--shared", str(shared)]) == 2
    assert "unknown protocol nb999" in capsys.readouterr().err
    assert main(["report", "--shared", str(Path("/nonexistent/tables"))]) == 2
    err = capsys.readouterr().err
    assert "the shared benchmark tables are not in /nonexistent/tables: give their folder with --shared" in err


def test_against_re_pairs_seeds_and_counts_protocols():
    from benchmarks.report.render import against_re_section, paired_interval

    mean, low, high, n = paired_interval([1.0, 2.0, None, 4.0], [0.5, 1.0, 3.0, 3.0])
    assert n == 3 and mean == pytest.approx(5 / 6) and low < mean < high
    assert paired_interval([1.0], [0.0])[1] != paired_interval([1.0], [0.0])[1]  # nan: one pair has no interval

    def result(protocol, method, values):
        entry = {"count": len(values), "score": {}, "test_acc": {"mean": 0.0, "std": 0.0, "values": values}}
        return {"protocol": protocol, "method": method, "summary": {"budgets": {"100": entry}}}

    data = {"results": [result("a", "RE", [1.0, 2.0, 3.0]), result("a", "X", [2.0, 3.1, 3.9]),
                        result("b", "RE", [1.0, 2.0, 3.0]), result("b", "X", [0.0, 2.5, 3.0])]}
    text = "\n".join(against_re_section(data))
    assert "| X | **+1.00 [" in text and "| 1/2 | 1/2 |" in text
    assert "| X | 2.00 | 0.00 |" in text and "| RE | 1.00 | 1.00 |" in text
