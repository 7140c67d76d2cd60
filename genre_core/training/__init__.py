"""Training (no Ray): the slice CNN's loop over any batch iterator (``cnn``; Ray Train feeds it in
``jobs/train_cnn.py``), what the training job's Ray Data stages compute (``data``), the splits (``splits``), the
musicnn genre head (``head``) and the GAN (``gan``)."""

from genre_core.training.cnn import Song, TrainResult, choose_voting, evaluate_songs, split_by_song, train_cnn

__all__ = ["Song", "TrainResult", "choose_voting", "evaluate_songs", "split_by_song", "train_cnn"]
