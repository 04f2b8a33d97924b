"""One-off: rewrite the recipes of the committed records (benchmarks/records/full/) from the form of
the single-file configs (config text + arguments; tau: a hash of config texts) to the resolved configs
of the composed files, after proving for every run that both resolve to the same search.

    python benchmarks/migrate_recipes.py --old-configs <folder holding the old configs/> [--write]

Search runs: each seed's recipe holds the text of the config it was made with and its arguments; that
text, resolved with those arguments, must equal what the composed files resolve to with the arguments
the report now passes (both through `lightning_nas.search.bench.recipe`). Tau fits: the recorded hash
must be the hash of the old config texts (so the old files are the ones they were made from), and the
old files must resolve to the same fit configs as the new ones.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report.common import DEFAULT_SHARED, ROOT, at_root  # noqa: E402
from benchmarks.report.fits import checkpoint_producers, needed_checkpoints, seed_fit_arguments  # noqa: E402
from benchmarks.report.protocols import methods, protocols  # noqa: E402
from benchmarks.report.records import save_record  # noqa: E402
from benchmarks.report.tau import PREDICTORS, tau_recipe  # noqa: E402
from lightning_nas.search.bench import RECIPE_FILE, portable, recipe, resolved_config, seed_arguments  # noqa: E402

RECORDS = Path("benchmarks/records/full")
RUNS = Path("benchmarks/runs/full")  # the report's default, as the per-seed fits' paths name it


def migrate_searches(write: bool) -> tuple[int, int]:
    checked = differ = 0
    for protocol in protocols():
        for method in methods():
            archive = RECORDS / protocol.name / f"{method.name}.tar.gz"
            if not archive.is_file():
                continue
            configs = [c.relative_to(ROOT) for c in protocol.configs(method)]
            run_dir = RUNS / protocol.name / method.name
            extra = protocol.overrides(DEFAULT_SHARED) + (seed_fit_arguments(configs, run_dir) if method.per_seed_fit else [])
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / "run"
                with tarfile.open(archive, "r:gz") as tar:
                    tar.extractall(folder, filter="data")
                for written in sorted(folder.glob(f"seed_*/{RECIPE_FILE}")):
                    seed = int(written.parent.name.removeprefix("seed_"))
                    old = json.loads(written.read_text())
                    text = Path(tmp) / "old.yaml"
                    text.write_text(old["config"])
                    before = recipe([text], seed, old["arguments"])
                    after = recipe(configs, seed, seed_arguments(extra, seed))
                    checked += 1
                    if before != after:
                        differ += 1
                        print(f"DIFFERENT: {archive} {written.parent.name}")
                    written.write_text(after)
                print(f"{archive}: {len(list(folder.glob('seed_*')))} seeds checked")
                if write:
                    save_record(folder, archive)
    return checked, differ


def old_tau_recipe(old_configs: Path, name: str, length: int) -> tuple[str, list[dict]]:
    """The tau recipe as the single-file configs made it (hash of the texts), and those configs resolved."""
    files = {"GIN": ["nb201/gin_fit.yaml"], "DCL-ENAS": ["nb201/dcl_enas_finetune.yaml", "nb201/dcl_enas_pretrain.yaml"],
             "CTNAS": ["nb201/ctnas_fit.yaml"], "CR-LSO": ["nb201/crlso_fit.yaml"], "Delta-NAS": []}[name]
    texts = [(old_configs / f).read_text() for f in files]
    digest = hashlib.sha256(json.dumps({"length": length, "configs": texts}).encode()).hexdigest()
    return digest, [portable(resolved_config(["fit", "--config", str(old_configs / f)])) for f in files]


def new_resolved(name: str, producers: dict[str, Path]) -> list[dict]:
    pending, out = [PREDICTORS[name].config] if PREDICTORS[name].config else [], []
    while pending:
        out.append(portable(resolved_config(["fit", "--config", str(pending.pop())])))
        pending += [producers[c] for c in needed_checkpoints(out[-1]) if c in producers]
    return out


def migrate_tau(old_configs: Path, write: bool) -> tuple[int, int]:
    archive, producers = RECORDS / "tau.tar.gz", checkpoint_producers()
    checked = differ = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "tau"
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(folder, filter="data")
        for path in sorted(folder.glob("*/*.json")):
            result = json.loads(path.read_text())
            name, size = result["predictor"], result["size"]
            length = PREDICTORS[name].epochs[size]
            old_hash, old_resolved = old_tau_recipe(old_configs, name, length)
            checked += 1
            if old_hash != result["recipe"] or old_resolved != new_resolved(name, producers):
                differ += 1
                print(f"DIFFERENT: {path.relative_to(folder)} (made from the old texts: {old_hash == result['recipe']})")
            result["recipe"] = tau_recipe(name, length, producers)
            path.write_text(json.dumps(result, indent=1))
        print(f"{archive}: {checked} fits checked")
        if write:
            save_record(folder, archive, lambda n: n.endswith(".json"))
    return checked, differ


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-configs", type=Path, required=True, help="the configs/ folder of the single-file layout")
    parser.add_argument("--write", action="store_true", help="rewrite the records (only when every run checks)")
    args = parser.parse_args()
    old_configs = args.old_configs.resolve()
    with at_root():
        runs, runs_differ = migrate_searches(write=False)
        fits, fits_differ = migrate_tau(old_configs, write=False)
        print(f"search runs: {runs} checked, {runs_differ} resolve differently; tau fits: {fits} checked, "
              f"{fits_differ} differ")
        if runs_differ or fits_differ:
            return 1
        if args.write:
            migrate_searches(write=True)
            migrate_tau(old_configs, write=True)
            print("records rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
