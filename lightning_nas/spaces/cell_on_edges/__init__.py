"""Cells with one op on each edge of a fixed 4-node DAG (NB201, TNB101 micro): space, cell module, codec."""
from lightning_nas.spaces.cell_on_edges.dag import EDGES, NUM_NODES, ROUTES
from lightning_nas.spaces.cell_on_edges.space import CellOnEdgesSpace

__all__ = ["CellOnEdgesSpace", "EDGES", "NUM_NODES", "ROUTES"]
