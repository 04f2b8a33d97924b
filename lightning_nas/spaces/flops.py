"""FLOPs of a network under a named benchmark convention, counted from one forward pass.

The benchmarks' published FLOPs come from two counters, and they disagree by what they count:

- ``"naslib"``: NAS-Bench-Suite-Zero (NASLib's zero-cost benchmark: its `flops` proxy and the
  `flops_m` of the NB101, NB201, NB301 and TransNAS tables it published). NASLib runs
  tensorwatch's `ModelStats` (torchstat rules) over the leaf modules of one eval-mode forward pass
  of a one-image batch: Conv2d k_h*k_w*C_in*C_out/groups per output position (+1 with a bias);
  BatchNorm2d 2 per element (1 without affine); ReLU 1 per element; Max/AvgPool2d k*k per output
  element; AdaptiveAvgPool2d (rows+1)*(cols+1) per output element and channel, over each output's
  window; Linear in*out (no bias). Everything else is free: identity, sums, concatenation, and
  functional ops (so NB101's global `torch.mean` is free, while NB201's and NB301's pooling layer
  is not: see `GlobalMeanPool`).
- ``"xautodl"``: NAS-Bench-201 / NATS-Bench's own `flop` field (xautodl `get_model_infos`):
  multiply-accumulates of Conv2d and Linear only, biases included.

Both count every op the benchmark's network computes, including ops whose result never reaches
the output (NB201's cells compute every node): a module that skips such ops is a
`SkipsDeadBranches`, and counting sets its `every_op`. Counts are per image, in millions (1e6).
tensorwatch keeps the count of a module's last call; here every call counts, which is the same
for networks that call each module once, as all of ours do.
"""
from __future__ import annotations

import itertools
import math
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.spaces.layers import SkipsDeadBranches


Rule = Callable[[nn.Module, torch.Tensor, torch.Tensor], int]


def _conv(m: nn.Conv2d, _x: torch.Tensor, y: torch.Tensor) -> int:
    kh, kw = m.kernel_size
    per_position = kh * kw * m.in_channels * m.out_channels // m.groups
    bias = m.out_channels if m.bias is not None else 0
    return (per_position + bias) * y.shape[-2] * y.shape[-1]


def _batchnorm(m: nn.BatchNorm2d, x: torch.Tensor, _y: torch.Tensor) -> int:
    return x[0].numel() * (2 if m.affine else 1)


def _elementwise(_m: nn.Module, x: torch.Tensor, _y: torch.Tensor) -> int:
    return x[0].numel()


def _pool(m: nn.MaxPool2d | nn.AvgPool2d, _x: torch.Tensor, y: torch.Tensor) -> int:
    kh, kw = (m.kernel_size, m.kernel_size) if isinstance(m.kernel_size, int) else m.kernel_size
    return kh * kw * y[0].numel()


def _adaptive_pool(_m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    def spans(size: int, out: int) -> list[int]:
        return [math.ceil((i + 1) * size / out) - math.floor(i * size / out) + 1
                for i in range(out)]

    rows, cols = spans(x.shape[-2], y.shape[-2]), spans(x.shape[-1], y.shape[-1])
    windows = sum(r * c for r, c in itertools.product(rows, cols))
    return x.shape[1] * windows


def _linear(m: nn.Linear, _x: torch.Tensor, _y: torch.Tensor) -> int:
    return m.in_features * m.out_features


def _linear_with_bias(m: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> int:
    return _linear(m, x, y) + (m.out_features if m.bias is not None else 0)


#: per convention, (module types, rule) in order; modules of no listed type cost nothing
CONVENTIONS: dict[str, tuple[tuple[type | tuple[type, ...], Rule], ...]] = {
    "naslib": (
        (nn.Conv2d, _conv),
        (nn.BatchNorm2d, _batchnorm),
        (nn.ReLU, _elementwise),
        ((nn.MaxPool2d, nn.AvgPool2d), _pool),
        (nn.AdaptiveAvgPool2d, _adaptive_pool),
        (nn.Linear, _linear),
    ),
    "xautodl": (
        (nn.Conv2d, _conv),
        (nn.Linear, _linear_with_bias),
    ),
}


def count_flops(
    network: nn.Module, input_shape: Sequence[int], convention: str = "naslib"
) -> float:
    """MFLOPs of `network` for one input of `input_shape` ([C, H, W]) under `convention`; every op
    is computed while counting. Works on the meta device (shapes only), and leaves the network's
    train/eval mode and `every_op` flags as they were."""
    try:
        rules = CONVENTIONS[convention]
    except KeyError:
        known = ", ".join(CONVENTIONS)
        raise ConfigError(f"unknown FLOPs convention {convention!r}; known: {known}") from None
    total = 0

    def count(rule: Rule, m: nn.Module, inputs: tuple[torch.Tensor, ...], y: torch.Tensor) -> None:
        nonlocal total
        total += rule(m, inputs[0], y)

    handles = []
    for m in network.modules():
        rule = next((r for types, r in rules if isinstance(m, types)), None)
        if rule is not None:
            handles.append(m.register_forward_hook(lambda m, i, o, rule=rule: count(rule, m, i, o)))
    training = network.training
    first = next(itertools.chain(network.parameters(), network.buffers()), None)
    x = torch.zeros(1, *input_shape, device=first.device if first is not None else None)
    try:
        with _computing_every_op(network), torch.no_grad():
            network.eval()
            network(x)
    finally:
        for h in handles:
            h.remove()
        network.train(training)
    return total / 1e6


def compute_every_op(network: nn.Module) -> nn.Module:
    """Make every module of `network` that skips dead ops compute them (as the benchmarks' own
    networks do); returns `network`."""
    for m in network.modules():
        if isinstance(m, SkipsDeadBranches):
            m.every_op = True
    return network


@contextmanager
def _computing_every_op(network: nn.Module) -> Iterator[None]:
    flagged = [(m, m.every_op) for m in network.modules() if isinstance(m, SkipsDeadBranches)]
    compute_every_op(network)
    try:
        yield
    finally:
        for m, value in flagged:
            m.every_op = value
