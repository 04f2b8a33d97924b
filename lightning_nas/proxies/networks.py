"""Real PyTorch networks built from an architecture, layer for layer as in each benchmark.

- NAS-Bench-201: the benchmark's `TinyNetwork` (stem conv3x3+BN, three stages of N cells,
  residual basic blocks between stages, BN-ReLU, global pool, linear); ops are ReLU-Conv-BN.
- NAS-Bench-101: the official `model_builder` (conv3x3-BN-ReLU stem of 128 channels, three
  stacks of three modules, 2x2 max-pool and channel doubling between stacks; inside a module the
  output channels are split among the vertices that feed the output, the input is reached through
  1x1 projections, other edges are truncated when a vertex has one channel more).
- TransNAS-Bench-101 micro: the benchmark's `MacroNet` backbone "64-41414" (two-conv stride-4
  stem, five stages of two cells; 4 = halve the resolution and double the channels) with the
  classification decoder (global pool, linear).

Parameter counts equal the benchmarks' (tested against their published numbers). Every network
exposes `features(x)` (the map before global pooling, what Zen-score reads) and `forward(x)`.
Ops on edges that carry the zero op are not built; vertices whose value never reaches the output
are not computed (their parameters still exist, as in the benchmark, but cannot change the output).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from lightning_nas.spaces.base import Architecture, get_space
from lightning_nas.spaces.cell_on_edges import EDGES, NUM_NODES
from lightning_nas.spaces.flops import GlobalMeanPool


# --- shared layers ----------------------------------------------------------------------------
class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


class FactorizedReduce(nn.Module):
    """Skip connection across a stride-2 edge: two offset 1x1 convs, concatenated, then BN."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c, 1, stride=stride, bias=False) for c in (c_out // 2, c_out - c_out // 2)
        )
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.convs[0](x), self.convs[1](shifted)], dim=1))


class ResNetBasicBlock(nn.Module):
    """NB201's reduction block: two ReLU-Conv-BN 3x3 (the first strided) plus a shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        if stride == 2:
            self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))
        elif c_in != c_out:
            self.shortcut = ReLUConvBN(c_in, c_out, 1, 1, 0)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


def _used_nodes(genotype: Sequence[int], none_op: int) -> list[bool]:
    """Which cell nodes influence the output through edges that are not the zero op."""
    used = [False] * (NUM_NODES - 1) + [True]
    for e in reversed(range(len(EDGES))):
        src, dst = EDGES[e]
        if used[dst] and genotype[e] != none_op:
            used[src] = True
    return used


class EdgeCell(nn.Module):
    """A 4-node cell with one op per edge (NB201, TNB101 micro); nodes sum their inputs."""

    def __init__(self, genotype: Sequence[int], make_op, none_op: int = 0):
        super().__init__()
        self.genotype = tuple(genotype)
        self.none_op = none_op
        # index by edge number so that the state-dict names are stable
        self.edges = nn.ModuleDict(
            {str(e): make_op(op, src) for e, (op, (src, _)) in enumerate(zip(genotype, EDGES)) if op != none_op}
        )
        self.used = _used_nodes(genotype, none_op)
        self.every_op = False  # compute dead nodes too (see lightning_nas.spaces.flops.EVERY_OP)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [x]
        for dst in range(1, NUM_NODES):
            if not (self.used[dst] or self.every_op):
                nodes.append(None)
                continue
            terms = [self.edges[str(e)](nodes[src]) for e, (src, d) in enumerate(EDGES) if d == dst and str(e) in self.edges]
            nodes.append(torch.stack(terms).sum(0) if terms else self._zeros(x))
        return nodes[-1]

    def _zeros(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(self.zero_shape(x))

    def zero_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(x.shape)


class ClassifierNetwork(nn.Module):
    """stem -> body -> `head` (normalisation before pooling, if any) -> global pool -> linear."""

    def __init__(
        self, stem: nn.Module, body: nn.Module, head: nn.Module, channels: int, num_classes: int, pool: nn.Module | None = None
    ):
        super().__init__()
        self.stem, self.body, self.head = stem, body, head
        self.pool = nn.AdaptiveAvgPool2d(1) if pool is None else pool
        self.classifier = nn.Linear(channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


# --- NAS-Bench-201 ----------------------------------------------------------------------------
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def _nb201_op(name: str, channels: int) -> nn.Module:
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 op {name!r}")


def nb201_network(
    genotype: Sequence[int], num_classes: int = 10, channels: int = 16, cells_per_stage: int = 5, in_channels: int = 3
) -> ClassifierNetwork:
    """The NB201 `TinyNetwork`; defaults C=16, N=5 are the benchmark's (Dong & Yang, 2020, Sec. 2.1)."""
    if len(genotype) != len(EDGES):
        raise ValueError(f"an NB201 genotype has {len(EDGES)} ops, got {len(genotype)}")
    stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
    layers: list[nn.Module] = []
    c = channels
    for stage in range(3):
        if stage > 0:
            layers.append(ResNetBasicBlock(c, 2 * c, stride=2))
            c *= 2
        for _ in range(cells_per_stage):
            layers.append(EdgeCell(genotype, lambda op, src, c=c: _nb201_op(NB201_OPS[op], c)))
    head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
    return ClassifierNetwork(stem, nn.Sequential(*layers), head, c, num_classes)


