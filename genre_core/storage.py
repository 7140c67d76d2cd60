"""Local paths and s3:// URLs behind one small API (fsspec/s3fs).

The S3 endpoint and credentials come from the standard AWS environment variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``), so AWS S3,
MinIO or any S3-compatible store works.

Transient S3 errors are retried, explicitly configured here rather than left to library defaults: botocore's
``standard`` retry mode (503 SlowDown, 500/502/504, throttling, connection errors) with
:data:`S3_MAX_ATTEMPTS` attempts per request and exponential backoff with jitter, plus s3fs's own
:data:`S3FS_RETRIES` retries of connection-level failures around each call.
"""

from __future__ import annotations

import os
import re
from typing import Any

import fsspec


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def strip_file_scheme(url: str) -> str:
    return url[len("file://"):] if url.startswith("file://") else url


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for ``url`` and the path inside it."""
    url = strip_file_scheme(url)
    if url.startswith("s3://"):
        return s3_filesystem(), url[len("s3://"):]
    fs = fsspec.filesystem("file")
    return fs, os.path.abspath(url)


S3_MAX_ATTEMPTS = 8      # botocore attempts per request (first try included), "standard" retry mode
S3FS_RETRIES = 5         # s3fs retries of connection-level errors around each call
S3_CONNECT_TIMEOUT_S = 10
S3_READ_TIMEOUT_S = 60


def s3_filesystem(**overrides: Any) -> fsspec.AbstractFileSystem:
    import s3fs

    kwargs: dict[str, Any] = {
        "config_kwargs": {
            "retries": {"mode": "standard", "max_attempts": S3_MAX_ATTEMPTS},
            "connect_timeout": S3_CONNECT_TIMEOUT_S,
            "read_timeout": S3_READ_TIMEOUT_S,
        },
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    kwargs.update(overrides)
    fs = s3fs.S3FileSystem(**kwargs)
    fs.retries = S3FS_RETRIES  # a class attribute in s3fs, not a constructor argument
    return fs


_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(value: str) -> str:
    """``value`` as one safe path segment / object-key part: characters outside ``[A-Za-z0-9._-]`` (slashes,
    NUL, spaces, ...) are percent-encoded, and so is a leading dot (no ``.``, ``..`` or hidden names).

    Distinct values stay distinct (the encoding is reversible), so two track_ids never share a key.
    """
    if not value:
        raise ValueError("an empty name cannot be a path segment")
    encoded = _UNSAFE_NAME_CHARS.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), value)
    return "%2E" + encoded[1:] if encoded.startswith(".") else encoded


def join(base: str, *parts: str) -> str:
    """Join URL/path parts with '/', keeping the scheme of ``base``."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def absolute(url: str) -> str:
    """An absolute form of ``url``: s3:// URLs unchanged, local paths made absolute."""
    return url if is_remote(url) else os.path.abspath(strip_file_scheme(url))


def open_input(url: str, block_size: int | None = None):
    """A seekable binary file object for reading ``url``; raises FileNotFoundError when it does not exist.
    On s3, reads are ranged GETs of ``block_size`` bytes (read-ahead), so only what is read is fetched."""
    fs, path = filesystem(url)
    kwargs = {"block_size": block_size, "cache_type": "readahead"} if block_size and is_remote(url) else {}
    return fs.open(path, "rb", **kwargs)


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    with fs.open(path, "rb") as fh:
        return fh.read()


def write_bytes(url: str, data: bytes) -> None:
    fs, path = filesystem(url)
    parent = path.rsplit("/", 1)[0]
    if not is_remote(url):
        os.makedirs(parent, exist_ok=True)
    with fs.open(path, "wb") as fh:
        fh.write(data)


def makedirs(url: str) -> None:
    if not is_remote(url):
        os.makedirs(strip_file_scheme(url), exist_ok=True)
