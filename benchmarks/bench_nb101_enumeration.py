"""Time the NAS-Bench-101 enumeration (cold: empty cache dir; warm: from the disk cache) and check it
against the benchmark's own hashes: every hash of `nb101_hashed_30k.csv.gz` must be enumerated.

    python -m benchmarks.bench_nb101_enumeration [--shared ../shared/benchmarks] [--max-vertices 7]

With fewer than 7 vertices only the timing is measured (the official hashes need the whole space).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import os
import time

from benchmarks.report.common import add_script_arguments, shared_tables
from benchmarks.report.performance import nb101_enumeration
from lightning_nas.spaces.nb101 import cells as nb101_cells
from lightning_nas.spaces.nb101 import NB101


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-vertices", type=int, default=nb101_cells.NUM_VERTICES)
    add_script_arguments(parser, writes=False)
    args = parser.parse_args(argv)

    timing = nb101_enumeration(args.max_vertices)  # cold into an empty temporary cache folder, then warm from it
    print(f"unique cells enumerated        : {timing['cells']:,} (up to {timing['max_vertices']} vertices)")
    print(f"cold build (empty cache)       : {timing['cold_s']:.1f} s wall (load average {os.getloadavg()[0]:.1f})")
    print(f"warm load from cache           : {timing['warm_s']:.3f} s  ({timing['cache_mb']:.1f} MiB file)")
    print(f"warm table identical to cold   : {timing['warm_equals_cold']}")
    if args.max_vertices < nb101_cells.NUM_VERTICES:
        return
    table = nb101_cells.cell_table()  # the user's cache (built here if missing)
    start = time.perf_counter()
    archs = list(NB101.enumerate())
    iterate = time.perf_counter() - start
    with gzip.open(shared_tables(args.shared) / "nb101_hashed_30k.csv.gz", "rt") as f:
        official = [row["hash"] for row in csv.DictReader(f)]
    missing = [h for h in official if table.index(h) is None]
    sample = [NB101.from_key(h) for h in official[:2000]]
    rehashed = sum(NB101.key(a) == h for a, h in zip(sample, official))

    print(f"expected unique cells          : {nb101_cells.NUM_CELLS:,}")
    print(f"enumerate() -> Architecture    : {iterate:.2f} s for {len(archs):,}")
    print(f"30k official hashes enumerated : {len(official) - len(missing):,} / {len(official):,}")
    print(f"from_key -> key round trip     : {rehashed:,} / {len(sample):,}")
    if missing or timing["cells"] != nb101_cells.NUM_CELLS or rehashed != len(sample):
        raise SystemExit(f"FAILED: {len(missing)} official hashes missing, e.g. {missing[:3]}")


if __name__ == "__main__":
    main()
