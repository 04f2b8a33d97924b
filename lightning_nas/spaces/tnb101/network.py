"""The TransNAS-Bench-101 micro network: the benchmark's `MacroNet` backbone "64-41414" (two-conv
stride-4 stem, five stages of two cells; 4 = halve the resolution and double the channels) with
the classification decoder (global pool, linear)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lightning_nas.spaces.cell_on_edges.dag import EDGES
from lightning_nas.spaces.cell_on_edges.network import EdgeCell
from lightning_nas.spaces.layers import ClassifierNetwork, FactorizedReduce, ReLUConvBN

#: the op set, in the benchmark's index order
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3")
MACRO = "41414"  # the micro benchmark's fixed macro skeleton: 1 = keep, 2 = x2 channels, 3 = /2 size, 4 = both


class TNB101Cell(EdgeCell):
    """The micro cell; the first cell of a stage may change resolution and width on its input edges."""

    def __init__(self, genotype: Sequence[int], c_in: int, c_out: int, stride: int):
        self.stride, self.c_out = stride, c_out

        def make_op(op: int, src: int) -> nn.Module:
            return _op(op, c_in if src == 0 else c_out, c_out, stride if src == 0 else 1)

        super().__init__(genotype, make_op)

    def zero_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        # TransNAS's Zero op: (H + 1) // stride for a strided edge
        b, _, h, w = x.shape
        return (b, self.c_out, (h + self.stride - 1) // self.stride, (w + self.stride - 1) // self.stride)


def _op(op: int, c_in: int, c_out: int, stride: int) -> nn.Module:
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
    for code in MACRO:
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
