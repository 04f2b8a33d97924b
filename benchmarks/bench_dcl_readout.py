"""DCL-ENAS node-view readout, chosen across spaces (leave-one-space-out): the paper's attention pooling
(a softmax gate: a weighted mean of the nodes) against a sum readout (the same gate times the node
count, GIN's sum readout), each pre-trained (stage 1) and fine-tuned (stage 2) with the settings of the
space's configs, Kendall tau over every unlabelled architecture of the space's table.

    python -m benchmarks.bench_dcl_readout                    # 4 spaces x 2 readouts x 3 tuning seeds
    python -m benchmarks.bench_dcl_readout --spaces darts nb201 --seeds 100 101 --parts predictor
    python -m benchmarks.bench_dcl_readout --parts search     # the 11 search protocols, 4 tuning seeds

The search part runs DCL-ENAS (configs/methods/dcl_enas.yaml with the protocol's files) through
`lightning-nas bench` on every single-objective protocol with each readout and its stage-1 checkpoint
above, seeds 100-103, budget 100 (finished runs are reused).

Tuning seeds (the labelled-set draws) are 100 and up: the report's tau study uses seeds 0-4.
Stage 1 runs once per (space, readout) with the space's configs/fits/<space>/dcl_enas_pretrain.yaml;
stage 2 uses configs/fits/nb201/dcl_enas_finetune.yaml's model and data settings on the space's table,
with stage 1's encoder settings.
Results: benchmarks/results/settings/dcl_enas_readout.{json,md}; checkpoints under benchmarks/runs/.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml

from benchmarks.report.common import CONFIGS, ROOT, at_root, quiet, shared_tables
from benchmarks.report.protocols import protocols
from lightning_nas.io import atomic_write, dumps
from lightning_nas.predictors.dcl import ENCODER_DEFAULTS, ENCODER_KEYS
from lightning_nas.predictors.evaluate import fit_and_test, instantiate
from lightning_nas.training import quiet_trainer

RUNS, RESULTS = ROOT / "benchmarks" / "runs" / "dcl_readout", ROOT / "benchmarks" / "results" / "settings"
FINETUNE = CONFIGS / "fits" / "nb201" / "dcl_enas_finetune.yaml"
READOUTS = ("attention", "sum")
#: space -> (fits folder, table, target, labelled architectures: about 1% of the space's table; DARTS:
#: the predictor study's 100 of nb301_500)
SPACES = {
    "nb201": ("nb201", "nb201_200ep.csv.gz", "cifar10_valid_valid_acc", 156),
    "darts": ("darts", "nb301_500.csv.gz", "cifar10_valid_acc", 100),
    "tnb101_micro": ("tnb101", "tnb101_micro.csv.gz", "class_scene_valid", 41),
    "nb101": ("nb101", "nb101_hashed_30k.csv.gz", "valid_acc_108ep", 300),
}


def pretrain(space: str, readout: str) -> tuple[Path, float]:
    """Stage 1 of `space` with `readout` (reused when its checkpoint exists)."""
    path = RUNS / f"{space}_{readout}_pretrain.ckpt"
    timing = path.with_suffix(".json")
    if path.is_file() and timing.is_file():
        return path, json.loads(timing.read_text())["fit_s"]
    spec = yaml.safe_load((CONFIGS / "fits" / SPACES[space][0] / "dcl_enas_pretrain.yaml").read_text())
    L.seed_everything(spec.get("seed_everything", 0), verbose=False)
    data = instantiate(spec["data"])
    model = instantiate(spec["model"], readout=readout)
    trainer = quiet_trainer(spec["trainer"]["max_epochs"])
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    fit_s = round(time.perf_counter() - start, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    atomic_write(timing, json.dumps({"fit_s": fit_s}))
    return path, fit_s


def finetune_tau(space: str, readout: str, ckpt: Path, seed: int, shared: Path) -> dict[str, Any]:
    spec = yaml.safe_load(FINETUNE.read_text())
    folder, table, target, labels = SPACES[space]
    stage1 = yaml.safe_load((CONFIGS / "fits" / folder / "dcl_enas_pretrain.yaml").read_text())["model"]["init_args"]
    encoder = {k: stage1.get(k, ENCODER_DEFAULTS.get(k)) for k in ENCODER_KEYS if k != "readout"}  # = stage 1's
    epochs = spec["trainer"]["max_epochs"]
    data = instantiate(spec["data"], benchmark=str(shared / table), target=target, num_labelled=labels, seed=seed)
    model = lambda: instantiate(spec["model"], **encoder, pretrained=str(ckpt),  # noqa: E731
                                readout=readout, max_epochs_hint=epochs)
    return fit_and_test(model, data, epochs, seed)


def search(name: str, readout: str, seeds: list[int], budget: int) -> dict[str, Any]:
    """DCL-ENAS on protocol `name` with `readout`: per-seed reported metric at `budget` (`lightning-nas bench`)."""
    chosen = next(p for p in protocols() if p.name == name)
    space = {"nb201": "nb201", "tnb101": "tnb101_micro", "nb101": "nb101"}[chosen.family]
    ckpt, _ = pretrain(space, readout)
    out = RUNS / "search" / name / readout
    command = [sys.executable, "-m", "lightning_nas", "bench", *[f"--config={c}" for c in chosen.configs("dcl_enas")],
               "--seeds", str(len(seeds)), "--first-seed", str(seeds[0]), "--budgets", str(budget), "--workers", "2",
               "--out", str(out), "--", "--model.init_args.pretrained", str(ckpt), "--model.init_args.readout", readout]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())["budgets"][str(budget)]
    return {"values": summary[chosen.report[0]]["values"]}


def markdown(results: dict[str, Any]) -> str:
    lines = ["# DCL-ENAS node-view readout across spaces", "",
             f"`{results['command']}`, {results['machine']}; Kendall tau of the fine-tuned predictor over every "
             "unlabelled architecture of the table, tuning seeds " + ", ".join(map(str, results["seeds"])) +
             " (the report's tau study uses 0-4). Stage 1 once per space and readout with the space's "
             "configs/fits/<space>/dcl_enas_pretrain.yaml; stage 2 with configs/fits/nb201/dcl_enas_finetune.yaml.", "",
             "| space (table, labels) | attention (paper) | sum | sum - attention |", "|---|---|---|---|"]
    wins = 0
    for space, rows in results["spaces"].items():
        means = {r: float(np.mean(rows[r]["tau"])) for r in READOUTS}
        wins += means["sum"] >= means["attention"]
        cells = [f"{means[r]:.3f} ({', '.join(f'{t:.3f}' for t in rows[r]['tau'])})" for r in READOUTS]
        _, table, target, labels = SPACES[space]
        lines.append(f"| {space} ({table} {target}, {labels}) | {cells[0]} | {cells[1]} | "
                     f"{means['sum'] - means['attention']:+.3f} |")
    lines += ["", f"Sum is at or above attention on {wins} of {len(results['spaces'])} spaces. Stage-1 fit "
              "seconds per (space, readout): " + ", ".join(f"{s}/{r} {rows[r]['pretrain_s']:.0f}"
                                                           for s, rows in results["spaces"].items() for r in READOUTS),
              ""]
    if results.get("search"):
        search = results["search"]
        lines += ["## The search with each readout", "",
                  f"DCL-ENAS (configs/methods/dcl_enas.yaml + the protocol's files) with each readout and its stage-1 "
                  f"checkpoint above; reported metric of the best-by-objective cell at {search['budget']} queries, mean "
                  f"± std over tuning seeds {', '.join(map(str, search['seeds']))}.", "",
                  "| protocol | attention (paper) | sum | sum - attention |", "|---|---|---|---|"]
        diffs = []
        for name, rows in search["protocols"].items():
            means = {r: float(np.mean(rows[r]["values"])) for r in READOUTS}
            diffs.append(means["sum"] - means["attention"])
            cells = [f"{means[r]:.3f} ± {np.std(rows[r]['values']):.3f}" for r in READOUTS]
            lines.append(f"| {name} | {cells[0]} | {cells[1]} | {diffs[-1]:+.3f} |")
        lines += ["", f"Sum is at or above attention on {sum(d >= 0 for d in diffs)} of {len(diffs)} protocols; mean "
                  f"difference {np.mean(diffs):+.3f} points.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=list(SPACES), choices=list(SPACES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    parser.add_argument("--shared", help="folder of the shared benchmark tables")
    parser.add_argument("--parts", nargs="+", default=["predictor", "search"], choices=["predictor", "search"])
    parser.add_argument("--search-seeds", type=int, default=4, help="seeds 100 and up of the search part")
    parser.add_argument("--budget", type=int, default=100)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    quiet()
    shared = shared_tables(args.shared)
    stem = RESULTS / "dcl_enas_readout"
    previous = json.loads(stem.with_suffix(".json").read_text()) if stem.with_suffix(".json").is_file() else {}
    results: dict[str, Any] = {"command": " ".join(["python -m benchmarks.bench_dcl_readout", *(argv or [])]),
                               "machine": "one CPU thread", "seeds": args.seeds, "spaces": {},
                               "search": previous.get("search")}  # a part not run keeps its last results
    if "predictor" not in args.parts:
        results.update({k: previous[k] for k in ("command", "machine", "seeds", "spaces") if k in previous})
    with at_root():
        for space in args.spaces if "predictor" in args.parts else []:
            results["spaces"][space] = {}
            for readout in READOUTS:
                ckpt, pretrain_s = pretrain(space, readout)
                taus = [finetune_tau(space, readout, ckpt, seed, shared)["tau"] for seed in args.seeds]
                results["spaces"][space][readout] = {"tau": [round(t, 4) for t in taus], "pretrain_s": pretrain_s}
                print(f"{space} {readout}: tau {np.mean(taus):.3f} {taus}", flush=True)
        if "search" in args.parts:
            seeds = list(range(100, 100 + args.search_seeds))
            results["search"] = {"seeds": seeds, "budget": args.budget, "protocols": {}}
            for chosen in protocols():
                for readout in READOUTS:
                    row = search(chosen.name, readout, seeds, args.budget)
                    results["search"]["protocols"].setdefault(chosen.name, {})[readout] = row
                    print(f"{chosen.name} {readout}: {np.mean(row['values']):.3f}", flush=True)
    atomic_write(stem.with_suffix(".json"), dumps(results, indent=1))
    atomic_write(stem.with_suffix(".md"), markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
