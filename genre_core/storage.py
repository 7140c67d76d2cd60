"""Local paths and s3:// URLs behind one small API (fsspec/s3fs).

The S3 endpoint and credentials come from the standard AWS environment variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``), so AWS S3,
MinIO or any S3-compatible store works.
"""

from __future__ import annotations

import os
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


def s3_filesystem(**overrides: Any) -> fsspec.AbstractFileSystem:
    import s3fs

    kwargs: dict[str, Any] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    kwargs.update(overrides)
    return s3fs.S3FileSystem(**kwargs)


def join(base: str, *parts: str) -> str:
    """Join URL/path parts with '/', keeping the scheme of ``base``."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def absolute(url: str) -> str:
    """An absolute form of ``url``: s3:// URLs unchanged, local paths made absolute."""
    return url if is_remote(url) else os.path.abspath(strip_file_scheme(url))


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
