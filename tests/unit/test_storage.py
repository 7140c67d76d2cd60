"""genre_core.storage: safe object-key parts and the explicit S3 retry configuration."""

from __future__ import annotations

import pytest

from genre_core import storage


@pytest.mark.parametrize("value,expected", [
    ("rock-00012", "rock-00012"),
    ("a/b", "a%2Fb"),
    ("../../etc/x", "%2E.%2F..%2Fetc%2Fx"),
    ("..", "%2E."),
    (".hidden", "%2Ehidden"),
    ("s3://b/k", "s3%3A%2F%2Fb%2Fk"),
    ("nul\x00byte", "nul%00byte"),
    (" spaced id ", "%20spaced%20id%20"),
    ("ünï", "%C3%BCn%C3%AF"),
])
def test_safe_name_makes_one_harmless_path_segment(value, expected):
    name = storage.safe_name(value)
    assert name == expected
    assert "/" not in name and "\x00" not in name and not name.startswith(".")


def test_safe_name_keeps_distinct_values_distinct():
    values = ["a/b", "a%2Fb", "a_b", "a.b", ".ab", "%2Eab"]
    assert len({storage.safe_name(v) for v in values}) == len(values)
    with pytest.raises(ValueError):
        storage.safe_name("")


def test_s3_filesystem_retries_are_explicit(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    fs = storage.s3_filesystem()
    assert fs.retries == storage.S3FS_RETRIES
    assert fs.config_kwargs["retries"] == {"mode": "standard", "max_attempts": storage.S3_MAX_ATTEMPTS}
    assert fs.endpoint_url == "http://127.0.0.1:9"
