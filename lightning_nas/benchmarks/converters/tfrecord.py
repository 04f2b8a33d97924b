"""TFRecord framing without TensorFlow: CRC-32C (vectorised), reading with both checksums verified, writing."""
from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from lightning_nas.benchmarks.converters.common import ConversionError, PathLike, open_input


def _crc32c_table() -> np.ndarray:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(poly), table >> 1).astype(np.uint32)
    return table


_CRC_TABLE = _crc32c_table()
_CRC_LIST = _CRC_TABLE.tolist()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of one byte string; TFRecord's checksum before masking."""
    crc = 0xFFFFFFFF
    table = _CRC_LIST
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c_many(chunks: Sequence[bytes]) -> np.ndarray:
    """CRC-32C of many byte strings at once: one numpy step per byte position, all records in parallel."""
    n = len(chunks)
    lengths = np.fromiter(map(len, chunks), dtype=np.int64, count=n)
    order = np.argsort(-lengths, kind="stable")  # longest first: the live records at step j are a prefix
    lengths_sorted = lengths[order]
    width = int(lengths_sorted[0]) if n else 0
    grid = np.zeros((width, n), dtype=np.uint8)  # byte j of every record is one contiguous row
    for column, i in enumerate(order.tolist()):
        grid[: len(chunks[i]), column] = np.frombuffer(chunks[i], dtype=np.uint8)
    live = np.searchsorted(-lengths_sorted, -np.arange(width), side="left")  # records longer than j
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    for j in range(width):
        k = live[j]
        crc[:k] = _CRC_TABLE[(crc[:k] ^ grid[j, :k]) & 0xFF] ^ (crc[:k] >> 8)
    out = np.empty(n, dtype=np.uint32)
    out[order] = crc ^ np.uint32(0xFFFFFFFF)
    return out


def masked_crc(crc: int | np.ndarray) -> int | np.ndarray:
    """TFRecord masks its CRCs so that CRCs of data holding CRCs stay well distributed."""
    if isinstance(crc, np.ndarray):
        crc = crc.astype(np.uint64)
        return ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF).astype(np.uint32)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def write_tfrecord(path: PathLike, payloads: Iterable[bytes]) -> Path:
    """Write records in TFRecord framing (used by tests and to re-export subsets)."""
    path = Path(path)
    with open(path, "wb") as f:
        for data in payloads:
            header = struct.pack("<Q", len(data))
            f.write(header + struct.pack("<I", masked_crc(crc32c(header))))
            f.write(data + struct.pack("<I", masked_crc(crc32c(data))))
    return path


def iter_tfrecords(path: PathLike, batch: int = 16384) -> Iterator[tuple[int, bytes]]:
    """(record index, payload) of every record, with both CRCs verified (in vectorised batches)."""
    path = Path(path)
    index = 0
    with open_input(path) as f:
        while True:
            chunk = _read_tfrecord_batch(path, f, index, batch)
            if not chunk:
                return
            yield from enumerate(chunk, start=index)
            index += len(chunk)


def _read_tfrecord_batch(path: Path, f: io.BufferedReader, first: int, batch: int) -> list[bytes]:
    headers, header_crcs, payloads, payload_crcs, offsets = [], [], [], [], []
    for i in range(first, first + batch):
        offset = f.tell()
        head = f.read(12)
        if not head:
            break
        if len(head) < 12:
            raise ConversionError(f"{path}: record {i} at byte {offset} is truncated (incomplete header)")
        (length,) = struct.unpack("<Q", head[:8])
        body = f.read(length + 4)
        if len(body) < length + 4:
            raise ConversionError(f"{path}: record {i} at byte {offset} is truncated ({length} bytes announced)")
        headers.append(head[:8])
        header_crcs.append(struct.unpack("<I", head[8:])[0])
        payloads.append(body[:length])
        payload_crcs.append(struct.unpack("<I", body[length:])[0])
        offsets.append(offset)
    if payloads:
        _check_crcs(path, first, offsets, "length", headers, header_crcs)
        _check_crcs(path, first, offsets, "data", payloads, payload_crcs)
    return payloads


def _check_crcs(path: Path, first: int, offsets: list[int], what: str, chunks: list[bytes], stored: list[int]) -> None:
    bad = np.flatnonzero(masked_crc(crc32c_many(chunks)) != np.asarray(stored, dtype=np.uint32))
    if bad.size:
        i = int(bad[0])
        raise ConversionError(
            f"{path}: checksum mismatch in the {what} of record {first + i} at byte {offsets[i]}: the file is corrupt"
        )
