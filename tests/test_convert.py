"""Converters: the shared CSV tables and small files in each official format, written here."""
from __future__ import annotations

import base64
import bz2
import csv
import gzip
import hashlib
import json
import pickle
import struct

import numpy as np
import pytest
import torch

from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.benchmarks.convert import convert_main
from lightning_nas.benchmarks.converters.common import ConversionError, file_stem
from lightning_nas.benchmarks.converters.formats import convert, detect_format
from lightning_nas.benchmarks.converters.nb101 import parse_model_metrics
from lightning_nas.benchmarks.converters.tables import read_table
from lightning_nas.benchmarks.converters.tfrecord import crc32c, crc32c_many, write_tfrecord
from lightning_nas.spaces import get_space

NB201_ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
]


def _nb101_space():
    try:
        import lightning_nas.spaces.nb101  # noqa: F401  (registers "nb101")
    except ImportError:
        return None
    return get_space("nb101")


def _csv_rows(path):
    with gzip.open(path, "rt", newline="") as f:
        return list(csv.reader(f))


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


# ------------------------------------------------------------------------------------------
# shared tables
# ------------------------------------------------------------------------------------------
def test_reads_shared_nb201_table_like_the_csv_module(shared):
    path = shared / "nb201_200ep.csv.gz"
    bench = read_table(path)
    rows = _csv_rows(path)
    header, body = rows[0], rows[1:]
    assert bench.space_name == "nb201" and len(bench) == 15_625
    assert sorted(bench.metrics) == sorted(header[1:])
    assert bench.keys.dtype.kind == "U" and bench._index is None  # the index is built lazily
    for row in (body[0], body[7777], body[-1]):
        for name, text in zip(header[1:], row[1:]):
            assert bench.query(row[0], name) == pytest.approx(float(text), rel=1e-6)


def test_infers_each_space_from_its_keys(shared):
    tnb = read_table(shared / "tnb101_micro.csv.gz")
    nb101 = read_table(shared / "nb101_hashed_30k.csv.gz")
    assert (tnb.space_name, len(tnb)) == ("tnb101_micro", 4096)
    assert (nb101.space_name, len(nb101)) == ("nb101", 30_001)
    assert "valid_acc_108ep" in nb101.metrics and "hash" not in nb101.metrics
    assert nb101.column("valid_acc_108ep").dtype == np.float32
    assert all(len(k) == 32 for k in nb101.keys[:100].tolist())


def test_merging_shared_nb201_tables_suffixes_later_columns(shared):
    paths = [shared / "nb201_200ep.csv.gz", shared / "nb201_12ep.csv.gz"]
    merged = Benchmark.load(paths)
    assert len(merged) == 15_625
    assert "cifar100_test_acc" in merged.metrics and "cifar100_valid_acc@nb201_12ep" in merged.metrics
    assert "cifar100_valid_acc" not in merged.metrics
    twelve = read_table(paths[1])
    arch = NB201_ARCHS[1]
    assert merged.query(arch, "cifar100_valid_acc@nb201_12ep") == twelve.query(arch, "cifar100_valid_acc")
    assert merged.query(arch, "cifar100_test_acc") != merged.query(arch, "cifar100_test_acc@nb201_12ep")


def test_merge_aligns_rows_by_key_not_by_position(tmp_path):
    first = _write_csv(tmp_path / "a.csv", [["arch", "acc"], [NB201_ARCHS[0], "1"], [NB201_ARCHS[1], "2"]])
    second = _write_csv(tmp_path / "b.csv.gz.csv", [["arch", "acc"], [NB201_ARCHS[2], "30"], [NB201_ARCHS[0], "10"]])
    merged = read_table([first, second])
    stem = file_stem(second)
    assert merged.keys.tolist() == [NB201_ARCHS[0], NB201_ARCHS[1], NB201_ARCHS[2]]
    assert merged.column(f"acc@{stem}")[[0, 2]].tolist() == [10.0, 30.0]
    assert np.isnan(merged.query(NB201_ARCHS[1], f"acc@{stem}"))
    assert np.isnan(merged.query(NB201_ARCHS[2], "acc"))


