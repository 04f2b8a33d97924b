"""NAS-Bench-101: the official ``.tfrecord`` (no TensorFlow) and what NASLib's NB101 pickle shares with it.

Per epoch budget ``E`` in the file: ``train_acc_Eep``, ``valid_acc_Eep``, ``test_acc_Eep`` (percent,
mean over the 3 repeats, after the final evaluation) and ``train_time_Eep_s``; ``params`` = trainable
parameters. Keys are the official module hashes stored in the file.
"""
from __future__ import annotations

import base64
import json
import struct
from array import array
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.benchmarks.converters.common import (
    NB101_HASH,
    ConversionError,
    PathLike,
    file_stem,
    optional_nb101,
    square_matrix,
)
from lightning_nas.benchmarks.converters.tfrecord import iter_tfrecords


def _protobuf_fields(buf: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) pairs of a protobuf message; enough of the wire format for ModelMetrics."""
    pos, end = 0, len(buf)
    while pos < end:
        tag = buf[pos]
        tag, pos = (tag, pos + 1) if tag < 0x80 else _varint(buf, pos)  # one-byte tags are the rule
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<d", buf, pos)[0], pos + 8
        elif wire == 2:
            size = buf[pos]
            size, pos = (size, pos + 1) if size < 0x80 else _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = struct.unpack_from("<f", buf, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("protobuf message is truncated")
        yield field, value


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("protobuf varint is truncated")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


# nasbench model_metrics.proto: ModelMetrics{1: repeated EvaluationData, 2: trainable_parameters,
# 3: total_time}; EvaluationData{1: current_epoch, 2: training_time, 3: train_accuracy,
# 4: validation_accuracy, 5: test_accuracy, 6: checkpoint_path}
_EVALUATION_FIELDS = {1: "current_epoch", 2: "training_time", 3: "train_accuracy", 4: "validation_accuracy",
                      5: "test_accuracy"}


def parse_model_metrics(buf: bytes, final_only: bool = False) -> tuple[list[dict[str, float]], int | None]:
    """Decode a serialized nasbench ``ModelMetrics``: (evaluation_data dicts, trainable_parameters).

    ``final_only`` decodes only the last evaluation (the end of training), as the converter needs.
    """
    messages, params = [], None
    for field, value in _protobuf_fields(buf):
        if field == 1:
            messages.append(value)
        elif field == 2:
            params = value
    if final_only:
        messages = messages[-1:]
    evaluations = [{_EVALUATION_FIELDS[f]: v for f, v in _protobuf_fields(m) if f in _EVALUATION_FIELDS} for m in messages]
    return evaluations, params


class NB101Accumulator:
    """Mean over repeats per (module hash, epoch budget) of the final evaluation, in numpy at the end."""

    #: (column name template, EvaluationData field, scale: the file stores fractions, columns percent)
    FIELDS = (("train_acc_{}ep", "train_accuracy", 100.0), ("valid_acc_{}ep", "validation_accuracy", 100.0),
              ("test_acc_{}ep", "test_accuracy", 100.0), ("train_time_{}ep_s", "training_time", 1.0))

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.params: list[float] = []
        self.samples: list[tuple[str, Any, Any]] = []  # (hash, matrix, ops) of the first records
        # epochs -> [row indices, then one value array per field]; typed arrays: 8 bytes per value
        self.entries: dict[int, list[array]] = defaultdict(
            lambda: [array("q"), *(array("d") for _ in self.FIELDS)]
        )

    def add(self, module_hash: str, epochs: int, final: dict[str, float], params: float | None) -> None:
        row = self.rows.setdefault(module_hash, len(self.rows))
        if row == len(self.params):
            self.params.append(np.nan if params is None else float(params))
        entry = self.entries[int(epochs)]
        entry[0].append(row)
        for values, (_, field, scale) in zip(entry[1:], self.FIELDS):
            values.append(final.get(field, np.nan) * scale)

    def benchmark(self, provenance: str, name: str) -> Benchmark:
        n = len(self.rows)
        if not n:
            raise ConversionError(f"{name}: the file holds no architectures")
        metrics = {"params": np.asarray(self.params, dtype=np.float32)}
        for epochs, (rows, *columns) in sorted(self.entries.items()):
            rows = np.frombuffer(rows, dtype=np.int64)
            counts = np.bincount(rows, minlength=n)
            for values, (column, _, _) in zip(columns, self.FIELDS):
                sums = np.bincount(rows, weights=np.frombuffer(values, dtype=np.float64), minlength=n)
                with np.errstate(invalid="ignore", divide="ignore"):
                    mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
                metrics[column.format(epochs)] = mean.astype(np.float32)
        keys = np.array(list(self.rows), dtype=str)
        return Benchmark("nb101", keys, metrics, provenance=provenance, name=name)


def convert_nb101_tfrecord(path: PathLike) -> Benchmark:
    """Official ``nasbench_only108.tfrecord`` / ``nasbench_full.tfrecord``: each record is the JSON list
    ``[module_hash, epochs, adjacency bits, ops "a,b,c", base64 ModelMetrics]`` (nasbench api.py)."""
    path = Path(path)
    acc = NB101Accumulator()
    for i, payload in iter_tfrecords(path):
        try:
            module_hash, epochs, adjacency, operations, metrics = json.loads(payload.decode("utf-8"))
            evaluations, params = parse_model_metrics(base64.b64decode(metrics, validate=True), final_only=True)
            if not evaluations:
                raise ValueError("ModelMetrics has no evaluation_data")
        except (ValueError, TypeError, UnicodeDecodeError, KeyError, struct.error) as e:
            raise ConversionError(f"{path}: record {i} is not a NAS-Bench-101 record ({type(e).__name__}: {e})") from None
        if not isinstance(module_hash, str) or not NB101_HASH.match(module_hash):
            raise ConversionError(f"{path}: record {i} has the malformed module hash {module_hash!r}")
        acc.add(module_hash, epochs, evaluations[-1], params)
        if len(acc.samples) < HASH_SAMPLES and module_hash not in {s[0] for s in acc.samples}:
            acc.samples.append((module_hash, square_matrix(adjacency), operations.split(",")))
    check_nb101_hashes(path, acc.samples)
    return acc.benchmark(f"NAS-Bench-101 tfrecord {path.name}: mean over repeats, final evaluation", file_stem(path))


HASH_SAMPLES = 20


def check_nb101_hashes(path: Path, samples: list[tuple[str, Any, Any]]) -> None:
    """Archive keys are only useful if the project's NB101 hash reproduces the file's hashes."""
    nb101 = optional_nb101()
    if nb101 is None:
        return  # the space is not there: keys are the file's own hashes, unchecked
    for module_hash, matrix, ops in samples:
        ours = nb101.key(nb101.from_matrix(np.asarray(matrix), list(ops)))
        if ours != module_hash:
            raise ConversionError(
                f"{path}: the NB101 space hashes a graph of the file to {ours}, the file says {module_hash}; "
                "lookups in the archive would fail"
            )
