"""`lightning-nas convert`: benchmark files in their official formats (or CSV tables) -> one native archive.

The readers live in `lightning_nas.benchmarks.converters`, one module per input format.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.benchmarks.converters.common import ConversionError
from lightning_nas.benchmarks.converters.formats import FORMATS, convert
from lightning_nas.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit status 2 from convert_main, not usage + SystemExit
        raise ConversionError(message)


def convert_main(argv: Sequence[str] | None = None) -> int:
    """``lightning-nas convert INPUT [INPUT ...] -o OUT.npz [--format F] [--space S] [--trust-pickle] [--force]``."""
    parser = _Parser(
        prog="lightning-nas convert",
        description="Convert benchmark files (official formats or CSV tables) into one native .npz archive.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="benchmark file(s) or NATS directory")
    parser.add_argument("-o", "--output", required=True, help="the archive to write (.npz); an existing file "
                                                             "is replaced only with --force")
    parser.add_argument("--force", action="store_true", help="replace the archive at -o if there is one")
    parser.add_argument("--format", default="auto",
                        help=f"input format: auto (default: from the name and content), {', '.join(FORMATS)}")
    parser.add_argument("--space", default=None,
                        help="search space of CSV tables: a name, a class path (package.module.Class) or a "
                             "{class_path, init_args} spec (.yaml/.json file or JSON text); default: from the keys")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow loading pickle-based inputs (.pth, NATS, NASLib); pickles can run code")
    start = time.perf_counter()
    try:
        args = parser.parse_args(argv)
        if Path(args.output).exists() and not args.force:
            raise ConversionError(f"{args.output} exists: pass --force to replace it, or give another -o")
        out = convert(args.inputs, args.output, args.format, args.space, args.trust_pickle)
        bench = Benchmark.load(out)
    except UserError as e:
        print(f"lightning-nas: error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {out}: {len(bench)} {bench.space.name} architectures, {len(bench.metrics)} columns "
        f"in {time.perf_counter() - start:.1f} s"
    )
    blank = missing_values(bench)
    if blank:
        shown = ", ".join(f"{name} {n}" for name, n in blank.items())
        print(f"cells without a value (blank or NaN), of {len(bench)}: {shown}; a search never offers an "
              "architecture without its objective under table_only, and otherwise charges it and skips it")
    return 0


def missing_values(bench: Benchmark) -> dict[str, int]:
    """Per column with gaps: how many architectures have no value."""
    counts = {name: int(np.isnan(column).sum()) for name, column in bench.metrics.items()
              if np.issubdtype(column.dtype, np.floating)}
    return {name: n for name, n in counts.items() if n}