def test_a_list_may_mix_native_archives_and_tables(tmp_path, shared):
    native = read_table(shared / "nb201_200ep.csv.gz").save(tmp_path / "nb201_200ep.npz")
    merged = Benchmark.load([native, shared / "nb201_12ep.csv.gz"])
    from_tables = Benchmark.load([shared / "nb201_200ep.csv.gz", shared / "nb201_12ep.csv.gz"])
    assert merged.checksum() == from_tables.checksum()


def test_file_stem_strips_known_suffixes():
    assert file_stem("/x/nb201_12ep.csv.gz") == "nb201_12ep"
    assert file_stem("nb201_12ep.csv") == "nb201_12ep"
    assert file_stem("run.npz") == "run"


def test_empty_cells_are_nan_and_text_columns_are_skipped(tmp_path):
    path = _write_csv(tmp_path / "t.csv", [["arch", "note", "acc"], [NB201_ARCHS[0], "hi", ""], [NB201_ARCHS[1], "x", "3.5"]])
    bench = read_table(path)
    assert sorted(bench.metrics) == ["acc"]
    assert np.isnan(bench.query(NB201_ARCHS[0], "acc")) and bench.query(NB201_ARCHS[1], "acc") == 3.5


@pytest.mark.parametrize(
    "rows, message",
    [
        ([["arch", "acc"], [NB201_ARCHS[0], "1"], ["|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "2"]],
         r"t\.csv line 3: malformed nb201 architecture.*unknown op 'conv'"),
        ([["arch", "acc"], [NB201_ARCHS[0], "1"], [NB201_ARCHS[1], "1.5x"]], r"line 3: column 'acc' has the non-numeric value '1.5x'"),
        ([["arch", "acc"], [NB201_ARCHS[0], "1"], [NB201_ARCHS[1]]], r"line 3: expected 2 fields"),
        ([["arch", "acc"], [NB201_ARCHS[0], "1"], [NB201_ARCHS[0], "2"]], r"appears twice \(lines 2 and 3\)"),
        ([["name", "acc"], [NB201_ARCHS[0], "1"]], r"no architecture column"),
        ([["arch", "acc"], ["resnet50", "1"]], r"line 2: cannot tell the search space"),
        ([["hash", "acc"], ["0" * 32, "1"], ["xyz", "2"]], r"line 3: 'xyz' is not an NB101 module hash"),
    ],
)
def test_malformed_tables_name_file_and_line(tmp_path, rows, message):
    with pytest.raises(ConversionError, match=message):
        read_table(_write_csv(tmp_path / "t.csv", rows))


def test_explicit_space_is_enforced(tmp_path):
    path = _write_csv(tmp_path / "t.csv", [["arch", "acc"], ["64-41414-0_00_000", "1"]])
    assert read_table(path).space_name == "tnb101_micro"
    with pytest.raises(ConversionError, match="line 2: malformed nb201 architecture"):
        read_table(path, space="nb201")


def test_truncated_gzip_table_is_refused(tmp_path, shared):
    data = (shared / "tnb101_micro.csv.gz").read_bytes()
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match="truncated"):
        read_table(path)


def test_nb101_graph_table_is_keyed_by_module_hash(shared):
    nb101 = _nb101_space()
    if nb101 is None:
        pytest.skip("the NB101 space (lightning_nas/spaces/nb101.py) has not landed yet")
    graphs = read_table(shared / "nb101_graphs_500.csv.gz")
    hashed = read_table(shared / "nb101_hashed_30k.csv.gz")
    # 500 unpruned specs, 292 distinct modules (55 of them prune to input->output alone)
    assert graphs.space_name == "nb101" and len(graphs) == 292 and "208 rows" in graphs.provenance
    assert sorted(graphs.metrics) == ["flops_m", "params_m", "valid_acc_108ep"]
    common = sorted(set(graphs.keys.tolist()) & set(hashed.keys.tolist()))
    assert len(common) >= 20, "few graphs hash to keys of the 30k table: the module hash is wrong"
    for key in common:  # one module, two sources; isomorphic specs differ slightly in channel split
        assert graphs.query(key, "params_m") * 1e6 == pytest.approx(hashed.query(key, "params"), rel=1e-2)
        assert graphs.query(key, "valid_acc_108ep") == pytest.approx(hashed.query(key, "valid_acc_108ep"), abs=1.5)


# ------------------------------------------------------------------------------------------
# NAS-Bench-201 .pth and NATS-Bench topology
# ------------------------------------------------------------------------------------------
def _run(dataset, seed, epochs, final: dict[str, float], per_epoch_time=2.0, flop=10.0, params=0.5):
    """A ResultsCount state dict: accuracy curves that rise to `final` at the last epoch."""
    def curve(value):
        return {e: value * (e + 1) / epochs for e in range(epochs)}

    evals = {name: curve(acc) for name, acc in final.items() if name != "train"}
    return {
        "name": dataset, "net_state_dict": None, "train_acc1es": curve(final["train"]), "train_acc5es": None,
        "train_losses": curve(1.0), "train_times": {e: per_epoch_time for e in range(epochs)},
        "arch_config": {"channel": 16, "num_cells": 5}, "params": params, "flop": flop, "seed": seed,
        "epochs": epochs, "latency": [0.01, 0.03], "eval_names": list(evals),
        "eval_acc1es": {f"{n}@{e}": v for n, c in evals.items() for e, v in c.items()},
        "eval_times": {f"{n}@{e}": 0.1 for n in evals for e in range(epochs)},
        "eval_losses": {f"{n}@{e}": 1.0 for n in evals for e in range(epochs)},
    }


def _arch_results(index, arch, epochs, base):
    """An ArchResults state dict on all four NB201 datasets; cifar10-valid has two seeds."""
    runs = {
        ("cifar10-valid", 777): _run("cifar10-valid", 777, epochs, {"train": base + 9, "x-valid": base, "ori-test": base + 1}),
        ("cifar10-valid", 888): _run("cifar10-valid", 888, epochs, {"train": base + 7, "x-valid": base + 2, "ori-test": base + 3}, per_epoch_time=4.0),
        ("cifar10", 777): _run("cifar10", 777, epochs, {"train": base + 9, "ori-test": base + 4}),
        ("cifar100", 777): _run("cifar100", 777, epochs, {"train": base, "x-valid": base - 20, "x-test": base - 21, "ori-test": base - 20.5}, params=0.6),
        ("ImageNet16-120", 777): _run("ImageNet16-120", 777, epochs, {"train": base, "x-valid": base - 40, "x-test": base - 41, "ori-test": base - 40.5}),
    }
    seeds = {}
    for dataset, seed in runs:
        seeds.setdefault(dataset, []).append(seed)
    return {"arch_index": index, "arch_str": arch, "all_results": runs, "dataset_seed": seeds, "clear_net_done": False}


def _nb201_dict(hp_names=("less", "full")):
    infos = {
        i: {hp_names[0]: _arch_results(i, a, 12, 60.0 + i), hp_names[1]: _arch_results(i, a, 200, 80.0 + i)}
        for i, a in enumerate(NB201_ARCHS)
    }
    return {"meta_archs": list(NB201_ARCHS), "arch2infos": infos, "evaluated_indexes": set(infos)}


def _check_nb201_values(bench):
    arch = NB201_ARCHS[1]  # base 81 (200 epochs), 61 (12 epochs)
    assert bench.space_name == "nb201" and len(bench) == 3
    assert bench.query(arch, "cifar10_valid_valid_acc") == pytest.approx((81 + 83) / 2)
    assert bench.query(arch, "cifar10_valid_acc") == pytest.approx((81 + 83) / 2)
    assert bench.query(arch, "cifar10_valid_test_acc") == pytest.approx((82 + 84) / 2)
    assert bench.query(arch, "cifar10_valid_train_acc") == pytest.approx((90 + 88) / 2)
    assert bench.query(arch, "cifar10_test_acc") == pytest.approx(85)
    assert bench.query(arch, "cifar100_valid_acc") == pytest.approx(61)
    assert bench.query(arch, "cifar100_test_acc") == pytest.approx(60)
    assert bench.query(arch, "imagenet16_test_acc") == pytest.approx(40)
    assert bench.query(arch, "cifar100_valid_acc@nb201_12ep") == pytest.approx(41)
    assert bench.query(arch, "cifar10_test_acc@nb201_12ep") == pytest.approx(65)
    assert bench.query(arch, "cifar10_valid_train_time_s") == pytest.approx((2.0 * 200 + 4.0 * 200) / 2)
    assert bench.query(arch, "cifar10_valid_train_time_s@nb201_12ep") == pytest.approx((2.0 * 12 + 4.0 * 12) / 2)
    assert bench.query(arch, "cifar100_params_m") == pytest.approx(0.6)
    assert bench.query(arch, "cifar10_latency_s") == pytest.approx(0.02)


def test_nb201_pth_converts_with_the_shared_tables_column_names(tmp_path, shared):
    source = tmp_path / "NAS-Bench-201-v1_1-tiny.pth"
    torch.save(_nb201_dict(), source)
    out = convert([source], tmp_path / "nb201.npz", trust_pickle=True)
    bench = Benchmark.load(out)
    _check_nb201_values(bench)
    tables = Benchmark.load([shared / "nb201_200ep.csv.gz", shared / "nb201_12ep.csv.gz"])
    assert set(tables.metrics) <= set(bench.metrics)


def test_nb201_v1_0_less_with_only_cifar10_valid_drops_empty_columns(tmp_path):
    data = _nb201_dict()
    for info in data["arch2infos"].values():
        less = info["less"]
        less["all_results"] = {k: v for k, v in less["all_results"].items() if k[0] == "cifar10-valid"}
        less["dataset_seed"] = {"cifar10-valid": less["dataset_seed"]["cifar10-valid"]}
    torch.save(data, tmp_path / "v1_0.pth")
    bench = Benchmark.load(convert([tmp_path / "v1_0.pth"], tmp_path / "o.npz", trust_pickle=True))
    assert "cifar10_valid_valid_acc@nb201_12ep" in bench.metrics
    assert "cifar100_valid_acc@nb201_12ep" not in bench.metrics


def test_pickle_inputs_need_explicit_trust(tmp_path):
    torch.save(_nb201_dict(), tmp_path / "x.pth")
    with pytest.raises(ConversionError, match="--trust-pickle.*"):
        convert([tmp_path / "x.pth"], tmp_path / "o.npz")
    assert not (tmp_path / "o.npz").exists()


def test_nats_topology_directory_and_single_file(tmp_path):
    data = _nb201_dict(hp_names=("12", "200"))
    folder = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    folder.mkdir()
    with bz2.open(folder / "meta.pickle.pbz2", "wb") as f:
        pickle.dump({"meta_archs": data["meta_archs"]}, f)
    for index, hp2results in data["arch2infos"].items():
        with bz2.open(folder / f"{index:06d}.pickle.pbz2", "wb") as f:
            pickle.dump(hp2results, f)
    single = tmp_path / "NATS-tss-v1_0-3ffb9-full.pickle.pbz2"
    with bz2.open(single, "wb") as f:
        pickle.dump(data, f)
    assert detect_format(folder) == detect_format(single) == "nats-tss"
    from_dir = Benchmark.load(convert([folder], tmp_path / "a.npz", trust_pickle=True))
    from_file = Benchmark.load(convert([single], tmp_path / "b.npz", trust_pickle=True))
    _check_nb201_values(from_dir)
    assert from_dir.checksum() == from_file.checksum()


def test_malformed_arch_in_official_file_is_reported(tmp_path):
    data = _nb201_dict()
    data["meta_archs"][2] = "|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    torch.save(data, tmp_path / "bad.pth")
    with pytest.raises(ConversionError, match="architecture 2 is malformed.*bogus"):
        convert([tmp_path / "bad.pth"], tmp_path / "o.npz", trust_pickle=True)


# ------------------------------------------------------------------------------------------
# NAS-Bench-101 tfrecord
# ------------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _double(field: int, value: float) -> bytes:
    return _varint(field << 3 | 1) + struct.pack("<d", value)


def _message(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _model_metrics(evaluations: list[tuple[float, float, float, float, float]], params: int) -> bytes:
    """nasbench ModelMetrics in protobuf wire format: EvaluationData = (epoch, time, train, valid, test)."""
    body = b"".join(
        _message(1, b"".join(_double(f, v) for f, v in enumerate(ev, start=1)) + _message(6, b"/ckpt/model-1"))
        for ev in evaluations
    )
    return body + _varint(2 << 3) + _varint(params) + _double(3, 1234.5)


GRAPHS = [  # (adjacency bits, ops) of two real NB101 cells (nb101_graphs_500 rows 1 and 2)
    ("0111101000001100000010000110000001100000000000000",
     "input,maxpool3x3,maxpool3x3,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,output"),
    ("0110010000111100000010000010000001100000000000000",
     "input,conv3x3-bn-relu,maxpool3x3,conv1x1-bn-relu,conv1x1-bn-relu,maxpool3x3,output"),
]


def _graph_hash(bits: str, ops: str) -> str:
    nb101 = _nb101_space()
    if nb101 is None:  # before the space lands the converter cannot check hashes: any md5 will do
        return hashlib.md5((bits + ops).encode()).hexdigest()
    n = int(len(bits) ** 0.5)
    matrix = np.array([int(c) for c in bits]).reshape(n, n)
    return nb101.key(nb101.from_matrix(matrix, ops.split(",")))


def _nb101_records():
    """Repeat r of graph g at 108 epochs: valid = 0.90 + 0.01 g + 0.001 r; graph 0 also at 36 epochs."""
    records = []
    for g, (bits, ops) in enumerate(GRAPHS):
        for epochs, repeats in ((108, 3), (36, 1 if g == 0 else 0)):
            for r in range(repeats):
                valid = 0.90 + 0.01 * g + 0.001 * r - (0.1 if epochs == 36 else 0)
                evaluations = [(0, 0, 0.1, 0.1, 0.1), (epochs / 2, 50.0, 0.5, 0.5, 0.5),
                               (epochs, 100.0 + r, 0.99, valid, valid - 0.005)]
                metrics = base64.b64encode(_model_metrics(evaluations, 1_000_000 + g)).decode()
                records.append(json.dumps([_graph_hash(bits, ops), epochs, bits, ops, metrics]).encode())
    return records


def test_crc32c_matches_the_standard_check_value_and_the_batch_version():
    assert crc32c(b"123456789") == 0xE3069283
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 256, size=int(n), dtype=np.uint8).tobytes() for n in rng.integers(0, 300, size=40)]
    assert crc32c_many(chunks).tolist() == [crc32c(c) for c in chunks]


