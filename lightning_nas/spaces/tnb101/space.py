"""TransNAS-Bench-101 micro: the NB201-shaped cell with 4 ops, official string `64-41414-a_bc_def`."""
from __future__ import annotations

import re

from torch import nn

from lightning_nas.spaces.base import Architecture, parse_error, register
from lightning_nas.spaces.cell_on_edges import CellOnEdgesSpace
from lightning_nas.spaces.tnb101.network import OPS, tnb101_micro_network

_PATTERN = re.compile(r"^64-41414-(\d)_(\d\d)_(\d\d\d)$")


class TNB101MicroSpace(CellOnEdgesSpace):
    name = "tnb101_micro"
    ops = OPS

    def to_string(self, a: Architecture) -> str:
        self.check(a)
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

    def network(self, a: Architecture, num_classes: int = 10, in_channels: int = 3, **options) -> nn.Module:
        """The benchmark's `MacroNet` with the classification decoder; option `base_channels` (64)."""
        self.check(a)
        return tnb101_micro_network(a.genotype, num_classes, in_channels=in_channels, **options)


TNB101_MICRO = register(TNB101MicroSpace())
