import json
from pathlib import Path

from lightning_nas.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_quick_report_smoke(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out, runs = tmp_path / "report", tmp_path / "runs"
    args = ["report", "--quick", "--protocols", "nb201-cifar100", "--methods", "RS", "RE", "--workers", "1",
            "--out", str(out), "--runs", str(runs)]
    assert main(args) == 0
    text = (out / "REPORT.md").read_text()
    assert "## nb201-cifar100" in text and "| RS |" in text and "| RE |" in text
    assert (out / "plots" / "nb201-cifar100.png").stat().st_size > 0
    data = json.loads((out / "report_data.json").read_text())
    rs = next(r for r in data["results"] if r["method"] == "RS")
    # CIFAR-100 protocol: searched on the 12-epoch validation column, reported on 200-epoch test accuracy
    first = json.loads((runs / "quick" / "nb201-cifar100" / "RS" / "seed_0" / "results.json").read_text())["queries"][0]
    assert set(first["report"]) == {"cifar100_test_acc"}
    assert rs["summary"]["budgets"]["20"]["count"] == 2
