"""Figures read off finished searches (their results.json and timing.json)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from lightning_nas.search.outputs import TIMING_FILE


def wall_time(run_dir: str | os.PathLike) -> float:
    """The search time of a finished run (its timing.json)."""
    return float(json.loads((Path(run_dir) / TIMING_FILE).read_text())["wall_time_s"])


def best_after(results: dict[str, Any], budget: int) -> dict[str, Any] | None:
    """The best-by-objective record after `budget` queries (None if the run made no query). A query
    charged without an objective has no record: `query` counts the charges."""
    queries = results["queries"][:budget]
    while queries and queries[-1]["query"] > budget:
        queries.pop()
    return queries[-1]["best"] if queries else None


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return float(np.mean(values)), float(np.std(values))