def test_protobuf_reader_decodes_model_metrics():
    evaluations, params = parse_model_metrics(_model_metrics([(0, 0, 0.1, 0.2, 0.3), (108, 99.5, 1.0, 0.9, 0.8)], 300))
    assert params == 300
    assert evaluations[1] == {"current_epoch": 108, "training_time": 99.5, "train_accuracy": 1.0,
                              "validation_accuracy": 0.9, "test_accuracy": 0.8}


def test_nb101_tfrecord_converts_mean_over_repeats_in_percent(tmp_path):
    source = write_tfrecord(tmp_path / "nasbench_tiny.tfrecord", _nb101_records())
    assert detect_format(source) == "nb101-tfrecord"
    bench = Benchmark.load(convert([source], tmp_path / "nb101.npz"))
    h0, h1 = (_graph_hash(*g) for g in GRAPHS)
    assert bench.space_name == "nb101" and bench.keys.tolist() == [h0, h1]
    assert bench.query(h0, "valid_acc_108ep") == pytest.approx(90.1, rel=1e-5)
    assert bench.query(h1, "valid_acc_108ep") == pytest.approx(91.1, rel=1e-5)
    assert bench.query(h1, "test_acc_108ep") == pytest.approx(90.6, rel=1e-5)
    assert bench.query(h0, "train_time_108ep_s") == pytest.approx(101.0)
    assert bench.query(h0, "valid_acc_36ep") == pytest.approx(80.0, rel=1e-5)
    assert np.isnan(bench.query(h1, "valid_acc_36ep"))
    assert bench.query(h1, "params") == 1_000_001


