"""A tiny run of each measurement script in benchmarks/ (`python -m benchmarks.bench_<name>`), written
to a temporary folder: the scripts run end to end on the shared tables and the current configs."""
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def trial(out: Path, shared: Path) -> list[str]:
    return ["--out", str(out), "--shared", str(shared)]


@pytest.mark.slow
def test_bench_archive(shared, capsys):
    from benchmarks.bench_archive import main

    assert main(["--rows", "31000", "--repeats", "1", "--shared", str(shared)]) in (0, 1)  # 1: a time limit missed
    printed = capsys.readouterr().out
    assert "NB201 native archive (15625 rows" in printed and "SIZE TEST archive (31,000 rows" in printed


def test_bench_loop(shared, capsys, tmp_path):
    from benchmarks.bench_loop import main

    main(["--sizes", "20", "60", "--old-sizes", "20", "--shared", str(shared), "--out", str(tmp_path)])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("RandomSearch, table_only on nb201_200ep.csv.gz: ms per query")
    assert printed[-1].startswith("journal: 60 queries cost ") and len(printed) == 5
    written = json.loads((tmp_path / "results" / "loop.json").read_text())
    assert set(written["journal"]) == {"20", "60"} and written["ratio_last_to_first"] > 0
    assert printed[-1] in (tmp_path / "results" / "loop.md").read_text()


def test_bench_nb101_enumeration(shared, capsys):
    from benchmarks.bench_nb101_enumeration import main

    main(["--max-vertices", "4", "--shared", str(shared)])
    printed = capsys.readouterr().out
    assert "(up to 4 vertices)" in printed and "warm table identical to cold   : True" in printed


def test_bench_crlso_report(tmp_path, shared):
    from benchmarks.bench_crlso import main

    (tmp_path / "results").mkdir()
    shutil.copy(ROOT / "benchmarks" / "results" / "crlso.json", tmp_path / "results")  # the measured parts
    assert main(["report", *trial(tmp_path, shared)]) == 0
    text = (tmp_path / "results" / "crlso.md").read_text()
    assert "## Latent size" in text and "| 16 |" in text and "configs/fits/nb201/crlso.yaml" in text


@pytest.mark.slow
def test_bench_ctnas_search(tmp_path, shared):
    from benchmarks.bench_ctnas import main

    main(["--parts", "search", "--search-seeds", "1", "--budgets", "12", "--workers", "1", *trial(tmp_path, shared)])  # CTNAS: 10 warm-start queries, then guided
    summary = json.loads((tmp_path / "results" / "ctnas.json").read_text())["search"]["summary"]
    assert set(summary) == {f"{p}/{m}" for p in ("cifar10", "cifar100", "imagenet16") for m in ("CTNAS", "RS", "RE")}
    assert (tmp_path / "runs" / "ctnas" / "cifar100" / "CTNAS" / "seed_0" / "results.json").is_file()


def test_bench_dcl_enas_search(tmp_path, shared):
    from benchmarks.bench_dcl_enas import main

    assert main(["--parts", "search", "--search-seeds", "1", "--budgets", "5", "--protocols", "cifar100", "--methods",
                 "random", "re", *trial(tmp_path, shared)]) == 0
    search = json.loads((tmp_path / "results" / "dcl_enas.json").read_text())["search"]
    assert set(search) == {"cifar100/random", "cifar100/re"} and search["cifar100/re"]["report"] == "cifar100_test_acc"


def test_bench_delta_nas_proxy_cost(tmp_path, shared, monkeypatch):
    from benchmarks.bench_delta_nas import main

    monkeypatch.chdir(tmp_path)  # the script works from the repository root; the test's directory comes back
    assert main(["--parts", "proxy_cost", "--cost-samples", "1", *trial(tmp_path, shared)]) == 0
    cost = json.loads((tmp_path / "results" / "delta_nas.json").read_text())["proxy_cost"]
    assert set(cost) == {"nb201", "tnb101_micro"} and all(c["timed"] == 1 for c in cost.values())


@pytest.mark.slow
def test_bench_delta_nas_table1_readings_on_darts(tmp_path, shared, monkeypatch):
    """Two readings of the paper's Table 1 on the 500 DARTS cells, one split seed: each fit is kept and
    reused, and the markdown shows both beside the paper's figure."""
    from benchmarks.bench_delta_nas import main

    monkeypatch.chdir(tmp_path)
    args = ["--parts", "table1", "--readings", "before", "chosen", "--seeds-table1", "1", "--seed-offset", "100",
            "--table1-spaces", "darts", *trial(tmp_path, shared)]
    assert main(args) == 0
    table1 = json.loads((tmp_path / "results" / "delta_nas.json").read_text())["table1"]
    cells = {r: table1[r]["seeds 100-100"]["darts"]["100"] for r in ("before", "chosen")}
    assert all(-1 <= c["tau"] <= 1 and c["seeds"] == 1 for c in cells.values())
    markdown = (tmp_path / "results" / "delta_nas.md").read_text()
    assert "| chosen | " in markdown and "| paper DoA (Table 1) | " in markdown and "0.795" in markdown
    fits = {f: f.stat().st_mtime_ns for f in tmp_path.rglob("n100_seed100.json")}
    assert len(fits) == 2 and main(args) == 0
    assert {f: f.stat().st_mtime_ns for f in tmp_path.rglob("n100_seed100.json")} == fits  # reused, not refitted


