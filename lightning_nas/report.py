"""`lightning-nas report`: the entry point of the repository's experiment harness (benchmarks/report/).

The harness measures the library; it is not part of it. It runs from a clone or an editable install,
where it lies next to the package's source; a regular install does not include it.
"""
from __future__ import annotations

import sys
from pathlib import Path

from lightning_nas.errors import MissingFileError

ROOT = Path(__file__).resolve().parents[1]


def report_main(argv: list[str]) -> int:
    if not (ROOT / "benchmarks" / "report" / "main.py").is_file():
        raise MissingFileError("`lightning-nas report` runs the repository's experiment harness (benchmarks/report/), "
                               "which this installation does not include: clone the repository and "
                               "`pip install -e .` from it")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.report.main import report_main as main

    return main(argv)
