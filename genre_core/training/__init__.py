"""Training loops over in-memory data (no Ray): the slice CNN (``cnn``), the musicnn genre head (``head``) and
the GAN (``gan``)."""

from genre_core.training.cnn import Song, TrainResult, choose_voting, evaluate_songs, split_by_song, train_cnn

__all__ = ["Song", "TrainResult", "choose_voting", "evaluate_songs", "split_by_song", "train_cnn"]
