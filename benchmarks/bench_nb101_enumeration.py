"""Time the NAS-Bench-101 enumeration (cold: empty cache dir; warm: from the disk cache) and check it
against the benchmark's own hashes: every hash of `nb101_hashed_30k.csv.gz` must be enumerated.

    python benchmarks/bench_nb101_enumeration.py [--shared ../shared/benchmarks]
"""
from __future__ import annotations

import argparse
import csv
import gzip
import os
import time
from pathlib import Path

from lightning_nas.performance import nb101_enumeration
from lightning_nas.spaces.nb101 import cells as nb101_cells
from lightning_nas.spaces.nb101 import NB101

DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="folder of the shared benchmark tables")
    args = parser.parse_args()

    timing = nb101_enumeration()  # cold into an empty temporary cache folder, then warm from it
    table = nb101_cells.cell_table()  # the user's cache (built here if missing)
    start = time.perf_counter()
    archs = list(NB101.enumerate())
    iterate = time.perf_counter() - start
    with gzip.open(args.shared / "nb101_hashed_30k.csv.gz", "rt") as f:
        official = [row["hash"] for row in csv.DictReader(f)]
    missing = [h for h in official if table.index(h) is None]
    sample = [NB101.from_key(h) for h in official[:2000]]
    rehashed = sum(NB101.key(a) == h for a, h in zip(sample, official))

    print(f"unique cells enumerated        : {timing['cells']:,} (expected {nb101_cells.NUM_CELLS:,})")
    print(f"cold build (empty cache)       : {timing['cold_s']:.1f} s wall (load average {os.getloadavg()[0]:.1f})")
    print(f"warm load from cache           : {timing['warm_s']:.3f} s  ({timing['cache_mb']:.1f} MiB file)")
    print(f"enumerate() -> Architecture    : {iterate:.2f} s for {len(archs):,}")
    print(f"warm table identical to cold   : {timing['warm_equals_cold']}")
    print(f"30k official hashes enumerated : {len(official) - len(missing):,} / {len(official):,}")
    print(f"from_key -> key round trip     : {rehashed:,} / {len(sample):,}")
    if missing or timing["cells"] != nb101_cells.NUM_CELLS or rehashed != len(sample):
        raise SystemExit(f"FAILED: {len(missing)} official hashes missing, e.g. {missing[:3]}")


if __name__ == "__main__":
    main()
