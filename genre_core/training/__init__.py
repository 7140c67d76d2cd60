"""Training loops over in-memory data (no Ray): the slice CNN (``cnn``); the GAN loop comes later."""

from genre_core.training.cnn import (
    Song,
    TrainResult,
    choose_voting,
    evaluate_songs,
    slice_probabilities,
    split_by_song,
    train_cnn,
)

__all__ = [
    "Song", "TrainResult", "choose_voting", "evaluate_songs", "slice_probabilities", "split_by_song",
    "train_cnn",
]
