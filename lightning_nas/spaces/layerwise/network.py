"""The default macro skeleton of a layer-wise space: stem, one block per position, pool, linear."""
from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.spaces.layers import ClassifierNetwork


def layerwise_network(
    chosen: Sequence[str],
    factory: Callable[[int, str, int, int, int], nn.Module],
    factory_name: str,
    num_classes: int,
    in_channels: int,
    stem_channels: int,
    widths: Sequence[int],
    strides: Sequence[int],
) -> ClassifierNetwork:
    """`factory(position, choice, c_in, c_out, stride)` builds the block of each position."""
    stem = nn.Sequential(
        nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(stem_channels),
        nn.ReLU(inplace=False),
    )
    blocks = []
    c_in = stem_channels
    for position, (choice, c_out, stride) in enumerate(zip(chosen, widths, strides)):
        block = factory(position, choice, c_in, c_out, stride)
        if not isinstance(block, nn.Module):
            raise ConfigError(
                f"block factory {factory_name} returned a {type(block).__name__} for position {position}, "
                f"choice {choice!r}: it must return a torch.nn.Module"
            )
        blocks.append(block)
        c_in = c_out
    return ClassifierNetwork(stem, nn.Sequential(*blocks), nn.Identity(), c_in, num_classes)