# --- TransNAS-Bench-101 micro -----------------------------------------------------------------
TNB101_MACRO = "41414"  # the micro benchmark's fixed macro skeleton: 1 = keep, 2 = x2 channels, 3 = /2 size, 4 = both


class TNB101Cell(EdgeCell):
    """The micro cell; the first cell of a stage may change resolution and width on its input edges."""

    def __init__(self, genotype: Sequence[int], c_in: int, c_out: int, stride: int):
        self.stride, self.c_out = stride, c_out

        def make_op(op: int, src: int) -> nn.Module:
            return _tnb101_op(op, c_in if src == 0 else c_out, c_out, stride if src == 0 else 1)

        super().__init__(genotype, make_op)

    def zero_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        # TransNAS's Zero op: (H + 1) // stride for a strided edge
        b, _, h, w = x.shape
        return (b, self.c_out, (h + self.stride - 1) // self.stride, (w + self.stride - 1) // self.stride)


def _tnb101_op(op: int, c_in: int, c_out: int, stride: int) -> nn.Module:
    if op == 1:
        return nn.Identity() if stride == 1 and c_in == c_out else FactorizedReduce(c_in, c_out, stride)
    if op == 2:
        return ReLUConvBN(c_in, c_out, 1, stride, 0)
    if op == 3:
        return ReLUConvBN(c_in, c_out, 3, stride, 1)
    raise ValueError(f"unknown TransNAS-Bench-101 micro op {op}")


def tnb101_micro_network(
    genotype: Sequence[int], num_classes: int = 100, base_channels: int = 64, in_channels: int = 3
) -> ClassifierNetwork:
    """`MacroNet("64-41414-<cell>")` + the classification decoder. TransNAS-Bench-101 uses 100
    classes for class_object and 63 for class_scene (Duan et al., 2021, Sec. 3)."""
    if len(genotype) != len(EDGES):
        raise ValueError(f"a TransNAS-Bench-101 micro genotype has {len(EDGES)} ops, got {len(genotype)}")
    half = base_channels // 2
    stem = nn.Sequential(
        nn.Conv2d(in_channels, half, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(half),
        ReLUConvBN(half, base_channels, 3, 2, 1),
    )
    layers: list[nn.Module] = []
    c = base_channels
    for code in TNB101_MACRO:
        kind = int(code)
        c_out = 2 * c if kind % 2 == 0 else c
        stride = 2 if kind > 2 else 1
        layers.append(TNB101Cell(genotype, c, c_out, stride))
        layers.append(TNB101Cell(genotype, c_out, c_out, 1))
        c = c_out
    network = ClassifierNetwork(stem, nn.Sequential(*layers), nn.Identity(), c, num_classes)
    _kaiming_init(network)
    return network


def _kaiming_init(network: nn.Module) -> None:
    """MacroNet's own initialisation (kaiming normal, fan-out; BN weight 1, bias 0)."""
    for m in network.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --- NAS-Bench-101 ----------------------------------------------------------------------------
NB101_INPUT, NB101_OUTPUT = "input", "output"
NB101_OPS = ("conv1x1-bn-relu", "conv3x3-bn-relu", "maxpool3x3")


def prune_spec(matrix: np.ndarray, ops: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Drop vertices not on an input->output path, as the official `ModelSpec` does before building."""
    matrix = np.asarray(matrix, dtype=np.int64)
    n = matrix.shape[0]
    if matrix.shape != (n, n) or len(ops) != n:
        raise ValueError(f"matrix of shape {matrix.shape} does not fit {len(ops)} ops")
    from_input, to_output = _reachable(matrix, 0), _reachable(matrix.T, n - 1)
    if n - 1 not in from_input:
        raise ValueError("the NAS-Bench-101 cell has no path from input to output")
    keep = sorted(from_input & to_output)
    return matrix[np.ix_(keep, keep)], [ops[i] for i in keep]


def _reachable(matrix: np.ndarray, start: int) -> set[int]:
    seen, frontier = {start}, [start]
    while frontier:
        v = frontier.pop()
        for w in np.flatnonzero(matrix[v]):
            if int(w) not in seen:
                seen.add(int(w))
                frontier.append(int(w))
    return seen


def vertex_channels(c_in: int, c_out: int, matrix: np.ndarray) -> list[int]:
    """The official `compute_vertex_channels`: split `c_out` among the vertices feeding the output
    (the first ones get the remainder), then give every other vertex the max of its successors."""
    n = matrix.shape[0]
    channels = [0] * n
    channels[0], channels[-1] = c_in, c_out
    if n == 2:
        return channels
    fan_in = int(matrix[1:, n - 1].sum())
    share, extra = divmod(c_out, fan_in)
    for v in range(1, n - 1):
        if matrix[v, n - 1]:
            channels[v] = share + (1 if extra > 0 else 0)
            extra -= 1
    for v in range(n - 3, 0, -1):
        if not matrix[v, n - 1]:
            for dst in range(v + 1, n - 1):
                if matrix[v, dst]:
                    channels[v] = max(channels[v], channels[dst])
    return channels


class ConvBNReLU(nn.Sequential):
    """NB101's conv_bn_relu. BN eps 1e-5 as in the benchmark; its moving-average decay 0.997 is
    left at PyTorch's 0.1 so that running statistics settle within the few epochs of live training."""

    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out, eps=1e-5),
            nn.ReLU(inplace=False),
        )


def _nb101_op(name: str, channels: int) -> nn.Module:
    if name == "conv3x3-bn-relu":
        return ConvBNReLU(channels, channels, 3)
    if name == "conv1x1-bn-relu":
        return ConvBNReLU(channels, channels, 1)
    if name == "maxpool3x3":
        return nn.MaxPool2d(3, stride=1, padding=1)
    raise ValueError(f"unknown NAS-Bench-101 op {name!r}; known: {', '.join(NB101_OPS)}")


class NB101Module(nn.Module):
    """One NB101 cell ("module") over a pruned spec."""

    def __init__(self, matrix: np.ndarray, ops: Sequence[str], c_in: int, c_out: int):
        super().__init__()
        self.matrix, n = matrix, matrix.shape[0]
        self.channels = vertex_channels(c_in, c_out, matrix)
        # the input reaches a vertex only through a 1x1 projection
        self.projections = nn.ModuleDict(
            {str(v): ConvBNReLU(c_in, self.channels[v], 1) for v in range(1, n - 1) if matrix[0, v]}
        )
        self.ops = nn.ModuleDict({str(v): _nb101_op(ops[v], self.channels[v]) for v in range(1, n - 1)})
        self.output_projection = ConvBNReLU(c_in, c_out, 1) if matrix[0, n - 1] else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, m = self.matrix.shape[0], self.matrix
        values: list[torch.Tensor] = [x]
        for v in range(1, n - 1):
            c = self.channels[v]
            terms = [values[src][:, :c] for src in range(1, v) if m[src, v]]
            if m[0, v]:
                terms.append(self.projections[str(v)](x))
            values.append(self.ops[str(v)](terms[0] if len(terms) == 1 else torch.stack(terms).sum(0)))
        into_output = [values[v] for v in range(1, n - 1) if m[v, n - 1]]
        if not into_output:
            return self.output_projection(x)
        out = into_output[0] if len(into_output) == 1 else torch.cat(into_output, dim=1)
        return out + self.output_projection(x) if self.output_projection is not None else out


def nb101_network(
    matrix: np.ndarray,
    ops: Sequence[str],
    num_classes: int = 10,
    stem_channels: int = 128,
    num_stacks: int = 3,
    modules_per_stack: int = 3,
    in_channels: int = 3,
) -> ClassifierNetwork:
    """The official NB101 network; defaults are the benchmark's (Ying et al., 2019, Sec. 2.1)."""
    matrix, ops = prune_spec(matrix, ops)
    if ops[0] != NB101_INPUT or ops[-1] != NB101_OUTPUT:
        raise ValueError(f"NB101 ops must start with {NB101_INPUT!r} and end with {NB101_OUTPUT!r}, got {ops}")
    stem = ConvBNReLU(in_channels, stem_channels, 3)
    layers: list[nn.Module] = []
    c = stem_channels
    for stack in range(num_stacks):
        c_out = c
        if stack > 0:
            layers.append(nn.MaxPool2d(2, 2))
            c_out = 2 * c
        for _ in range(modules_per_stack):
            layers.append(NB101Module(matrix, ops, c, c_out))
            c = c_out
    # NB101's model pools with torch.mean (free under the NASLib FLOPs convention)
    return ClassifierNetwork(stem, nn.Sequential(*layers), nn.Identity(), c, num_classes, GlobalMeanPool())


# --- dispatch ---------------------------------------------------------------------------------
def build_network(a: Architecture, num_classes: int = 10, in_channels: int = 3, **options) -> nn.Module:
    """The benchmark's network for `a`; `options` reach the space's builder (e.g. NB201 `channels`,
    `cells_per_stage`; NB101 `stem_channels`, `num_stacks`, `modules_per_stack`; TNB101 `base_channels`)."""
    space = get_space(a.space)
    if not space.is_valid(a):
        raise ValueError(f"not a valid {a.space} architecture: {a.genotype}")
    if a.space == "nb201":
        return nb201_network(a.genotype, num_classes, in_channels=in_channels, **options)
    if a.space == "tnb101_micro":
        return tnb101_micro_network(a.genotype, num_classes, in_channels=in_channels, **options)
    if a.space == "nb101":
        matrix, ops = nb101_spec(a)
        return nb101_network(matrix, ops, num_classes, in_channels=in_channels, **options)
    raise ValueError(f"no network builder for the {a.space!r} space; available: nb201, nb101, tnb101_micro")


def nb101_spec(a: Architecture) -> tuple[np.ndarray, list[str]]:
    """(pruned adjacency matrix, op names) of an NB101 architecture, from the space."""
    matrix, ops = get_space("nb101").spec(a)
    return np.asarray(matrix), list(ops)


def count_parameters(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters() if p.requires_grad)
