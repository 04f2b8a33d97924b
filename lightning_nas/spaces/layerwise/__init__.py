"""The generic layer-wise space: positions with their own choices, a default network skeleton
around a user-given block factory, and a G-VAE codec."""
from lightning_nas.spaces.layerwise.space import LayerwiseSpace

__all__ = ["LayerwiseSpace"]
