"""Load time and peak memory of the native benchmark archive.

1. NB201: the two shared tables (200 + 12 epochs) merged and converted to one native archive;
   requirement: load < 0.2 s. Baseline in the same run: reading the two CSV tables.
2. NB101-sized SIZE TEST: 423,624 rows (the size of NAS-Bench-101) with 17 float columns, the shape
   `convert` gives for nasbench_full.tfrecord. Keys are the 30,001 real module hashes of the shared
   table padded with SYNTHETIC 32-hex strings (md5 of "synthetic-<i>"), metric values are the real
   rows tiled: the numbers measure size, not benchmark content. Requirement: load < 10 s and peak
   RSS < 2 GB, measured in a fresh subprocess (resource.getrusage maxrss). Baseline: the same data
   read from a .csv.gz with `read_table` (csv module), also in a fresh subprocess.

Run from the repository root: python -m benchmarks.bench_archive [--rows 423624] [--repeats 5]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.report.common import add_script_arguments, shared_tables
from benchmarks.report.performance import archive_load
from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.benchmarks.converters.tables import read_table

NB101_ROWS = 423_624
NB201_LIMIT_S, NB101_LIMIT_S, NB101_LIMIT_RSS_MB = 0.2, 10.0, 2048

# Runs in a fresh interpreter: imports first, then the timed load, then the first lookup (builds
# the lazy index), reporting peak RSS of the whole process.
_PROBE = """
import json, resource, sys, time
from lightning_nas.benchmarks.archive import Benchmark

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

path, column = sys.argv[1], sys.argv[2]
rss_imports = rss_mb()
peak_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
bench = Benchmark.load(path)
t1 = time.perf_counter()
value = bench.query(str(bench.keys[-1]), column)
t2 = time.perf_counter()
print(json.dumps({"rows": len(bench), "columns": len(bench.metrics), "load_s": t1 - t0, "first_lookup_s": t2 - t1,
                  "rss_imports_mb": rss_imports, "peak_imports_mb": peak_imports, "rss_after_mb": rss_mb(),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def probe(path: str, column: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, path, column], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def bench_nb201(shared: Path, tmp: Path, repeats: int) -> bool:
    tables = [shared / "nb201_200ep.csv.gz", shared / "nb201_12ep.csv.gz"]
    archive = tmp / "nb201.npz"
    measured = archive_load(tables, archive, repeats)  # load + first lookup, beside reading the CSV tables
    fresh = probe(str(archive), "cifar10_test_acc")
    ok = measured["native_s"] < NB201_LIMIT_S
    print(f"NB201 native archive ({measured['rows']} rows, {measured['columns']} columns, {measured['archive_mb']:.1f} MB)")
    print(f"  load + first lookup (median of {repeats}, warm process) {measured['native_s'] * 1e3:8.1f} ms   "
          f"requirement < {NB201_LIMIT_S * 1e3:.0f} ms: {'PASS' if ok else 'FAIL'}")
    print(f"  load in a fresh process               {fresh['load_s'] * 1e3:8.1f} ms  (+{fresh['first_lookup_s'] * 1e3:.1f} ms first lookup, builds the index)")
    print(f"  baseline: the 2 CSV tables             {measured['csv_s'] * 1e3:8.1f} ms   ratio csv/native = {measured['csv_over_native']:.1f}x")
    print(f"  peak allocations of the load (tracemalloc): native {measured['native_peak_mb']:.1f} MB, CSV {measured['csv_peak_mb']:.1f} MB")
    return ok


def nb101_sized(shared: Path, rows: int) -> Benchmark:
    """SIZE TEST archive: real hashes + synthetic padding, real values tiled (see module doc)."""
    real = read_table(shared / "nb101_hashed_30k.csv.gz")
    pad = [hashlib.md5(f"synthetic-{i}".encode()).hexdigest() for i in range(rows - len(real))]
    keys = np.concatenate([real.keys, np.array(pad, dtype=real.keys.dtype)])
    tile = np.arange(rows) % len(real)
    metrics = {"params": real.metrics["params"][tile]}
    for epochs in (4, 12, 36, 108):
        valid = real.metrics[f"valid_acc_{epochs}ep"][tile]
        metrics[f"valid_acc_{epochs}ep"] = valid
        metrics[f"test_acc_{epochs}ep"] = valid - np.float32(0.5)
        metrics[f"train_acc_{epochs}ep"] = np.minimum(valid + np.float32(5), np.float32(100))
        metrics[f"train_time_{epochs}ep_s"] = real.metrics["train_time_108ep_s"][tile] * np.float32(epochs / 108)
    return Benchmark("nb101", keys, metrics, provenance="SIZE TEST: synthetic keys and tiled values", name="nb101_size_test")


def write_csv(bench: Benchmark, path: Path) -> Path:
    import gzip

    names = sorted(bench.metrics)
    block = np.column_stack([bench.metrics[n] for n in names])
    with gzip.open(path, "wt", compresslevel=6, newline="") as f:
        f.write(",".join(["hash", *names]) + "\n")
        for key, row in zip(bench.keys.tolist(), block.tolist()):
            f.write(key + "," + ",".join(f"{v:.6g}" for v in row) + "\n")
    return path


def bench_nb101(shared: Path, tmp: Path, rows: int) -> bool:
    bench = nb101_sized(shared, rows)
    archive = bench.save(tmp / "nb101_size_test.npz")
    table = write_csv(bench, tmp / "nb101_size_test.csv.gz")
    native = probe(str(archive), "valid_acc_108ep")
    csv_run = probe(str(table), "valid_acc_108ep")
    ok = native["load_s"] < NB101_LIMIT_S and native["peak_rss_mb"] < NB101_LIMIT_RSS_MB
    print(f"NB101-sized SIZE TEST archive ({native['rows']:,} rows: 30,001 real hashes + synthetic padding; "
          f"{native['columns']} columns; {archive.stat().st_size / 1e6:.1f} MB)")
    print(f"  load in a fresh process     {native['load_s']:7.3f} s    requirement < {NB101_LIMIT_S:.0f} s")
    print(f"  first lookup (lazy index)   {native['first_lookup_s']:7.3f} s")
    print(f"  peak RSS of the process     {native['peak_rss_mb']:7.0f} MB   requirement < {NB101_LIMIT_RSS_MB} MB: "
          f"{'PASS' if ok else 'FAIL'}")
    print(f"  of which imports (torch comes in with lightning_nas.spaces): peak {native['peak_imports_mb']:.0f} MB; "
          f"resident {native['rss_imports_mb']:.0f} MB after imports -> {native['rss_after_mb']:.0f} MB after load + index")
    print(f"  baseline read_table(.csv.gz, {table.stat().st_size / 1e6:.1f} MB): {csv_run['load_s']:.3f} s, "
          f"peak RSS {csv_run['peak_rss_mb']:.0f} MB   ratio csv/native = {csv_run['load_s'] / native['load_s']:.1f}x")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=NB101_ROWS)
    parser.add_argument("--repeats", type=int, default=5)
    add_script_arguments(parser, writes=False)
    args = parser.parse_args(argv)
    shared = shared_tables(args.shared)
    with tempfile.TemporaryDirectory() as tmp:
        ok = bench_nb201(shared, Path(tmp), args.repeats)
        ok = bench_nb101(shared, Path(tmp), args.rows) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
