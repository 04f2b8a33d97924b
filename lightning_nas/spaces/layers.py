"""Network layers shared by the spaces' builders, and the skeleton every builder returns.

Every network exposes `features(x)` (the map before global pooling, what Zen-score reads) and
`forward(x)` (logits): `ClassifierNetwork` gives both.
"""
from __future__ import annotations


import torch
from torch import nn


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


class FactorizedReduce(nn.Module):
    """Skip connection across a stride-2 edge: two offset 1x1 convs, concatenated, then BN."""

    def __init__(self, c_in: int, c_out: int, stride: int, affine: bool = True):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c, 1, stride=stride, bias=False) for c in (c_out // 2, c_out - c_out // 2)
        )
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.convs[0](x), self.convs[1](shifted)], dim=1))


class GlobalMeanPool(nn.Module):
    """Global average pooling to [B, C, 1, 1] taken as a function of the network, as NB101's model
    does (`torch.mean`): the NASLib FLOPs convention counts pooling layers, not this."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(x, 1)


class ClassifierNetwork(nn.Module):
    """stem -> body -> `head` (normalisation before pooling, if any) -> global pool -> linear."""

    def __init__(self, stem: nn.Module, body: nn.Module, head: nn.Module, channels: int, num_classes: int,
                 pool: nn.Module | None = None):
        super().__init__()
        self.stem, self.body, self.head = stem, body, head
        self.pool = nn.AdaptiveAvgPool2d(1) if pool is None else pool
        self.classifier = nn.Linear(channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


class SkipsDeadBranches(nn.Module):
    """A cell that leaves out branches whose value cannot reach its output (same output, less work).
    Proxies that read activations or BN statistics (NWOT, Zen) and FLOPs must see what the
    benchmarks' own code runs: with `every_op` set (`lightning_nas.spaces.flops.compute_every_op`)
    the cell computes every branch."""

    def __init__(self) -> None:
        super().__init__()
        self.every_op = False


def count_parameters(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters() if p.requires_grad)
