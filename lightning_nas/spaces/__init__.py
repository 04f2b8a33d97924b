"""Search spaces, one home per space (the space, its network, its G-VAE codec); importing this
package registers the built-in ones. The protocol and the registry: `lightning_nas.spaces.base`;
a space of your own: docs/search_spaces.md."""
from lightning_nas.spaces.base import (
    CAPABILITIES,
    ENTRY_POINT_GROUP,
    Architecture,
    InvalidArchitectureError,
    SearchSpace,
    get_space,
    register,
    space_reference,
)
from lightning_nas.spaces.choices import ChoiceSpace
from lightning_nas.spaces.darts import DARTS
from lightning_nas.spaces.layerwise import LayerwiseSpace
from lightning_nas.spaces.nb101 import NB101
from lightning_nas.spaces.nb201 import NB201
from lightning_nas.spaces.tnb101 import TNB101_MICRO

__all__ = [
    "Architecture", "CAPABILITIES", "ChoiceSpace", "ENTRY_POINT_GROUP", "InvalidArchitectureError",
    "LayerwiseSpace", "SearchSpace", "get_space", "register", "space_reference",
    "DARTS", "NB101", "NB201", "TNB101_MICRO",
]
