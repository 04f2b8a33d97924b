"""The fixed 4-node DAG of the cell-on-edges spaces (what the space, its network and its codec share)."""
from __future__ import annotations

EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # (source, target)
NUM_NODES = 4
# the input->output routes through the cell, as edge indices
ROUTES: tuple[tuple[int, ...], ...] = ((3,), (0, 4), (1, 5), (0, 2, 5))
