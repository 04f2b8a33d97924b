"""The processes of one search: every rank runs the same strategy from the same seed; rank 0 writes
the files, and candidate evaluations can be shared out among the ranks (Lightning's DDP launches them)."""
from __future__ import annotations

from typing import Any

import torch.distributed as dist


class Ranks:
    """One process unless torch.distributed is initialised (Lightning's DDP strategy did it)."""

    def __init__(self) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if distributed else 0
        self.size = dist.get_world_size() if distributed else 1

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if self.size == 1:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out
