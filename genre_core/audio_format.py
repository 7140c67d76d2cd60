"""What an audio file claims to be (its name) and what it is (its first bytes), for specific per-track errors.

* :func:`check_extension` refuses, before any I/O, a name whose extension is not an audio one (``cover.jpg``).
* :func:`check_extension_matches` refuses a file whose content is another format than its extension names
  (a FLAC stream saved as ``.mp3``). A name without an extension is judged by its content alone.
* :func:`unsupported_codec` names a known container or codec that libsndfile cannot decode (MP4/AAC, WMA,
  a WAV with an unknown codec tag, ...); it is consulted only after libsndfile refused a file, so it never
  turns away anything the decoder could read.
* :func:`has_exact_mp3_length` tells whether an MP3 stream carries a Xing/Info/VBRI header (an exact frame
  count, so a truncated file can be recognised); without one the length is an estimate from the file size.
"""

from __future__ import annotations

import posixpath
import struct
from typing import BinaryIO

from genre_core.errors import WrongExtensionError

# extension -> libsndfile container formats (SoundFile.format) a file with that name may hold
EXTENSION_FORMATS: dict[str, frozenset[str]] = {
    ext: frozenset(formats) for exts, formats in [
        ((".wav", ".wave", ".bwf"), ("WAV", "WAVEX", "RF64", "W64")),
        ((".rf64",), ("RF64", "WAV", "WAVEX")),
        ((".w64",), ("W64",)),
        ((".flac",), ("FLAC",)),
        ((".ogg", ".oga", ".opus"), ("OGG",)),
        ((".mp3", ".mp2", ".mpga"), ("MP3",)),
        ((".aif", ".aiff", ".aifc"), ("AIFF",)),
        ((".au", ".snd"), ("AU",)),
        ((".caf",), ("CAF",)),
        ((".voc",), ("VOC",)),
        ((".sd2",), ("SD2",)),
        ((".paf",), ("PAF",)),
        ((".svx", ".8svx", ".iff"), ("SVX",)),
        ((".nist", ".sph"), ("NIST",)),
        ((".sf", ".ircam"), ("IRCAM",)),
        ((".xi",), ("XI",)),
        ((".htk",), ("HTK",)),
        ((".avr",), ("AVR",)),
        ((".pvf",), ("PVF",)),
        ((".sds",), ("SDS",)),
        ((".wve",), ("WVE",)),
        ((".mpc",), ("MPC2K",)),
        # audio formats this decoder cannot read: well named, refused by content as unsupported_codec
        ((".m4a", ".m4b", ".mp4", ".aac", ".alac", ".wma", ".asf", ".ape", ".wv", ".mka", ".webm", ".ac3",
          ".dts", ".amr", ".tta", ".ra", ".rm"), ()),
    ] for ext in exts
}

# WAV format tags libsndfile decodes (PCM, ADPCM, float, A-law, mu-law, IMA ADPCM, GSM 6.10, G.721/G.723,
# MPEG layer 1/2/3, extensible); any other tag in a WAV that libsndfile refused is an unsupported codec.
_WAV_DECODABLE_TAGS = frozenset({0x0001, 0x0002, 0x0003, 0x0006, 0x0007, 0x0011, 0x0031, 0x0040, 0x0045,
                                 0x0050, 0x0055, 0xFFFE})
_WAV_TAG_NAMES = {0x0161: "WMA", 0x0162: "WMA Pro", 0x00FF: "AAC", 0x1610: "AAC (HE)", 0x2000: "AC-3",
                  0x2001: "DTS", 0x0092: "AC-3 (SPDIF)", 0x6771: "Vorbis"}
# leading bytes of containers this decoder cannot read -> a name for the error message
_UNSUPPORTED_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "MP4/M4A (AAC or ALAC)"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "ASF/WMA"),
    (0, b"MAC ", "Monkey's Audio (APE)"),
    (0, b"wvpk", "WavPack"),
    (0, b"\x0b\x77", "AC-3"),
    (0, b"\x7f\xfe\x80\x01", "DTS"),
    (0, b"MThd", "MIDI (not audio)"),
    (0, b"#!AMR", "AMR"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b".RMF", "RealAudio"),
    (0, b"TTA1", "TTA"),
)
HEAD_BYTES = 4096  # what unsupported_codec looks at (a WAV's 'fmt ' chunk may follow JUNK/bext chunks)


def extension_of(uri: str) -> str:
    """The lower-case extension of the last path segment (``""`` when it has none)."""
    return posixpath.splitext(posixpath.basename(uri.rstrip("/")))[1].lower()


def check_extension(uri: str) -> None:
    """Raise WrongExtensionError when ``uri`` has an extension that is not an audio one (no I/O)."""
    ext = extension_of(uri)
    if ext and ext not in EXTENSION_FORMATS:
        raise WrongExtensionError(f"{uri}: '{ext}' is not an audio file extension")


def check_extension_matches(uri: str, container: str) -> None:
    """Raise WrongExtensionError when the decoded ``container`` (libsndfile format) is not what the name says."""
    ext = extension_of(uri)
    if ext and container not in EXTENSION_FORMATS.get(ext, frozenset()):
        raise WrongExtensionError(f"{uri}: content is {container} but the name says '{ext}'")


def unsupported_codec(head: bytes) -> str | None:
    """A description of the known-but-undecodable format ``head`` (first bytes of a file) starts, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        tag = _wav_format_tag(head)
        if tag is not None and tag not in _WAV_DECODABLE_TAGS:
            return f"WAV with codec tag 0x{tag:04X} ({_WAV_TAG_NAMES.get(tag, 'unknown codec')})"
        return None
    if head[:3] == b"ID3":
        return None  # an MP3 (or AAC) with ID3 tags: the decoder's own message is more specific
    for offset, magic, name in _UNSUPPORTED_MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "AAC (ADTS)"
    return None


def _wav_format_tag(head: bytes) -> int | None:
    """The format tag of the 'fmt ' chunk, when it lies within ``head``."""
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if chunk == b"fmt ":
            return struct.unpack("<H", head[pos + 8:pos + 10])[0] if pos + 10 <= len(head) else None
        pos += 8 + size + (size & 1)
    return None


def has_exact_mp3_length(src: BinaryIO) -> bool:
    """True when the first MPEG audio frame of ``src`` holds a Xing, Info or VBRI header (an exact frame count).

    Skips an ID3v2 tag (its size is in its header); leaves ``src`` at offset 0.
    """
    src.seek(0)
    head = src.read(10)
    pos = 0
    if head[:3] == b"ID3" and len(head) == 10:
        pos = 10 + ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F))
    src.seek(pos)
    frame = src.read(64)
    src.seek(0)
    if len(frame) < 40 or frame[0] != 0xFF or frame[1] & 0xE0 != 0xE0:
        return False
    return b"Xing" in frame[4:40] or b"Info" in frame[4:40] or frame[36:40] == b"VBRI"
