"""NAS-Bench-201's home: the space, its `TinyNetwork`, and (shared with TNB101) its cell and codec."""
from lightning_nas.spaces.nb201.space import NB201, NB201Space

__all__ = ["NB201", "NB201Space"]