def test_tfrecord_corruption_is_detected(tmp_path):
    data = bytearray(write_tfrecord(tmp_path / "ok.tfrecord", _nb101_records()).read_bytes())
    flipped = tmp_path / "flipped.tfrecord"
    data[200] ^= 0x01
    flipped.write_bytes(bytes(data))
    with pytest.raises(ConversionError, match="checksum mismatch in the data of record 0"):
        convert([flipped], tmp_path / "o.npz")
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(bytes(data[:-10]))
    with pytest.raises(ConversionError, match="truncated"):
        convert([cut], tmp_path / "o.npz")
    assert not (tmp_path / "o.npz").exists()


def test_tfrecord_with_a_non_nasbench_payload_is_refused(tmp_path):
    path = write_tfrecord(tmp_path / "other.tfrecord", [b'{"not": "a list"}'])
    with pytest.raises(ConversionError, match="record 0 is not a NAS-Bench-101 record"):
        convert([path], tmp_path / "o.npz")


# ------------------------------------------------------------------------------------------
# NASLib pickles
# ------------------------------------------------------------------------------------------
def _naslib_nb201(dataset: str, offset: float) -> dict:
    return {
        arch: {dataset: {
            "train_acc1es": [10.0] * 199 + [99.0 - i],
            "eval_acc1es": [10.0] * 199 + [offset + i],
            "train_losses": [1.0] * 200, "eval_losses": [1.0] * 200,
            "cost_info": {"flops": 80.0 + i, "params": 0.5, "latency": 0.02, "train_time": 1500.0 + i},
        }}
        for i, arch in enumerate(NB201_ARCHS)
    }


