from lightning_nas.data.datamodule import ArchitectureDataModule

__all__ = ["ArchitectureDataModule"]
