"""Neural network models: the slice classifier (``cnn``); the GAN lives in ``gan`` later."""

from genre_core.models.cnn import SliceCNN, pick_device

__all__ = ["SliceCNN", "pick_device"]
