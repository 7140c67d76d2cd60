"""genre_core.audio: decoding, resampling, duration cap, and every typed error, on real files in tmp_path."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genre_core.audio import decode_bytes, decode_stream, load_audio, resolve_local_path
from genre_core.config import AudioConfig
from genre_core.errors import (
    DecodeError,
    EmptyAudioError,
    InvalidSamplesError,
    MissingObjectError,
    SilentAudioError,
    TooShortError,
    UnsafePathError,
    UnsupportedCodecError,
    WrongExtensionError,
)

SR = 22050


def sine(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path: Path, data: np.ndarray, sr: int = SR, **kwargs: object) -> Path:
    sf.write(str(path), data, sr, **kwargs)
    return path


def peak_hz(audio: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / sr)[np.argmax(spectrum)])


def test_wav_at_target_rate_is_returned_unchanged(tmp_path: Path) -> None:
    x = sine(440, 1.0, SR)
    path = write(tmp_path / "a.wav", x, subtype="FLOAT")
    for uri in (str(path), f"file://{path}"):
        out = load_audio(uri)
        assert out.dtype == np.float32 and out.ndim == 1 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "PCM_U8"])
def test_integer_wavs_match_libsndfile_float_conversion(tmp_path: Path, subtype: str) -> None:
    x = sine(300, 0.5, SR, amp=0.9)
    path = write(tmp_path / f"{subtype}.wav", x, subtype=subtype)
    expected, _ = sf.read(str(path), dtype="float32")
    np.testing.assert_array_equal(load_audio(str(path)), expected)


def test_44k_stereo_is_resampled_to_22k_mono_with_the_right_peak(tmp_path: Path) -> None:
    left, right = sine(1000, 2.0, 44100), sine(1000, 2.0, 44100, amp=0.3)
    path = write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), sr=44100, subtype="PCM_16")
    out = load_audio(str(path))
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.shape[0] - 2 * SR) <= 2
    assert abs(peak_hz(out, SR) - 1000) < 2
    # mono = channel mean: amplitude (0.5 + 0.3) / 2 in the steady middle
    assert np.abs(out[SR // 2:-SR // 2]).max() == pytest.approx(0.4, abs=0.01)


def test_48k_resampling_preserves_duration_and_frequency(tmp_path: Path) -> None:
    path = write(tmp_path / "a48.flac", sine(3000, 1.5, 48000), sr=48000)
    out = load_audio(str(path), AudioConfig(sample_rate=16000))
    assert abs(out.shape[0] - 24000) <= 2
    assert abs(peak_hz(out, 16000) - 3000) < 2


@pytest.mark.parametrize("ext,tol", [("flac", 1e-4), ("ogg", 0.05), ("mp3", 0.1)])
def test_compressed_round_trip(tmp_path: Path, ext: str, tol: float) -> None:
    if ext.upper() not in sf.available_formats():
        pytest.skip(f"this libsndfile build cannot write {ext}")
    x = sine(440, 2.0, SR)
    path = write(tmp_path / f"a.{ext}", x)
    out = load_audio(str(path))
    assert abs(peak_hz(out, SR) - 440) < 2
    if ext == "flac":  # lossless up to 16-bit quantisation, sample-aligned
        np.testing.assert_allclose(out, x, atol=tol)
    else:  # lossy codecs add encoder delay/padding: compare energy and length
        assert abs(out.shape[0] - x.shape[0]) < 0.1 * SR
        assert np.sqrt(np.mean(out**2)) == pytest.approx(0.5 / np.sqrt(2), abs=tol)


def test_decode_bytes_matches_load_audio(tmp_path: Path) -> None:
    path = write(tmp_path / "a.flac", sine(220, 1.0, 44100), sr=44100)
    np.testing.assert_array_equal(decode_bytes(path.read_bytes(), name="x.flac"), load_audio(str(path)))


def test_max_duration_caps_what_is_read(tmp_path: Path) -> None:
    path = write(tmp_path / "long.wav", sine(440, 5.0, 44100), sr=44100, subtype="PCM_16")
    out = load_audio(str(path), AudioConfig(max_duration_s=2.0))
    assert abs(out.shape[0] - 2 * SR) <= 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingObjectError, match="not found"):
        load_audio(str(tmp_path / "nope.wav"))
    with pytest.raises(MissingObjectError):
        load_audio(f"file://{tmp_path}/nope.wav")


def test_directory_is_not_an_audio_object(tmp_path: Path) -> None:
    with pytest.raises(MissingObjectError, match="not a regular file"):
        load_audio(str(tmp_path))


def test_dotdot_escape_from_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    root.mkdir()
    outside = write(tmp_path / "secret.wav", sine(440, 0.5, SR))
    inside = write(root / "ok.wav", sine(440, 0.5, SR))
    assert load_audio("ok.wav", root=str(root)).shape[0] == SR // 2
    assert load_audio(str(inside), root=str(root)).shape[0] == SR // 2
    for uri in ("../secret.wav", f"{root}/../secret.wav", str(outside), f"file://{outside}"):
        with pytest.raises(UnsafePathError):
            load_audio(uri, root=str(root))


def test_symlink_escaping_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    root.mkdir()
    target = write(tmp_path / "secret.wav", sine(440, 0.5, SR))
    os.symlink(target, root / "link.wav")
    with pytest.raises(UnsafePathError, match="outside root"):
        load_audio(str(root / "link.wav"), root=str(root))


def test_remote_uri_outside_remote_root_is_refused_before_any_io() -> None:
    with pytest.raises(UnsafePathError):
        load_audio("s3://bucket/other/a.wav", root="s3://bucket/catalog")
    with pytest.raises(UnsafePathError):
        load_audio("s3://bucket/catalog/../other/a.wav", root="s3://bucket/catalog")
    with pytest.raises(UnsafePathError):
        resolve_local_path("/tmp/a\x00.wav")


def test_corrupt_bytes_raise_decode_error_with_reason(tmp_path: Path) -> None:
    path = tmp_path / "junk.mp3"
    path.write_bytes(os.urandom(256) * 4)
    with pytest.raises(DecodeError) as info:
        load_audio(str(path))
    assert info.value.kind == "decode_error" and "junk.mp3" in str(info.value)
    assert len(str(info.value)) > len(str(path)) + 5  # carries libsndfile's message


def test_text_file_raises_decode_error() -> None:
    with pytest.raises(DecodeError, match="Format not recognised"):
        decode_bytes(b"this is not audio at all " * 20, name="notes.txt")
    with pytest.raises(DecodeError) as info:
        decode_bytes(b"RIFF" + b"\x00" * 60, name="bad.wav")
    assert str(info.value).startswith("bad.wav: ") and "BytesIO" not in str(info.value)


def test_truncated_wav_header_raises_decode_error(tmp_path: Path) -> None:
    data = write(tmp_path / "a.wav", sine(440, 1.0, SR), subtype="PCM_16").read_bytes()
    with pytest.raises(DecodeError):
        decode_bytes(data[:30], name="cut.wav")  # inside the header


def test_truncated_wav_data_raises_decode_error(tmp_path: Path) -> None:
    data = write(tmp_path / "a.wav", sine(440, 1.0, SR), subtype="PCM_16").read_bytes()
    with pytest.raises(DecodeError, match="truncated"):
        decode_bytes(data[: len(data) // 2], name="cut.wav")


def test_truncated_flac_raises_decode_error(tmp_path: Path) -> None:
    data = write(tmp_path / "a.flac", sine(440, 2.0, SR, amp=0.3) + 0.01).read_bytes()
    with pytest.raises(DecodeError):
        decode_bytes(data[: len(data) // 2], name="cut.flac")


@pytest.mark.parametrize("channels", [1, 2])
def test_16bit_flac_decodes_to_exactly_what_libsndfile_reads(tmp_path: Path, channels: int) -> None:
    rng = np.random.default_rng(channels)
    music = np.stack([sine(220 * (c + 1), 3.0, SR, amp=0.4) + 0.05 * rng.standard_normal(3 * SR).astype(np.float32)
                      for c in range(channels)], axis=1)
    path = write(tmp_path / "a.flac", music, subtype="PCM_16")
    reference = sf.read(str(path), dtype="float32", always_2d=True)[0].mean(axis=1, dtype=np.float32)
    got = load_audio(str(path), AudioConfig(sample_rate=SR))
    assert got.dtype == np.float32 and np.array_equal(got, reference)


def test_flac_with_a_corrupt_frame_is_refused_not_shortened(tmp_path: Path) -> None:
    """dr_flac skips a frame that fails its checksum; the file then goes to libsndfile, which refuses it."""
    data = bytearray(write(tmp_path / "a.flac", sine(440, 4.0, SR, amp=0.3) + 0.01, subtype="PCM_16").read_bytes())
    data[len(data) // 2] ^= 0x5A
    with pytest.raises(DecodeError, match="cut.flac"):
        decode_bytes(bytes(data), name="cut.flac")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(EmptyAudioError) as info:
        load_audio(str(path))
    assert info.value.kind == "empty_audio"
    with pytest.raises(EmptyAudioError):
        decode_bytes(b"")


def test_zero_length_wav(tmp_path: Path) -> None:
    path = write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32))
    assert path.stat().st_size > 0  # a valid header, no frames
    with pytest.raises(EmptyAudioError, match="no audio frames"):
        load_audio(str(path))


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_digital_silence(tmp_path: Path, subtype: str) -> None:
    path = write(tmp_path / "silence.wav", np.zeros(SR, dtype=np.float32), subtype=subtype)
    with pytest.raises(SilentAudioError):
        load_audio(str(path))


def test_quiet_but_not_silent_audio_passes(tmp_path: Path) -> None:
    path = write(tmp_path / "quiet.wav", sine(440, 1.0, SR, amp=1e-4), subtype="FLOAT")
    assert np.abs(load_audio(str(path))).max() == pytest.approx(1e-4, rel=1e-3)


def test_antiphase_stereo_downmixes_to_silence(tmp_path: Path) -> None:
    x = sine(440, 1.0, SR)
    path = write(tmp_path / "anti.wav", np.stack([x, -x], axis=1), subtype="FLOAT")
    with pytest.raises(SilentAudioError):
        load_audio(str(path))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_in_float_wav(tmp_path: Path, bad: float) -> None:
    x = sine(440, 1.0, SR)
    x[1234] = bad
    path = write(tmp_path / "nan.wav", x, subtype="FLOAT")
    with pytest.raises(InvalidSamplesError) as info:
        load_audio(str(path))
    assert info.value.kind == "invalid_samples"


def test_min_seconds(tmp_path: Path) -> None:
    path = write(tmp_path / "short.wav", sine(440, 1.0, 44100), sr=44100)
    assert load_audio(str(path)).shape[0] > 0  # default: not checked
    assert load_audio(str(path), min_seconds=0.9).shape[0] > 0
    with pytest.raises(TooShortError):
        load_audio(str(path), min_seconds=1.5)


def test_dotdot_and_relative_paths_are_refused_without_a_root(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    inside = write(tmp_path / "a" / "ok.wav", sine(440, 0.5, SR))
    assert load_audio(str(inside)).shape[0] == SR // 2
    with pytest.raises(UnsafePathError, match="'..' segments"):
        load_audio(f"{tmp_path}/a/../a/ok.wav")  # even one that would land inside
    with pytest.raises(UnsafePathError, match="relative audio_uri"):
        load_audio("a/ok.wav")
    with pytest.raises(UnsafePathError, match="'..' segments"):
        load_audio("s3://bucket/a/../b.wav")


def test_wrong_extension(tmp_path: Path) -> None:
    flac = write(tmp_path / "a.flac", sine(440, 1.0, SR)).read_bytes()
    (tmp_path / "song.mp3").write_bytes(flac)
    with pytest.raises(WrongExtensionError, match="content is FLAC but the name says '.mp3'") as info:
        load_audio(str(tmp_path / "song.mp3"))
    assert info.value.kind == "wrong_extension"
    with pytest.raises(WrongExtensionError, match="'.jpg' is not an audio file extension"):
        load_audio(str(tmp_path / "cover.jpg"))  # refused before any I/O: the file need not exist
    (tmp_path / "noext").write_bytes(flac)
    assert load_audio(str(tmp_path / "noext")).shape[0] == SR  # no extension: the content decides
    (tmp_path / "UPPER.FLAC").write_bytes(flac)
    assert load_audio(str(tmp_path / "UPPER.FLAC")).shape[0] == SR


def _wav_with_codec(tag: int, payload: bytes) -> bytes:
    fmt = struct.pack("<HHIIHHH", tag, 1, SR, SR * 2, 2, 16, 0)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_unsupported_codecs_are_named() -> None:
    payload = bytes(range(256)) * 40
    with pytest.raises(UnsupportedCodecError, match=r"codec tag 0x2000 \(AC-3\)") as info:
        decode_bytes(_wav_with_codec(0x2000, payload), name="x.wav")
    assert info.value.kind == "unsupported_codec"
    with pytest.raises(UnsupportedCodecError, match="MP4/M4A"):
        decode_bytes(struct.pack(">I", 24) + b"ftypM4A " + bytes(16) + payload, name="x.m4a")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, SR, SR * 2, 2, 16, 22, 16, 4) + bytes(16)  # extensible, unknown GUID
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 4096) + payload[:4096]
    with pytest.raises(UnsupportedCodecError, match="unimplemented format"):
        decode_bytes(b"RIFF" + struct.pack("<I", len(body)) + body, name="x.wav")
    with pytest.raises(DecodeError, match="Format not recognised"):  # plain junk stays a decode error
        decode_bytes(b"\x00junk" + payload, name="x.flac")


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="this libsndfile build cannot write MP3")
def test_truncated_mp3_with_a_xing_header_is_an_error(tmp_path: Path) -> None:
    data = write(tmp_path / "a.mp3", sine(440, 4.0, SR)).read_bytes()
    assert b"Xing" in data[:64] or b"Info" in data[:64]  # the length is exact, so a cut can be recognised
    with pytest.raises(DecodeError, match="truncated stream"):
        decode_bytes(data[: len(data) // 2], name="cut.mp3")
    id3 = b"ID3\x04\x00\x00\x00\x00\x01\x00" + bytes(128)  # an ID3v2 tag (128 bytes) before the first frame
    with pytest.raises(DecodeError, match="truncated stream"):
        decode_bytes(id3 + data[: len(data) // 2], name="cut.mp3")
    assert abs(decode_bytes(id3 + data, name="a.mp3").shape[0] - 4 * SR) < SR // 10


class _FailingReader(io.BytesIO):
    """A storage stream whose reads fail from byte ``limit`` on (a connection that dies mid-object)."""

    def __init__(self, data: bytes, limit: int) -> None:
        super().__init__(data)
        self.limit = limit

    def read(self, size: int = -1) -> bytes:
        end = len(self.getbuffer()) if size < 0 else self.tell() + size
        if end > self.limit:
            raise ConnectionResetError("connection reset by peer")
        return super().read(size)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def test_a_storage_error_mid_read_propagates_instead_of_looking_truncated(tmp_path: Path) -> None:
    data = write(tmp_path / "a.wav", sine(440, 2.0, SR), subtype="PCM_16").read_bytes()
    assert decode_stream(_FailingReader(data, len(data) + 1), name="a.wav").shape[0] == 2 * SR
    with pytest.raises(ConnectionResetError):
        decode_stream(_FailingReader(data, len(data) // 2), name="a.wav")
