"""NAS-Bench-101's home: the space, its cell enumeration and hash, its network and its G-VAE codec."""
from lightning_nas.spaces.nb101.space import NB101, PATH_SLOTS, NB101Space, genotype_matrix

__all__ = ["NB101", "NB101Space", "PATH_SLOTS", "genotype_matrix"]
