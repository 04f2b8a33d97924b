"""NAS-Bench-201: official string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`, 5 ops, 15,625 cells."""
from __future__ import annotations

from torch import nn

from lightning_nas.spaces.base import Architecture, parse_error, register
from lightning_nas.spaces.cell_on_edges import EDGES, CellOnEdgesSpace
from lightning_nas.spaces.nb201.network import OPS, nb201_network


class NB201Space(CellOnEdgesSpace):
    name = "nb201"
    ops = OPS

    def to_string(self, a: Architecture) -> str:
        self.check(a)
        names = [f"{self.ops[op]}~{src}" for op, (src, _) in zip(a.genotype, EDGES)]
        return "|" + "|+|".join(["|".join(names[0:1]), "|".join(names[1:3]), "|".join(names[3:6])]) + "|"

    def from_string(self, s: str) -> Architecture:
        nodes = s.strip().split("+")
        if len(nodes) != 3:
            raise parse_error(self.name, s, "expected 3 node groups joined by '+'")
        genotype = []
        for dst, node in enumerate(nodes, start=1):
            if not (node.startswith("|") and node.endswith("|")):
                raise parse_error(self.name, s, f"node {dst} group {node!r} must be wrapped in '|'")
            entries = node[1:-1].split("|")
            if len(entries) != dst:
                raise parse_error(self.name, s, f"node {dst} needs {dst} inputs, got {len(entries)}")
            for src, entry in enumerate(entries):
                op, _, source = entry.partition("~")
                if op not in self.ops:
                    raise parse_error(self.name, s, f"unknown op {op!r} (known: {', '.join(self.ops)})")
                if source != str(src):
                    raise parse_error(self.name, s, f"entry {entry!r} must read from node {src}")
                genotype.append(self.ops.index(op))
        return self.make(genotype)

    def network(self, a: Architecture, num_classes: int = 10, in_channels: int = 3, **options) -> nn.Module:
        """The benchmark's `TinyNetwork`; options `channels` (C, 16) and `cells_per_stage` (N, 5)."""
        self.check(a)
        return nb201_network(a.genotype, num_classes, in_channels=in_channels, **options)


NB201 = register(NB201Space())