def test_naslib_nb201_pickles_merge_per_dataset(tmp_path):
    c10, c100 = tmp_path / "nb201_cifar10_full_training.pickle", tmp_path / "nb201_cifar100_full_training.pickle"
    c10.write_bytes(pickle.dumps(_naslib_nb201("cifar10-valid", 90.0)))
    c100.write_bytes(pickle.dumps(_naslib_nb201("cifar100", 70.0)))
    bench = Benchmark.load(convert([c10, c100], tmp_path / "naslib.npz", trust_pickle=True))
    arch = NB201_ARCHS[2]
    assert bench.query(arch, "cifar10_valid_valid_acc") == 92.0
    assert bench.query(arch, "cifar100_valid_acc") == 72.0
    assert bench.query(arch, "cifar100_train_acc") == 97.0
    assert bench.query(arch, "cifar10_valid_train_time_s") == 1502.0
    assert bench.query(arch, "cifar100_flops_m") == 82.0


def test_naslib_nb101_pickle(tmp_path):
    data = {}
    for g, (bits, ops) in enumerate(GRAPHS):
        n = int(len(bits) ** 0.5)
        fixed = {"module_adjacency": np.array([int(c) for c in bits], dtype=np.int8).reshape(n, n),
                 "module_operations": ops.split(","), "trainable_parameters": 2_000_000 + g}
        repeats = [{"final_training_time": 1000.0 + r, "final_train_accuracy": 1.0,
                    "final_validation_accuracy": 0.93 + 0.01 * r, "final_test_accuracy": 0.92,
                    "halfway_validation_accuracy": 0.5} for r in range(3)]
        data[_graph_hash(bits, ops)] = (fixed, {108: repeats})
    source = tmp_path / "nasbench_only108.pkl"
    source.write_bytes(pickle.dumps(data))
    bench = Benchmark.load(convert([source], tmp_path / "o.npz", trust_pickle=True))
    key = _graph_hash(*GRAPHS[1])
    assert bench.query(key, "valid_acc_108ep") == pytest.approx(94.0, rel=1e-5)
    assert bench.query(key, "train_time_108ep_s") == pytest.approx(1001.0)
    assert bench.query(key, "params") == 2_000_001


