"""lightning-nas: predictor-guided neural architecture search on PyTorch Lightning."""
__version__ = "0.1.0"
