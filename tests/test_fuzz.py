"""Hypothesis fuzzing of every parser: architecture strings, CSV tables, native archives, configs.

Each parser either accepts its input (and what it returns is consistent) or refuses it with its
documented error type and a one-line message; nothing else may escape."""
from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightning_nas.benchmarks.archive import ArchiveError, Benchmark
from lightning_nas.benchmarks.converters.tables import read_table
from lightning_nas.cli import main
from lightning_nas.spaces import InvalidArchitectureError, get_space

ROOT = Path(__file__).resolve().parents[1]
SPACES = ["nb201", "tnb101_micro", "nb101", "darts"]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
SOME_FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
#: characters the string forms are made of, so that mutations make near misses
SYNTAX = list("|~+_-:,()[]'\"=0123456789 \n\x00") + ["Genotype", "normal", "none", "nb101", "conv3x3-bn-relu"]


def one_line(message: str) -> bool:
    return bool(message.strip()) and "\n" not in message


@st.composite
def mutated(draw, text: str, alphabet: list[str]) -> str:
    """`text` after 1-4 random edits (delete, insert, replace, swap, truncate)."""
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, max(len(text) - 1, 0)))
        piece = draw(st.sampled_from(alphabet) | st.characters())
        kind = draw(st.sampled_from(["delete", "insert", "replace", "swap", "truncate"]))
        if kind == "delete":
            text = text[:i] + text[i + 1:]
        elif kind == "insert":
            text = text[:i] + piece + text[i:]
        elif kind == "replace":
            text = text[:i] + piece + text[i + 1:]
        elif kind == "swap" and i + 1 < len(text):
            text = text[:i] + text[i + 1] + text[i] + text[i + 2:]
        elif kind == "truncate":
            text = text[:i]
    return text


@st.composite
def near_miss_strings(draw, name: str) -> str:
    space = get_space(name)
    valid = space.to_string(space.sample(np.random.default_rng(draw(st.integers(0, 2**32 - 1)))))
    return draw(mutated(valid, sorted(set(valid)) + SYNTAX))


def check_architecture_string(name: str, text: str) -> None:
    space = get_space(name)
    try:
        a = space.from_string(text)
    except InvalidArchitectureError as e:
        assert one_line(str(e)), str(e)
        return
    assert space.is_valid(a)
    assert space.from_string(space.to_string(a)) == a


# ------------------------------------------------------------------------------------------
# architecture strings
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SPACES)
@FUZZ
@given(data=st.data())
def test_architecture_parsers_on_near_misses(name, data):
    check_architecture_string(name, data.draw(near_miss_strings(name)))


@pytest.mark.parametrize("name", SPACES)
@FUZZ
@given(text=st.text(max_size=300) | st.lists(st.sampled_from(SYNTAX), max_size=60).map("".join))
def test_architecture_parsers_on_random_text(name, text):
    check_architecture_string(name, text)


