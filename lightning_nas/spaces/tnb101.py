"""TransNAS-Bench-101 micro: the NB201-shaped cell with 4 ops, official string `64-41414-a_bc_def`."""
from __future__ import annotations

import re

from lightning_nas.spaces.base import Architecture, register
from lightning_nas.spaces.cell_on_edges import CellOnEdgesSpace, parse_error

_PATTERN = re.compile(r"^64-41414-(\d)_(\d\d)_(\d\d\d)$")


class TNB101MicroSpace(CellOnEdgesSpace):
    name = "tnb101_micro"
    ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3")

    def to_string(self, a: Architecture) -> str:
        self._check(a)
        g = "".join(str(op) for op in a.genotype)
        return f"64-41414-{g[0]}_{g[1:3]}_{g[3:6]}"

    def from_string(self, s: str) -> Architecture:
        match = _PATTERN.match(s.strip())
        if not match:
            raise parse_error(self.name, s, "expected '64-41414-a_bc_def' with one digit per edge")
        genotype = [int(c) for c in "".join(match.groups())]
        if max(genotype) >= len(self.ops):
            raise parse_error(self.name, s, f"op digits must be 0..{len(self.ops) - 1}")
        return self.make(genotype)


TNB101_MICRO = register(TNB101MicroSpace())
