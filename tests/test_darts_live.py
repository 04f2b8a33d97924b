"""A DARTS search as configs/darts/ composes it (method, DARTS task, the method's DARTS part) runs end to
end through the CLI: every candidate is built as a DARTS network and trained live."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.slow
def test_a_darts_live_search_runs_through_the_cli(tmp_path, capsys):
    from lightning_nas.cli import main

    store = tmp_path / "evaluations.sqlite"
    before = torch.get_num_threads()
    try:
        code = main([
            "search", "--config", str(CONFIGS / "methods" / "re.yaml"), "--config", str(CONFIGS / "darts" / "task.yaml"),
            "--config", str(CONFIGS / "darts" / "re.yaml"), "--budget", "2", "--run_dir", str(tmp_path),
            "--oracle.init_args.store", str(store), "--oracle.init_args.epochs", "1", "--progress", "false",
        ])
    finally:
        torch.set_num_threads(before)
    assert code == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["queries"]) == 2 and results["strategy"] == "RegularizedEvolution"
    assert all(q["arch"].startswith("Genotype(normal=") and q["report"]["params"] > 0 for q in results["queries"])
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0] == 2
