"""Time the NAS-Bench-101 enumeration (cold: empty cache dir; warm: from the disk cache) and check it
against the benchmark's own hashes: every hash of `nb101_hashed_30k.csv.gz` must be enumerated.

    python benchmarks/bench_nb101_enumeration.py [--shared ../shared/benchmarks]
"""
from __future__ import annotations

import argparse
import csv
import gzip
import os
import tempfile
import time
from pathlib import Path

from lightning_nas.spaces import nb101_cells
from lightning_nas.spaces.nb101 import NB101

DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


def timed(fn):
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="folder of the shared benchmark tables")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ[nb101_cells.CACHE_ENV] = tmp
        nb101_cells._load.cache_clear()
        table, cold, cold_cpu = timed(nb101_cells.cell_table)
        cache_file = Path(tmp) / nb101_cells.CACHE_FILE
        size_mb = cache_file.stat().st_size / 2**20
        nb101_cells._load.cache_clear()  # the next call reads the file written above
        warm_table, warm, _ = timed(nb101_cells.cell_table)
        archs, iterate, _ = timed(lambda: list(NB101.enumerate()))

        with gzip.open(args.shared / "nb101_hashed_30k.csv.gz", "rt") as f:
            official = [row["hash"] for row in csv.DictReader(f)]
        missing = [h for h in official if table.index(h) is None]
        sample = [NB101.from_key(h) for h in official[:2000]]
        rehashed = sum(NB101.key(a) == h for a, h in zip(sample, official))

    print(f"unique cells enumerated        : {len(table):,} (expected {nb101_cells.NUM_CELLS:,})")
    load = os.getloadavg()[0]
    print(f"cold build (empty cache)       : {cold:.1f} s wall, {cold_cpu:.1f} s CPU (load average {load:.1f})")
    print(f"warm load from cache           : {warm:.3f} s  ({size_mb:.1f} MiB file)")
    print(f"enumerate() -> Architecture    : {iterate:.2f} s for {len(archs):,}")
    print(f"warm table identical to cold   : {bool((warm_table.hashes == table.hashes).all())}")
    print(f"30k official hashes enumerated : {len(official) - len(missing):,} / {len(official):,}")
    print(f"from_key -> key round trip     : {rehashed:,} / {len(sample):,}")
    if missing or len(table) != nb101_cells.NUM_CELLS or rehashed != len(sample):
        raise SystemExit(f"FAILED: {len(missing)} official hashes missing, e.g. {missing[:3]}")


if __name__ == "__main__":
    main()