# ------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------
def test_cli_converts_shared_tables_with_one_line(tmp_path, shared, capsys):
    out = tmp_path / "nb201.npz"
    code = convert_main([str(shared / "nb201_200ep.csv.gz"), str(shared / "nb201_12ep.csv.gz"), "-o", str(out)])
    printed = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(printed) == 1 and "15625 nb201 architectures" in printed[0]
    bench = Benchmark.load(out)
    assert bench.best("cifar10_test_acc")[1] == pytest.approx(94.3733, abs=1e-3)
    assert "cifar100_valid_acc@nb201_12ep" in bench.metrics


def _cut_tfrecord(tmp_path):
    data = write_tfrecord(tmp_path / "full.tfrecord", _nb101_records()).read_bytes()
    (tmp_path / "cut.tfrecord").write_bytes(data[: len(data) - 7])
    return tmp_path / "cut.tfrecord"


def _flipped_tfrecord(tmp_path):
    data = bytearray(write_tfrecord(tmp_path / "full.tfrecord", _nb101_records()).read_bytes())
    data[-30] ^= 0x10
    (tmp_path / "flip.tfrecord").write_bytes(bytes(data))
    return tmp_path / "flip.tfrecord"


def _bad_arch_table(tmp_path):
    return _write_csv(tmp_path / "bad.csv", [["arch", "acc"], [NB201_ARCHS[0], "1"], ["|nor_conv_3x3~1|+|", "2"]])