# ------------------------------------------------------------------------------------------
# CSV tables and native archives: real files, damaged
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_files(shared, tmp_path_factory) -> dict[str, Path]:
    """The first rows of each shared table (plain and gzip), and a native archive of one."""
    out = tmp_path_factory.mktemp("real")
    files = {}
    for stem in ("nb201_200ep", "tnb101_micro", "nb101_graphs_500", "nb101_hashed_30k"):
        with gzip.open(shared / f"{stem}.csv.gz", "rt", newline="") as f:
            head = "".join(f.readline() for _ in range(41))
        files[f"{stem}.csv"] = out / f"{stem}.csv"
        files[f"{stem}.csv"].write_text(head)
    files["nb201_200ep.csv.gz"] = out / "nb201_200ep.csv.gz"
    files["nb201_200ep.csv.gz"].write_bytes(gzip.compress(files["nb201_200ep.csv"].read_bytes()))
    files["nb201.npz"] = read_table(files["nb201_200ep.csv"]).save(out / "nb201.npz")
    return files


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """Random bytes flipped, inserted or deleted, or the file cut short."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if kind == "flip":
            data[i] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[i:i + draw(st.integers(1, 8))]
        else:
            del data[i:]
        if not data:
            break
    return bytes(data)


def read_or_refuse(path: Path, space: str | None = None) -> Benchmark | None:
    try:
        bench = Benchmark.load(path) if path.suffix == ".npz" else read_table(path, space)
    except ArchiveError as e:  # ConversionError is one
        assert one_line(str(e)), str(e)
        return None
    assert all(len(values) == len(bench.keys) for values in bench.metrics.values())
    return bench


TABLES = ["nb201_200ep.csv", "nb201_200ep.csv.gz", "tnb101_micro.csv", "nb101_graphs_500.csv", "nb101_hashed_30k.csv"]


@pytest.mark.parametrize("name", TABLES)
@FUZZ
@given(data=st.data())
def test_table_reader_on_damaged_real_tables(real_files, name, data):
    original = real_files[name].read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data.draw(damaged(original)))
        bench = read_or_refuse(path)
    if bench is not None and bench.space_name in ("nb201", "tnb101_micro"):
        space = get_space(bench.space_name)
        assert all(space.to_string(space.from_string(k)) == k for k in bench.keys.tolist())


@FUZZ
@given(content=st.binary(max_size=2000) | st.text(max_size=500).map(str.encode))
def test_table_reader_on_random_bytes(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.csv"
        path.write_bytes(content)
        read_or_refuse(path)


@FUZZ
@given(data=st.data())
def test_archive_loader_on_damaged_archives(real_files, data):
    original = Benchmark.load(real_files["nb201.npz"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nb201.npz"
        path.write_bytes(data.draw(damaged(real_files["nb201.npz"].read_bytes())))
        bench = read_or_refuse(path)
    if bench is not None:  # only bytes the data does not depend on were hit (e.g. a zip timestamp)
        assert bench.checksum() == original.checksum()


@FUZZ
@given(content=st.binary(max_size=3000))
def test_archive_loader_on_random_bytes(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.npz"
        path.write_bytes(content)
        assert read_or_refuse(path) is None


# ------------------------------------------------------------------------------------------
# configs through the CLI
# ------------------------------------------------------------------------------------------
@pytest.fixture
def cli_at_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")  # restored after the test: configs may set another seed


def run_search_config(config: object, capsys) -> None:
    """A search with this YAML content: exit 0, or exit 2 with a one-line `lightning-nas: error:`.
    Anything else is a bug in lightning-nas (the CLI exits 1 with its traceback), reported as such."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        text = yaml.safe_dump(config) if not isinstance(config, str) else config
        path.write_text(text)
        code = main(["search", "--config", str(path), "--budget", "3", "--run_dir", f"{tmp}/run", "--progress", "false"])
    err = capsys.readouterr().err.strip()
    assert code in (0, 2), f"a bug in lightning-nas (exit {code}) on this config:\n{text}\n{err}"
    if code == 2:
        lines = err.splitlines()
        assert lines[-1].startswith("lightning-nas: error: ") and "Traceback" not in err, err


def real_config(real_files) -> dict:
    """Regularized evolution on NB201 CIFAR-10 (its method and protocol files) as one config."""
    config = yaml.safe_load((ROOT / "configs" / "methods" / "re.yaml").read_text())
    protocol = yaml.safe_load((ROOT / "configs" / "protocols" / "nb201-cifar10.yaml").read_text())
    config["data"]["init_args"].update(protocol["data"]["init_args"], benchmark=str(real_files["nb201_200ep.csv"]))
    config["report"] = protocol["report"]
    return config


def paths_of(tree: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for key, value in tree.items():
        out.append(prefix + (key,))
        if isinstance(value, dict):
            out += paths_of(value, prefix + (key,))
    return out


YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=6,
)


@SOME_FUZZ
@given(data=st.data())
def test_mutated_real_config(real_files, cli_at_root, capsys, data):
    config = real_config(real_files)
    path = data.draw(st.sampled_from(paths_of(config)))
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    kind = data.draw(st.sampled_from(["delete", "replace", "add"]))
    if kind == "delete":
        del parent[path[-1]]
    elif kind == "replace":
        parent[path[-1]] = data.draw(YAML_VALUES)
    else:
        parent[data.draw(st.text(min_size=1, max_size=12))] = data.draw(YAML_VALUES)
    run_search_config(config, capsys)


@SOME_FUZZ
@given(config=st.dictionaries(st.sampled_from(["data", "strategy", "model", "budget", "report", "seed_everything",
                                               "trainer", "oracle", "ask_batch", "config"]) | st.text(max_size=10),
                              YAML_VALUES, max_size=4)
       | st.text(max_size=200))
def test_random_yaml_config(cli_at_root, capsys, config):
    run_search_config(config, capsys)
