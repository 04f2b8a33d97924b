"""The DARTS / NAS-Bench-301 space's home: genotype rules, the space and its G-VAE codec.

The network builder (DARTS macro skeleton) joins as `network.py` beside them; the space offers it
through its `network` method once that is defined."""
from lightning_nas.spaces.darts.genotype import CELLS, CONCAT, NUM_INPUTS, NUM_NODES, OPS, Genotype
from lightning_nas.spaces.darts.space import DARTS, DARTSSpace

__all__ = ["DARTS", "DARTSSpace", "Genotype", "OPS", "CELLS", "CONCAT", "NUM_INPUTS", "NUM_NODES"]