def test_bench_ednag_timing(tmp_path, shared):
    from benchmarks.bench_ednag import main

    tiny = ["--timing-repeats", "1", "--timing-steps", "5", "--labels", "20"]
    assert main(["--parts", "timing", *tiny, *trial(tmp_path, shared)]) == 0
    timing = json.loads((tmp_path / "results" / "ednag.json").read_text())["timing"]
    assert timing["threads_1"]["architectures_scored"] > 0 and (tmp_path / "results" / "ednag.md").is_file()


def test_bench_proxies(tmp_path, shared):
    from benchmarks.bench_proxies import main

    main(["--archs", "2", "--time-budget", "1", "--cost-archs", "1", "--live-archs", "0", *trial(tmp_path, shared)])
    results = json.loads((tmp_path / "results" / "proxies.json").read_text())
    assert results["correlation"]["archs"] >= 1 and results["live_training"] == {}
    assert (tmp_path / "runs" / "proxies" / "scores.jsonl").is_file()


@pytest.mark.slow
def test_bench_proxies_darts_reports_the_cells_already_scored(tmp_path, shared):
    from benchmarks.bench_proxies import NASLIB_COLUMNS, main
    from lightning_nas.benchmarks.archive import Benchmark
    from lightning_nas.proxies.zero_cost import PROXIES

    archs = Benchmark.load(shared / "nb301_500.csv.gz").archs()[:5]
    log = tmp_path / "runs" / "proxies" / "darts_scores.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text("".join(json.dumps({"arch": str(a), "seconds": 40.0, **{p: float(i * (1 + k)) for k, p in
                                       enumerate(PROXIES)}, "cost": {p: 4.0 for p in PROXIES}}) + "\n"
                           for i, a in enumerate(archs)))
    main(["--darts", "--resume", "--time-budget", "0", "--live-archs", "1", *trial(tmp_path, shared)])
    results = json.loads((tmp_path / "results" / "proxies_darts.json").read_text())
    assert results["scored"]["archs"] == 5 and results["scored"]["of"] == 500  # nothing new was scored
    assert all(results["correlation"][p]["n"] == 5 for p in PROXIES)
    # every fake score ranks the cells alike: the same rho against the accuracy for each proxy
    assert len({round(results["correlation"][p]["ours_vs_acc"], 9) for p in PROXIES}) == 1
    assert {p for p in PROXIES if "ours_vs_naslib" in results["correlation"][p]} == set(NASLIB_COLUMNS)
    assert results["live_training"]["archs"] == 1 and results["live_training"]["config"] == "configs/darts/task.yaml"
    assert "n = 5 of 500 cells" in (tmp_path / "results" / "proxies_darts.md").read_text()


def test_bench_moo_renders_the_baselines_reach_beside_the_methods():
    from benchmarks.bench_moo import markdown, verdict

    def method(hv100):
        return {"hypervolume": {"50": {"mean": hv100 - 0.02, "std": 0.01}, "100": {"mean": hv100, "std": 0.01}},
                "front_size": {"100": 10.0}, "wall_s_per_run": 1.0}

    data = {"commands": ["python -m benchmarks.bench_moo"], "seeds": [0, 1], "budgets": [50, 100], "protocols": {
        "nb201-cifar10-moo": {"front": {"front": [{}] * 19, "hypervolume": 0.5},
                              "methods": {"RS": method(0.46), "MO-RE": method(0.47), "DCL-ENAS": method(0.48),
                                          "CTNAS": method(0.475), "CR-LSO": method(0.495), "EDNAG": method(0.46)},
                              "reach": {"RS": {"100": 0.46, "1000": 0.49}, "MO-RE": {"100": 0.47, "300": 0.496}}}}}
    data["verdict"] = verdict(data)
    text = markdown(data)
    assert "| RS | 92.0 % | — | 98.0 % |" in text and "| MO-RE | 94.0 % | 99.2 % | — |" in text
    assert "3 of 4 methods above MO-RE's mean hypervolume at 100 queries (DCL-ENAS, CTNAS, CR-LSO): met" in text
    assert "best: CR-LSO, 99.00 % of the true front's hypervolume: met" in text
    assert "- RS reaches 99 % at none of 100, 1000 queries" in text and "- MO-RE reaches 99 % at 300 queries" in text
