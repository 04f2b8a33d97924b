"""The NAS-Bench-201 network, layer for layer the benchmark's `TinyNetwork`: stem conv3x3+BN, three
stages of N cells, residual basic blocks between stages, BN-ReLU, global pool, linear; ops are
ReLU-Conv-BN. Parameter counts and FLOPs equal the benchmark's."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lightning_nas.spaces.cell_on_edges.dag import EDGES
from lightning_nas.spaces.cell_on_edges.network import EdgeCell
from lightning_nas.spaces.layers import ClassifierNetwork, ReLUConvBN

#: the op set, in the benchmark's index order
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


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


def _op(name: str, channels: int) -> nn.Module:
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
            layers.append(EdgeCell(genotype, lambda op, src, c=c: _op(OPS[op], c)))
    head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
    return ClassifierNetwork(stem, nn.Sequential(*layers), head, c, num_classes)
