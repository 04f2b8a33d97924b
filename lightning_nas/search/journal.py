"""The append-only journal of a search: the oracle's answers since the last full checkpoint.

Rewriting the whole state (history, seen, strategy, predictor) after every round made each query
cost more than the one before. Instead, each round appends one line with the answers it was charged
for (`search_journal.jsonl`), and the full checkpoint (`search_state.pt`) is written only when its
cost is a small share of the work done since the last one (`SearchLoop`), which empties the journal.
A resumed search loads the checkpoint and runs on from it; the journal's answers are given to the
oracle beforehand, so the rounds after the checkpoint are replayed without evaluating anything
again, and the search ends as an uninterrupted one does.

The first line names the search (`SearchLoop.identity`); each further line is strict JSON,
``{"first": i, "charges": [[key, score, report, cost, seconds], ...], "elapsed": s}``: charge `i`
onwards (0-based, in the order the oracle charged them), the search's wall clock at each and at the
end of the round. A line cut off by a crash, and anything after it, is ignored.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from lightning_nas.benchmarks.oracle import Evaluation
from lightning_nas.errors import ConfigError
from lightning_nas.io import atomic_write, dumps, write_error

JOURNAL_FILE = "search_journal.jsonl"


@dataclass
class Charge:
    """One charged oracle answer: the architecture's key, its evaluation and the search's clock then."""

    key: str
    evaluation: Evaluation
    seconds: float

    def row(self) -> list[Any]:
        e = self.evaluation
        return [self.key, e.score, e.report, e.cost, self.seconds]

    @classmethod
    def from_row(cls, row: list[Any]) -> "Charge":
        key, score, report, cost, seconds = row
        return cls(key, Evaluation(_number(score), {k: _number(v) for k, v in report.items()}, _number(cost)), seconds)


def _number(value: float | None) -> float:
    """Strict JSON writes NaN as null: read it back as NaN."""
    return math.nan if value is None else float(value)


@dataclass
class Tail:
    """What a journal holds beyond a checkpoint: the charges from number `first` on, and the clock."""

    first: int = 0
    charges: list[Charge] = field(default_factory=list)
    elapsed: float | None = None


class Journal:
    """The journal file of one search (`identity`), written by rank 0 only."""

    def __init__(self, path: Path, identity: dict[str, Any]):
        self.path, self.identity = path, identity
        self._file: BinaryIO | None = None

    def read(self) -> Tail | None:
        """The journal's charges (None when there is no journal); a journal of another search is
        refused, a damaged end is cut off."""
        if not self.path.is_file():
            return None
        with open(self.path, "rb") as f:
            lines = f.read().split(b"\n")
        try:
            saved = json.loads(lines[0])["identity"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"{self.path} is not a search journal this version can resume: give another --run_dir, "
                "or delete that file to start afresh"
            ) from None
        if saved != self.identity:
            differs = ", ".join(f"{k} {saved.get(k)!r} there, {v!r} here" for k, v in self.identity.items()
                                if saved.get(k) != v)
            raise ConfigError(f"{self.path} belongs to another search ({differs}): give another --run_dir, "
                              "or delete that file to start afresh")
        tail, good = Tail(), len(lines[0]) + 1
        for line in lines[1:]:
            try:
                entry = json.loads(line)
                charges = [Charge.from_row(row) for row in entry["charges"]]
                if tail.charges and entry["first"] != tail.first + len(tail.charges):
                    break
                if not tail.charges:
                    tail.first = entry["first"]
                tail.charges += charges
                tail.elapsed = float(entry["elapsed"])
            except (ValueError, KeyError, TypeError):  # a line cut off by a crash, or the end
                break
            good += len(line) + 1
        if good < os.path.getsize(self.path):
            os.truncate(self.path, good)
        return tail

    def after(self, charged: int) -> Tail:
        """The charges of the journal from number `charged` on (none when they do not start there)."""
        tail = self.read() or Tail()
        if not tail.first <= charged <= tail.first + len(tail.charges):
            return Tail(charged)
        return Tail(charged, tail.charges[charged - tail.first:], tail.elapsed)

    def start(self) -> None:
        """An empty journal (after a full checkpoint): only the line that names the search."""
        self.close()
        atomic_write(self.path, dumps({"identity": self.identity}) + "\n")

    def append(self, first: int, charges: list[Charge], elapsed: float) -> None:
        """One round's line, handed to the kernel (a killed process loses nothing; a power cut may lose
        the rounds since the checkpoint). A failed write (a full disk) leaves the journal as it was."""
        if self._file is None:
            if not self.path.is_file():
                self.start()
            self._file = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND), "wb")
        size = os.fstat(self._file.fileno()).st_size
        try:
            line = dumps({"first": first, "charges": [c.row() for c in charges], "elapsed": elapsed})
            self._file.write(line.encode() + b"\n")
            self._file.flush()
        except OSError as e:
            file, self._file = self._file, None  # the next append reopens
            try:
                file.close()
            except OSError:
                pass  # what it still held is cut off below
            os.truncate(self.path, size)
            raise write_error(self.path, e) from e

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
