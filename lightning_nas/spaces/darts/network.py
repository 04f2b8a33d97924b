"""The DARTS network NAS-Bench-301 trains: a stem, then normal and reduction cells of one genotype.

Macro skeleton (Liu et al., 2019, `NetworkCIFAR`): a 3x3 conv stem of 3C channels; `layers` cells,
those at 1/3 and 2/3 of the depth reduce (stride 2 on the edges leaving the cell inputs, channels
doubled); each cell preprocesses c_{k-2} and c_{k-1} to C channels with ReLU-conv1x1-BN, or with a
FactorizedReduce when the previous cell reduced, and concatenates its four nodes (4C channels);
then global average pooling and a linear classifier. NAS-Bench-301 trains C = 32, 8 cells, with an
auxiliary head after the second reduction cell (`automl/nasbench301`,
`data_generation/configs/config_0.json`: init_channels 32, layers 8, auxiliary True).

Ops: sep_conv = (ReLU, depthwise, pointwise, BN) twice, the first depthwise strided; dil_conv =
ReLU, dilated depthwise (dilation 2), pointwise, BN; pools 3x3 (average excludes padding); skip is
the identity, or a FactorizedReduce on a stride-2 edge.

Two variants, chosen by `affine` and `pool_bn`:
- NASLib's NB301 network (the default): BN inside cell ops without affine parameters, pools
  followed by a BN (as in the DARTS search network). The `params_m` / `flops_m` columns and the
  zero-cost scores of NAS-Bench-Suite-Zero's NB301 table were computed on this network (NASLib
  `search_spaces/nasbench301/graph.py`); its parameter count and FLOPs ("naslib" convention of
  `lightning_nas.spaces.flops`) equal theirs for every cell.
- DARTS's evaluation network (`affine=True, pool_bn=False`, quark0/darts `cnn/model.py`): affine
  BN in every op, bare pools.
Neither count includes the auxiliary head: NASLib's counter sees only the modules an eval-mode
forward runs, and DARTS's count leaves out parameters named `auxiliary`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.spaces.darts.genotype import Genotype
from lightning_nas.spaces.layers import FactorizedReduce, ReLUConvBN

STEM_MULTIPLIER = 3
AUX_POOL, AUX_STRIDE = 5, 3  # DARTS's CIFAR auxiliary head: 5x5 average pool, stride 3


def _relu_depthwise_pointwise_bn(
    c: int, kernel: int, stride: int, dilation: int, affine: bool
) -> list[nn.Module]:
    padding = dilation * (kernel - 1) // 2
    return [
        nn.ReLU(inplace=False),
        nn.Conv2d(c, c, kernel, stride, padding, dilation=dilation, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c, affine=affine),
    ]


def darts_op(
    name: str, c: int, stride: int, affine: bool = False, pool_bn: bool = True
) -> nn.Module:
    """One DARTS op on `c` channels (`stride` 2 on the input edges of a reduction cell)."""
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, 2, affine)
    if name in ("sep_conv_3x3", "sep_conv_5x5"):
        k = int(name[-1])
        return nn.Sequential(
            *_relu_depthwise_pointwise_bn(c, k, stride, 1, affine),
            *_relu_depthwise_pointwise_bn(c, k, 1, 1, affine),
        )
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        return nn.Sequential(*_relu_depthwise_pointwise_bn(c, int(name[-1]), stride, 2, affine))
    if name == "max_pool_3x3":
        pool: nn.Module = nn.MaxPool2d(3, stride=stride, padding=1)
    elif name == "avg_pool_3x3":
        pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    else:
        raise ConfigError(f"unknown DARTS op {name!r}")
    return nn.Sequential(pool, nn.BatchNorm2d(c, affine=False)) if pool_bn else pool


# --- cells and network ----------------------------------------------------------------------------
class DARTSCell(nn.Module):
    """Node i sums two edges `(op, input)`; inputs 0, 1 are the preprocessed c_{k-2}, c_{k-1}."""

    def __init__(
        self,
        edges: Sequence[tuple[str, int]],
        concat: Sequence[int],
        c_prev_prev: int,
        c_prev: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
        affine: bool,
        pool_bn: bool,
    ):
        super().__init__()
        self.preprocess0: nn.Module = (
            FactorizedReduce(c_prev_prev, c, 2) if reduction_prev
            else ReLUConvBN(c_prev_prev, c, 1, 1, 0)
        )
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0)
        self.reduction = reduction
        self.inputs = tuple(src for _, src in edges)
        self.concat = tuple(concat)
        self.ops = nn.ModuleList(
            darts_op(name, c, 2 if reduction and src < 2 else 1, affine, pool_bn)
            for name, src in edges
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(0, len(self.ops), 2):
            a, b = self.inputs[i], self.inputs[i + 1]
            states.append(self.ops[i](states[a]) + self.ops[i + 1](states[b]))
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS's CIFAR auxiliary classifier; its last conv spans the pooled map (2x2 at 32x32)."""

    def __init__(self, c_in: int, pooled: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(AUX_POOL, stride=AUX_STRIDE, padding=0, count_include_pad=False),
            nn.Conv2d(c_in, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, pooled, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DARTSNetwork(nn.Module):
    """`features(x)` is the map before global pooling, `forward(x)` the logits; with an auxiliary
    head, `forward_with_auxiliary(x)` also returns its logits (DARTS weighs their loss by 0.4)."""

    def __init__(
        self,
        stem: nn.Module,
        cells: Sequence[DARTSCell],
        auxiliary_at: int | None,
        auxiliary: AuxiliaryHead | None,
        channels: int,
        num_classes: int,
    ):
        super().__init__()
        self.stem = stem
        self.cells = nn.ModuleList(cells)
        self.auxiliary_at = auxiliary_at
        self.auxiliary = auxiliary
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def _cells(self, x: torch.Tensor, tap: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        s0 = s1 = self.stem(x)
        tapped = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == tap:
                tapped = s1
        return s1, tapped

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._cells(x, None)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))

    def forward_with_auxiliary(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.auxiliary is None:
            raise ValueError("this DARTS network has no auxiliary head (build with auxiliary=True)")
        out, tapped = self._cells(x, self.auxiliary_at)
        return self.classifier(self.pool(out).flatten(1)), self.auxiliary(tapped)


def darts_network(
    genotype: Genotype,
    num_classes: int = 10,
    channels: int = 32,
    layers: int = 8,
    input_size: int = 32,
    in_channels: int = 3,
    auxiliary: bool = False,
    affine: bool = False,
    pool_bn: bool = True,
) -> DARTSNetwork:
    """The DARTS network of a genotype; defaults are NB301's (C = 32, 8 cells, CIFAR-10
    32x32). `input_size` sizes the auxiliary head (the body takes any size); NB301 trains with the
    head (`auxiliary=True`), its counts leave it out. `affine` / `pool_bn`: see the module doc."""
    if layers < 1 or channels < 1:
        raise ConfigError(
            f"a DARTS network needs layers >= 1 and channels >= 1, got {layers} and {channels}"
        )
    c = STEM_MULTIPLIER * channels
    stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
    reductions = (layers // 3, 2 * layers // 3)
    c_prev_prev, c_prev, c = c, c, channels
    cells: list[DARTSCell] = []
    size, reduction_prev, tapped_channels, tapped_size = input_size, False, 0, 0
    for i in range(layers):
        reduction = i in reductions
        if reduction:
            c, size = 2 * c, (size + 1) // 2
        edges, concat = (
            (genotype.reduce, genotype.reduce_concat) if reduction
            else (genotype.normal, genotype.normal_concat)
        )
        cell = DARTSCell(
            edges, concat, c_prev_prev, c_prev, c, reduction, reduction_prev, affine, pool_bn
        )
        cells.append(cell)
        c_prev_prev, c_prev, reduction_prev = c_prev, len(cell.concat) * c, reduction
        if i == reductions[1]:
            tapped_channels, tapped_size = c_prev, size
    head = None
    if auxiliary:
        if tapped_size < AUX_POOL:
            raise ConfigError(
                f"the DARTS auxiliary head pools {AUX_POOL}x{AUX_POOL} windows of the map after "
                f"the second reduction cell, {tapped_size}x{tapped_size} at input_size "
                f"{input_size}: use input_size >= 17 or auxiliary=False"
            )
        pooled = (tapped_size - AUX_POOL) // AUX_STRIDE + 1
        head = AuxiliaryHead(tapped_channels, pooled, num_classes)
    tap = reductions[1] if auxiliary else None
    return DARTSNetwork(stem, cells, tap, head, c_prev, num_classes)
