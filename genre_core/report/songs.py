"""What the report shows of single songs, computed from their audio with the models: the CNN's genre per
slice (the timeline) and, for an unclassified song, a slice before and after GAN translation.

Only a few songs are analysed (the report caps them), so this runs in the driver, one song at a time.
A song whose audio cannot be read raises :class:`~genre_core.errors.TrackError` like everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genre_core.artifacts import load_cnn_bundle
from genre_core.audio import load_audio
from genre_core.config import AudioConfig
from genre_core.features import song_slices
from genre_core.inference import slice_probabilities
from genre_core.models.gan_bundle import load_gan_bundle
from genre_core.report.translations import TranslationExample, translation_example


@dataclass(frozen=True, eq=False)
class SongSlices:
    """One song as the CNN sees it, with its label for the captions."""

    track_id: str
    truth: str | None
    status: str
    label: str | None             # the genre the labels assign (None unless decided)
    slices: np.ndarray            # [n_slices, n_mels, n_frames], as fed to the CNN
    slice_probs: np.ndarray       # [n_slices, n_classes] softmax per slice
    slice_step_s: float           # seconds between the starts of consecutive slices

    @property
    def timeline(self) -> np.ndarray:
        """Genre index with the highest probability, per slice."""
        return self.slice_probs.argmax(axis=1)

    @property
    def vote_shares(self) -> np.ndarray:
        """The song's summed votes as shares (what the labels' ``probabilities`` hold)."""
        votes = self.slice_probs.sum(axis=0)
        return votes / votes.sum()


class SongAnalyser:
    """Loads the CNN bundle (and the GAN bundle, when given) once; analyses songs one at a time."""

    def __init__(self, cnn_url: str, gan_url: str | None = None, device: str = "cpu") -> None:
        self.cnn, self.cnn_meta = load_cnn_bundle(cnn_url, device=device)
        self.classes = list(self.cnn_meta.classes)
        fc = self.cnn_meta.feature_config
        self.feature_cfg, self.audio_cfg = fc, AudioConfig(sample_rate=fc.sample_rate)
        self.generators, self.gan_meta = None, None
        if gan_url is not None:
            self.generators, self.gan_meta = load_gan_bundle(  # type: ignore[misc]
                gan_url, cnn_version=self.cnn_meta.version, feature_version=self.cnn_meta.feature_version,
                device=device)

    @property
    def cnn_version(self) -> str:
        return self.cnn_meta.version

    @property
    def gan_version(self) -> str | None:
        return None if self.gan_meta is None else self.gan_meta.version

    def song(self, track_id: str, audio_uri: str, truth: str | None, status: str, label: str | None) -> SongSlices:
        """Decode and slice the song, run the CNN on every slice (TrackError when the audio is unusable)."""
        audio = load_audio(audio_uri, self.audio_cfg)
        slices = song_slices(audio, self.feature_cfg)
        probs = slice_probabilities(self.cnn, [slices])[0]
        fc = self.feature_cfg
        return SongSlices(track_id=track_id, truth=truth, status=status, label=label, slices=slices,
                          slice_probs=probs, slice_step_s=fc.slice_hop_frames * fc.hop_length / fc.sample_rate)

    def translation(self, song: SongSlices) -> TranslationExample:
        """The middle slice before and after translation, with the votes the refine rule combined (the bundle's
        own refine parameters, so the decision is the one the labelling job makes with this GAN)."""
        if self.generators is None or self.gan_meta is None:
            raise ValueError("no GAN bundle loaded")
        return translation_example(song.track_id, song.truth, song.slices, song.vote_shares, self.generators,
                                   self.cnn, self.classes, self.gan_meta.refine)
