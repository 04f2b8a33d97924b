"""Every shipped config parses: each search the report composes (a method, its file for the protocol's
family, the protocol), each DARTS live search (a method, the DARTS task, the method's DARTS part), each
fit, the quick start and the SLURM example (the live searches of configs/live: tests/test_fits.py); and
no file is left unused."""
from pathlib import Path

import pytest

from benchmarks.report.fits import checkpoint_producers, needed_checkpoints
from benchmarks.report.protocols import metadata, methods, protocols
from lightning_nas.bench import config_arguments, resolved_config

ROOT = Path(__file__).resolve().parents[1]
SEARCHES = [(p, m) for p in protocols() for m in methods()]
MO_SEARCHES = [(p, m) for p in protocols(multi_objective=True) for m in methods(multi_objective=True)]
FITS = sorted((ROOT / "configs" / "fits").rglob("*.yaml"))
PRODUCERS = checkpoint_producers()
DARTS = ROOT / "configs" / "darts"
DARTS_SEARCHES = {m.config: [ROOT / "configs" / "methods" / f"{m.config}.yaml", DARTS / "task.yaml",
                             DARTS / f"{m.config}.yaml"] for m in methods()}
SINGLE_SEARCHES = [ROOT / "configs" / "quickstart.yaml", ROOT / "configs" / "slurm" / "live_search.yaml"]
SWEEP_SETTINGS = ROOT / "configs" / "slurm" / "sweep.yaml"  # submitit's parameters: tests/test_executors.py
LIVE = sorted((ROOT / "configs" / "live").glob("*.yaml"))  # parsed by tests/test_fits.py


@pytest.mark.parametrize("protocol, method", SEARCHES, ids=[f"{p.name}-{m.name}" for p, m in SEARCHES])
def test_every_search_of_the_report_parses_on_its_protocol(protocol, method):
    config = resolved_config(["search", *config_arguments(protocol.configs(method))])
    data = config["data"]["init_args"]
    assert (data["target"], config["report"]) == (protocol.target, list(protocol.report))
    assert [Path(table).name for table in data["benchmark"]] == list(protocol.tables)
    assert config["strategy"]["class_path"].startswith("lightning_nas.search.")
    for ckpt in needed_checkpoints(config):  # CR-LSO's per-seed fits derive from the config that writes it
        assert ckpt in PRODUCERS, (protocol.name, method.name, ckpt)


@pytest.mark.parametrize("protocol, method", MO_SEARCHES, ids=[f"{p.name}-{m.name}" for p, m in MO_SEARCHES])
def test_every_multi_objective_search_parses_with_its_objectives(protocol, method):
    config = resolved_config(["search", *config_arguments(protocol.configs(method))])
    assert len(config["objectives"]) == 2 and config["costs"]["store"]
    assert config["data"]["init_args"]["target"] == protocol.target == config["objectives"][0]["name"]


@pytest.mark.parametrize("method", DARTS_SEARCHES)
def test_every_method_has_a_darts_live_search_that_parses(method):
    config = resolved_config(["search", *config_arguments(DARTS_SEARCHES[method])])
    assert config["oracle"]["init_args"]["space"] == "darts"
    assert config["oracle"]["class_path"] == "lightning_nas.proxies.live.LiveTrainingOracle"
    assert config["strategy"]["class_path"].startswith("lightning_nas.search.")
    assert (config["model"] or {}).get("init_args", {}).get("space", "darts") == "darts"
    assert config["run_dir"] == f"checkpoints/darts/{method}"
    for ckpt in needed_checkpoints(config):
        assert ckpt in PRODUCERS and PRODUCERS[ckpt].parent.name == "darts", (method, ckpt)


@pytest.mark.parametrize("path", FITS, ids=[str(p.relative_to(ROOT / "configs" / "fits")) for p in FITS])
def test_every_fit_config_parses(path):
    config = resolved_config(["fit", "--config", str(path)])
    assert config["model"]["class_path"].startswith("lightning_nas.predictors.")
    # the proxy-labelled pairs of Delta-NAS live beside the proxies that label them
    assert config["data"]["class_path"].startswith(("lightning_nas.data.", "lightning_nas.proxies.difference."))


@pytest.mark.parametrize("path", SINGLE_SEARCHES, ids=lambda p: p.name)
def test_the_quick_start_and_the_slurm_example_parse(path):
    assert resolved_config(["search", "--config", str(path)])["oracle"]["class_path"]


def test_every_config_file_is_used_and_every_name_exists():
    used = ({c for p, m in SEARCHES + MO_SEARCHES for c in p.configs(m)} | set(FITS) | set(SINGLE_SEARCHES)
            | {SWEEP_SETTINGS} | set(LIVE))
    used |= {c for configs in DARTS_SEARCHES.values() for c in configs}
    assert set((ROOT / "configs").rglob("*.yaml")) == used
    names = {p.name for p in protocols()}
    assert set(metadata()["order"]) == names and set(metadata()["partial"]) <= names
    assert all(set(why) <= {m.name for m in methods()} for why in metadata()["skipped"].values())

