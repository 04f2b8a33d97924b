"""The command line: real configs on real tables, and one-line errors with exit code 2 for bad input."""
import json
import shutil
from pathlib import Path

import pytest
import yaml

from lightning_nas.cli import main
from lightning_nas.bench import finished

ROOT = Path(__file__).resolve().parents[1]
RE_CONFIGS = [str(ROOT / "configs" / "methods" / "re.yaml"), str(ROOT / "configs" / "protocols" / "nb201-cifar10.yaml")]
RE = [arg for config in RE_CONFIGS for arg in ("--config", config)]


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # configs name ../shared relative to the project root


def search(tmp_path, *extra):
    return main(["search", *RE, "--run_dir", str(tmp_path / "run"), "--progress", "false", *extra])


def test_search_writes_results_and_resumes(tmp_path):
    assert search(tmp_path, "--budget", "20") == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(results["queries"]) == 20 and results["seed"] == 0
    assert results["config"]["strategy"]["class_path"].endswith("RegularizedEvolution")
    # a longer budget on the same run directory continues the run instead of starting again
    assert search(tmp_path, "--budget", "25") == 0
    longer = json.loads((tmp_path / "run" / "results.json").read_text())
    assert longer["queries"][:20] == results["queries"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "0"], "budget must be a positive number"),
        (["--data.init_args.target", "cifar10_nope"], "unknown metric 'cifar10_nope'"),
        (["--report", "[imagenet_nope]"], "unknown metric 'imagenet_nope'"),
        (["--data.init_args.benchmark", "/nonexistent/nb201.npz"], "does not exist"),
        (["--strategy.init_args.sample_size", "40"], "sample_size"),
    ],
)
def test_bad_search_input_is_one_line_exit_2_and_no_output(tmp_path, capsys, args, message):
    assert search(tmp_path, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("lightning-nas: error:")
    assert not (tmp_path / "run").exists()


def test_missing_config_file(tmp_path, capsys):
    assert main(["search", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_archive_is_refused(tmp_path, capsys, shared, damage):
    archive = tmp_path / "nb201.npz"
    assert main(["convert", str(shared / "nb201_200ep.csv.gz"), "-o", str(archive)]) == 0
    if damage == "truncate":
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    else:  # edit one stored accuracy in a well-formed file that keeps the old checksum
        import numpy as np

        with np.load(archive) as z:
            arrays = {name: z[name] for name in z.files}
        arrays["metric/cifar10_test_acc"][0] += 1
        with open(archive, "wb") as f:
            np.savez(f, **arrays)
    assert search(tmp_path, "--data.init_args.benchmark", str(archive)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert ("truncated or corrupt" if damage == "truncate" else "checksum mismatch") in err
    assert not (tmp_path / "run").exists()


def test_malformed_architecture_in_table(tmp_path, capsys, shared):
    import gzip

    lines = gzip.open(shared / "nb201_200ep.csv.gz", "rt").read().splitlines()[:5]
    lines[3] = lines[3].replace("nor_conv_3x3", "nor_conv_9x9", 1).replace("skip_connect", "skip_conect", 1)
    table = tmp_path / "bad.csv"
    table.write_text("\n".join(lines) + "\n")
    assert main(["convert", str(table), "-o", str(tmp_path / "out.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "bad.csv" in err and "line" in err
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.slow
def test_bench_summarises_seeds(tmp_path):
    out = tmp_path / "bench"
    bench = ["bench", *RE, "--seeds", "2", "--budgets", "5", "10", "--workers", "1", "--out", str(out)]
    assert main(bench) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == 2 and set(summary["budgets"]) == {"5", "10"} and summary["config"] == RE_CONFIGS
    ten = summary["budgets"]["10"]
    assert ten["count"] == 2 and 0 <= ten["found_optimum_fraction"] <= 1
    runs = [json.loads((out / f"seed_{s}" / "results.json").read_text()) for s in (0, 1)]
    expected = sum(r["queries"][9]["best"]["report"]["cifar10_test_acc"] for r in runs) / 2
    assert ten["cifar10_test_acc"]["mean"] == pytest.approx(expected)
    shutil.rmtree(out / "seed_1")  # an interrupted bench reruns only what is missing
    assert main(bench) == 0
    assert json.loads((out / "summary.json").read_text())["budgets"] == summary["budgets"]


@pytest.mark.slow
def test_bench_reruns_a_seed_only_when_its_resolved_config_changed(tmp_path):
    out, method, protocol = tmp_path / "bench", tmp_path / "re.yaml", tmp_path / "protocol.yaml"
    method.write_text(Path(RE_CONFIGS[0]).read_text())
    protocol.write_text(Path(RE_CONFIGS[1]).read_text())
    files = [str(method), str(protocol)]
    bench = ["bench", "--config", files[0], "--config", files[1], "--seeds", "1", "--budgets", "8", "--workers", "1",
             "--out", str(out)]
    assert main(bench) == 0
    results = out / "seed_0" / "results.json"
    first = results.stat().st_mtime_ns
    assert main(bench) == 0 and results.stat().st_mtime_ns == first  # same recipe: reused
    assert finished(files, 0, 8, out / "seed_0", []) and not finished(files, 0, 9, out / "seed_0", [])
    # the same search from files laid out otherwise: one file, other comments, a default spelt out
    merged = yaml.safe_load(method.read_text())
    merged["data"]["init_args"].update(yaml.safe_load(protocol.read_text())["data"]["init_args"])
    merged.update(report=["cifar10_test_acc"], ask_batch=1)
    single = tmp_path / "single.yaml"
    single.write_text("# regularized evolution, all in one file\n" + yaml.safe_dump(merged))
    assert finished([str(single)], 0, 8, out / "seed_0", [])
    assert main(["bench", "--config", str(single), *bench[5:]]) == 0 and results.stat().st_mtime_ns == first
    other = ["--strategy.init_args.population_size", "4"]
    assert not finished(files, 0, 8, out / "seed_0", other)
    assert main([*bench, "--", *other]) == 0  # other arguments: searched again
    assert json.loads(results.read_text())["config"]["strategy"]["init_args"]["population_size"] == 4
    method.write_text(Path(RE_CONFIGS[0]).read_text().replace("sample_size: 3", "sample_size: 2"))
    assert main(bench) == 0  # an edited config: searched again
    assert json.loads(results.read_text())["config"]["strategy"]["init_args"]["sample_size"] == 2
