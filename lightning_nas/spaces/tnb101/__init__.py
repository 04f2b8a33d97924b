"""TransNAS-Bench-101 micro's home: the space and its `MacroNet` (the cell and codec are the cell-on-edges ones)."""
from lightning_nas.spaces.tnb101.space import TNB101_MICRO, TNB101MicroSpace

__all__ = ["TNB101_MICRO", "TNB101MicroSpace"]
