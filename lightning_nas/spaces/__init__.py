"""Search spaces; importing this package registers the built-in ones."""
from lightning_nas.spaces.base import Architecture, InvalidArchitectureError, SearchSpace, get_space
from lightning_nas.spaces.nb101 import NB101
from lightning_nas.spaces.darts import DARTS
from lightning_nas.spaces.nb201 import NB201
from lightning_nas.spaces.tnb101 import TNB101_MICRO

__all__ = ["Architecture", "InvalidArchitectureError", "SearchSpace", "get_space", "NB101", "NB201", "TNB101_MICRO", "DARTS"]