def _unknown(tmp_path):
    (tmp_path / "mystery.bin").write_bytes(b"\x00\x01garbage" * 10)
    return tmp_path / "mystery.bin"


@pytest.mark.parametrize(
    "make_input, extra, message",
    [
        (lambda p: p / "missing.csv", [], "does not exist"),
        (_bad_arch_table, [], "bad.csv line 3: malformed nb201 architecture"),
        (_cut_tfrecord, [], "truncated"),
        (_flipped_tfrecord, [], "checksum mismatch"),
        (_unknown, [], "cannot tell the format"),
        (_bad_arch_table, ["--format", "parquet"], "unknown format 'parquet'"),
    ],
)
def test_cli_bad_input_gives_one_line_exit_2_and_no_output(tmp_path, capsys, make_input, extra, message):
    out = tmp_path / "out.npz"
    out.write_bytes(b"previous archive")  # an existing output must survive a failed conversion
    code = convert_main([str(make_input(tmp_path)), "-o", str(out), "--force", *extra])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0] and captured.out == ""
    assert out.read_bytes() == b"previous archive"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.npz")]  # no temp file left


def test_cli_refuses_pickles_without_the_flag(tmp_path, capsys):
    torch.save(_nb201_dict(), tmp_path / "x.pth")
    assert convert_main([str(tmp_path / "x.pth"), "-o", str(tmp_path / "o.npz")]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    assert convert_main([str(tmp_path / "x.pth"), "-o", str(tmp_path / "o.npz"), "--trust-pickle"]) == 0
    _check_nb201_values(Benchmark.load(tmp_path / "o.npz"))
