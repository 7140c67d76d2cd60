"""Recording conditions applied after synthesis: room reverb, EQ, an "old recording" band limit, noise,
compression and gain. Each effect is a pure numpy/scipy function of (audio, params); ``draw_effects`` picks a
seeded set of effects for one song from a named preset and ``apply_effects`` runs them in a fixed order.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

# Probability of each effect per song, and the ranges its parameters are drawn from.
PRESETS: dict[str, dict[str, float]] = {
    "none": {},
    # The default corpus: mixed but mostly clean recordings.
    "default": {"reverb": 0.4, "eq": 0.5, "old": 0.08, "noise": 0.25, "compress": 0.3},
    # The shifted split (same soundfonts, harsher chain): rooms, EQ, noise on most songs, at times an old transfer.
    "shifted": {"reverb": 0.6, "eq": 0.7, "old": 0.2, "noise": 0.5, "compress": 0.4},
}


def draw_effects(preset: str, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """Seeded choice of effects and their parameters for one song."""
    if preset not in PRESETS:
        raise ValueError(f"unknown effects preset {preset!r}; choose one of {sorted(PRESETS)}")
    harsh = preset == "shifted"
    chosen: dict[str, dict[str, float]] = {}
    probs = PRESETS[preset]
    if rng.random() < probs.get("reverb", 0):
        chosen["reverb"] = {"rt60": float(rng.uniform(0.3, 1.8 if harsh else 1.4)),
                            "wet": float(rng.uniform(0.1, 0.35 if harsh else 0.3))}
    if rng.random() < probs.get("eq", 0):
        span = 7.0 if harsh else 5.0
        chosen["eq"] = {"low_db": float(rng.uniform(-span, span)), "high_db": float(rng.uniform(-span, span))}
    if rng.random() < probs.get("old", 0):
        chosen["old"] = {"low_hz": float(rng.uniform(150, 400)), "high_hz": float(rng.uniform(2500, 5000))}
    if rng.random() < probs.get("noise", 0):
        chosen["noise"] = {"snr_db": float(rng.uniform(18 if harsh else 25, 40 if harsh else 45))}
    if rng.random() < probs.get("compress", 0):
        chosen["compress"] = {"drive": float(rng.uniform(1.5, 4.0 if harsh else 3.0))}
    chosen["gain"] = {"db": float(rng.uniform(-12.0, -1.0))}
    return chosen


def reverb(x: np.ndarray, sr: int, rt60: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room: exponentially decaying noise with ``rt60`` seconds of decay."""
    n = int(sr * min(rt60, 2.5))
    t = np.arange(n) / sr
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir /= np.sqrt(np.sum(ir**2)) + 1e-12
    tail = signal.fftconvolve(x, ir)[: len(x)]
    return (1 - wet) * x + wet * tail


def shelf_eq(x: np.ndarray, sr: int, low_db: float, high_db: float) -> np.ndarray:
    """Tilt the spectrum: ``low_db`` below ~250 Hz and ``high_db`` above ~3 kHz."""
    low = signal.sosfilt(signal.butter(2, 250, "lowpass", fs=sr, output="sos"), x)
    high = signal.sosfilt(signal.butter(2, 3000, "highpass", fs=sr, output="sos"), x)
    return x + (10 ** (low_db / 20) - 1) * low + (10 ** (high_db / 20) - 1) * high


def old_recording(x: np.ndarray, sr: int, low_hz: float, high_hz: float) -> np.ndarray:
    """Band-limit like an old transfer: high-pass at ``low_hz`` and low-pass at ``high_hz``."""
    sos = signal.butter(4, [low_hz, high_hz], "bandpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add pink-ish hiss at ``snr_db`` below the signal's RMS."""
    white = rng.standard_normal(len(x))
    pink = signal.lfilter([0.049922, -0.095993, 0.050612, -0.004408], [1, -2.494956, 2.017265, -0.522189], white)
    rms = np.sqrt(np.mean(x**2)) + 1e-9
    pink *= rms / (np.sqrt(np.mean(pink**2)) + 1e-12) / 10 ** (snr_db / 20)
    return x + pink


def compress(x: np.ndarray, drive: float) -> np.ndarray:
    """Soft-knee saturation: louder quiet parts, squashed peaks."""
    peak = np.max(np.abs(x)) + 1e-9
    return np.tanh(drive * x / peak) / np.tanh(drive) * peak


def apply_effects(x: np.ndarray, sr: int, effects: dict[str, dict[str, float]], seed: int) -> np.ndarray:
    """Run the chosen effects in a fixed order and return float32 audio peaking at most at 0.99."""
    rng = np.random.default_rng(seed)
    y = x.astype(np.float64)
    if "reverb" in effects:
        y = reverb(y, sr, rng=rng, **effects["reverb"])
    if "eq" in effects:
        y = shelf_eq(y, sr, **effects["eq"])
    if "old" in effects:
        y = old_recording(y, sr, **effects["old"])
    if "compress" in effects:
        y = compress(y, **effects["compress"])
    if "noise" in effects:
        y = add_noise(y, rng=rng, **effects["noise"])
    peak = np.max(np.abs(y)) + 1e-9
    y = y / peak * 0.98 * 10 ** (effects.get("gain", {}).get("db", 0.0) / 20)
    return y.astype(np.float32)
