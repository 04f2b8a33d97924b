"""One featurisation for every predictor: a PyG `Data` with the graph and, where the space has
one, the path encoding."""
from __future__ import annotations

from typing import Sequence

import torch
from torch_geometric.data import Batch, Data

from lightning_nas.spaces.base import Architecture, SearchSpace


def to_data(space: SearchSpace, a: Architecture, y: float | None = None, canonical: bool = False) -> Data:
    """`canonical`: featurise the `representative` of `a`, so that equivalent cells look alike."""
    if canonical:
        a = space.representative(a)
    data = space.to_graph(a)
    if space.supports("path_encoding"):
        data.path = torch.as_tensor(space.path_encoding(a)).unsqueeze(0)
    if y is not None:
        data.y = torch.tensor([y], dtype=torch.float32)
    return data


def to_batch(space: SearchSpace, archs: Sequence[Architecture], y: Sequence[float] | None = None,
             canonical: bool = False) -> Batch:
    ys = [None] * len(archs) if y is None else y
    return Batch.from_data_list([to_data(space, a, t, canonical) for a, t in zip(archs, ys)])
