"""The simple song-level baseline a CNN must beat: mean and std of 20 MFCCs + logistic regression.

Used to check that the demo corpus is neither trivial nor impossible, and as the reference figure that the
slice-and-vote CNN is compared against on the same split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_MFCC = 20


def mfcc_stats(audio: np.ndarray, sample_rate: int = 22050) -> np.ndarray:
    """Song descriptor: per-coefficient mean and standard deviation of 20 MFCCs (40 numbers)."""
    import librosa

    mfcc = librosa.feature.mfcc(y=audio, sr=sample_rate, n_mfcc=N_MFCC)
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]).astype(np.float32)


@dataclass(frozen=True)
class BaselineResult:
    accuracy: float
    classes: list[str]
    confusion: list[list[int]]   # rows: true genre, columns: predicted genre
    n_train: int
    n_test: int


def fit_and_score(
    x_train: np.ndarray, y_train: list[str], x_test: np.ndarray, y_test: list[str], seed: int = 0
) -> BaselineResult:
    """Standardise, fit a multinomial logistic regression on the train songs, score the test songs."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
    model.fit(x_train, y_train)
    predicted = model.predict(x_test)
    classes = sorted(set(y_train) | set(y_test))
    return BaselineResult(
        accuracy=float(np.mean(predicted == np.asarray(y_test))),
        classes=classes,
        confusion=confusion_matrix(y_test, predicted, labels=classes).tolist(),
        n_train=len(y_train),
        n_test=len(y_test),
    )
