"""The native archive and the tabular oracle, on small archives and the real shared NB201 tables."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from lightning_nas.benchmarks.archive import ArchiveError, Benchmark, UnknownMetricError
from lightning_nas.benchmarks.oracle import BudgetExhausted, NotInBenchmark, TabularOracle
from lightning_nas.spaces import get_space


@pytest.fixture(scope="module")
def nb201_tables(shared) -> Benchmark:
    return Benchmark.load([shared / "nb201_200ep.csv.gz", shared / "nb201_12ep.csv.gz"])


def _small(n: int = 50) -> Benchmark:
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    keys = sorted({space.to_string(space.sample(rng)) for _ in range(n)})
    metrics = {
        "acc": rng.uniform(10, 90, len(keys)).astype(np.float32),
        "time_s": np.where(rng.random(len(keys)) < 0.2, np.nan, rng.uniform(1, 9, len(keys))).astype(np.float32),
    }
    return Benchmark("nb201", np.array(keys), metrics, provenance="unit test", name="small")


def test_round_trip_keeps_keys_metrics_and_meta(tmp_path):
    bench = _small()
    loaded = Benchmark.load(bench.save(tmp_path / "small.npz"))
    assert loaded.keys.tolist() == bench.keys.tolist() and loaded.keys.dtype.kind == "U"
    assert sorted(loaded.metrics) == ["acc", "time_s"]
    for name, values in bench.metrics.items():
        np.testing.assert_array_equal(loaded.metrics[name], values)  # NaN in the same places too
    assert (loaded.space_name, loaded.provenance, loaded.name) == ("nb201", "unit test", "small")
    assert loaded.checksum() == bench.checksum()
    assert not list(tmp_path.glob(".small.npz*"))  # the temporary file of the atomic write is gone


def test_keys_given_as_objects_are_stored_as_fixed_width_unicode(tmp_path):
    bench = _small(5)
    bench.keys = np.array(bench.keys.tolist(), dtype=object)
    loaded = Benchmark.load(bench.save(tmp_path / "o.npz"))
    assert loaded.keys.dtype.kind == "U" and loaded.keys.tolist() == bench.keys.tolist()


def test_truncated_archive_is_refused(tmp_path):
    path = _small().save(tmp_path / "a.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        Benchmark.load(path)


def test_flipped_byte_in_a_metric_is_caught(tmp_path):
    bench = _small()
    path = bench.save(tmp_path / "a.npz")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("metric/acc.npy")
    # the member's data start: local header (30 bytes + name + extra) then the .npy header
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    data_start = info.header_offset + 30 + name_len + extra_len
    data[data_start + info.file_size - 3] ^= 0x40  # inside the last float of the array
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="Bad CRC-32|checksum mismatch"):  # zip CRC or our SHA-256
        Benchmark.load(path)


def test_edited_metric_with_a_consistent_zip_fails_the_checksum(tmp_path):
    path = _small().save(tmp_path / "a.npz")
    with np.load(path) as z:
        arrays = {name: z[name] for name in z.files}
    arrays["metric/acc"] = arrays["metric/acc"].copy()
    arrays["metric/acc"][3] += 1.0  # someone "fixes" one value by hand
    np.savez(path, **arrays)
    with pytest.raises(ArchiveError, match="checksum mismatch"):
        Benchmark.load(path)


def test_missing_archive_says_how_to_make_one(tmp_path):
    with pytest.raises(ArchiveError, match="does not exist.*lightning-nas convert"):
        Benchmark.load(tmp_path / "nope.npz")


def test_unknown_metric_lists_the_available_ones():
    bench = _small()
    with pytest.raises(UnknownMetricError) as info:
        bench.column("accuracy")
    message = str(info.value)
    assert message.startswith("unknown metric 'accuracy' in the small archive")
    assert "available: acc, time_s" in message and not message.startswith('"')


def test_query_row_and_best():
    bench = _small()
    i = int(np.argmax(bench.metrics["acc"]))
    assert bench.best("acc") == (bench.keys[i], pytest.approx(float(bench.metrics["acc"][i])))
    arch = get_space("nb201").from_string(str(bench.keys[7]))
    assert bench.row(arch) == 7 and arch in bench
    assert bench.query(arch, "acc") == pytest.approx(float(bench.metrics["acc"][7]))
    assert [str(a) for a in bench.archs()] == bench.keys.tolist()


# ------------------------------------------------------------------------------------------
# oracle
# ------------------------------------------------------------------------------------------
def test_oracle_counts_unique_queries_and_repeats_are_free(nb201_tables):
    space = get_space("nb201")
    oracle = TabularOracle(nb201_tables, "cifar10_valid_valid_acc", report=["cifar10_test_acc"], budget=3)
    rng = np.random.default_rng(1)
    a, b = space.sample(rng), space.sample(rng)
    first = oracle.evaluate(a)
    assert first.score == pytest.approx(nb201_tables.query(a, "cifar10_valid_valid_acc"))
    assert first.report == {"cifar10_test_acc": pytest.approx(nb201_tables.query(a, "cifar10_test_acc"))}
    assert oracle.evaluate(a) == first and oracle.used == 1
    oracle.evaluate(b)
    assert (oracle.used, oracle.remaining) == (2, 1)


def test_oracle_refuses_past_budget_but_still_answers_repeats(nb201_tables):
    space = get_space("nb201")
    oracle = TabularOracle(nb201_tables, "cifar100_valid_acc@nb201_12ep", report=["cifar100_test_acc"], budget=2)
    archs = list(space.enumerate())[:3]
    oracle.evaluate(archs[0])
    oracle.evaluate(archs[1])
    with pytest.raises(BudgetExhausted, match="budget of 2 queries is spent"):
        oracle.evaluate(archs[2])
    assert oracle.evaluate(archs[0]).score == pytest.approx(nb201_tables.query(archs[0], "cifar100_valid_acc@nb201_12ep"))
    assert oracle.used == 2


@pytest.mark.parametrize("budget", [0, -5])
def test_oracle_rejects_a_non_positive_budget(nb201_tables, budget):
    with pytest.raises(ValueError, match="budget must be a positive number"):
        TabularOracle(nb201_tables, "cifar10_valid_valid_acc", budget=budget)


def test_oracle_checks_column_names_up_front(nb201_tables):
    with pytest.raises(UnknownMetricError, match="unknown metric 'cifar10_valid_acc'"):
        TabularOracle(nb201_tables, "cifar10_valid_acc", budget=5)  # 12-epoch name without its suffix


def test_oracle_on_an_architecture_outside_the_archive():
    bench = _small(5)
    space = get_space("nb201")
    outside = next(a for a in space.enumerate() if space.to_string(a) not in set(bench.keys.tolist()))
    oracle = TabularOracle(bench, "acc", budget=10)
    with pytest.raises(NotInBenchmark):
        oracle.evaluate(outside)


# ------------------------------------------------------------------------------------------
# the real shared tables
# ------------------------------------------------------------------------------------------
def test_shared_nb201_tables_have_every_cell_and_the_published_optima(nb201_tables):
    assert len(nb201_tables) == 15_625
    assert set(nb201_tables.keys.tolist()) == {get_space("nb201").to_string(a) for a in get_space("nb201").enumerate()}
    # README optima: 94.37, 73.51, 47.31 (rounded means over seeds of the 200-epoch runs)
    assert nb201_tables.best("cifar10_test_acc")[1] == pytest.approx(94.3733, abs=5e-4)
    assert nb201_tables.best("cifar100_test_acc")[1] == pytest.approx(73.5133, abs=5e-4)
    assert nb201_tables.best("imagenet16_test_acc")[1] == pytest.approx(47.3111, abs=5e-4)
    assert nb201_tables.best("cifar10_valid_valid_acc")[1] == pytest.approx(91.6067, abs=5e-4)
    for name, values in nb201_tables.metrics.items():
        assert not np.isnan(values).any(), name


def test_shared_tables_survive_a_native_round_trip(nb201_tables, tmp_path):
    loaded = Benchmark.load(nb201_tables.save(tmp_path / "nb201.npz"))
    assert loaded.checksum() == nb201_tables.checksum()
    with np.load(tmp_path / "nb201.npz") as z:
        meta = json.loads(str(z["meta"]))
    assert meta["rows"] == 15_625 and "cifar100_valid_acc@nb201_12ep" in meta["columns"]
