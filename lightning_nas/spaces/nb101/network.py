"""The NAS-Bench-101 network, the official `model_builder`: conv3x3-BN-ReLU stem of 128 channels,
three stacks of three modules, 2x2 max-pool and channel doubling between stacks; inside a module
the output channels are split among the vertices that feed the output, the input is reached
through 1x1 projections, other edges are truncated when a vertex has one channel more.
Parameter counts equal the benchmark's."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from lightning_nas.spaces.base import InvalidArchitectureError
from lightning_nas.spaces.layers import ClassifierNetwork, GlobalMeanPool
from lightning_nas.spaces.nb101.cells import INPUT, OPS, OUTPUT, prune


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


def _op(name: str, channels: int) -> nn.Module:
    if name == "conv3x3-bn-relu":
        return ConvBNReLU(channels, channels, 3)
    if name == "conv1x1-bn-relu":
        return ConvBNReLU(channels, channels, 1)
    if name == "maxpool3x3":
        return nn.MaxPool2d(3, stride=1, padding=1)
    raise ValueError(f"unknown NAS-Bench-101 op {name!r}; known: {', '.join(OPS)}")


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
        self.ops = nn.ModuleDict({str(v): _op(ops[v], self.channels[v]) for v in range(1, n - 1)})
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
    """The official NB101 network of a cell given as the benchmark stores it (n x n upper-triangular
    matrix, n op names with input first and output last; pruned here as `ModelSpec` does); defaults
    are the benchmark's (Ying et al., 2019, Sec. 2.1)."""
    matrix = np.asarray(matrix, dtype=np.int64)
    n = matrix.shape[0]
    if matrix.shape != (n, n) or len(ops) != n:
        raise InvalidArchitectureError(f"an NB101 matrix of shape {matrix.shape} does not fit {len(ops)} ops")
    cell = prune(matrix, list(ops))
    if cell is None:
        raise InvalidArchitectureError("the NAS-Bench-101 cell has no path from input to output")
    matrix, ops = cell
    if ops[0] != INPUT or ops[-1] != OUTPUT:
        raise InvalidArchitectureError(f"NB101 ops must start with {INPUT!r} and end with {OUTPUT!r}, got {ops}")
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
