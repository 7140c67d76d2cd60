"""The catalog job end to end with the real FluidSynth: files, schema, determinism, S3, clear errors."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from genre_core import storage
from genre_core.config import GENRES
from genre_core.synth import render
from jobs import make_catalog
from jobs.cli import run_job


def _run(*args: str) -> int:
    return run_job(make_catalog, list(args))


@pytest.fixture(scope="module")
def one_per_genre(tmp_path_factory):
    out = tmp_path_factory.mktemp("catalog")
    assert _run("--per-genre", "1", "--out", str(out), "--seed", "7", "--workers", "2",
                "--preview", str(out / "preview.png")) == 0
    return out


def test_one_render_per_genre_30s_mono_22050(one_per_genre):
    df = pd.read_parquet(one_per_genre / "catalog.parquet")
    assert sorted(df["genre"]) == sorted(GENRES)
    for uri in df["audio_uri"]:
        assert os.path.isabs(uri) and os.path.exists(uri)
        info = sf.info(uri)
        assert (info.samplerate, info.channels, info.frames) == (22050, 1, 30 * 22050)
        audio, _ = sf.read(uri, dtype="float32")
        rms = float(np.sqrt(np.mean(audio**2)))
        assert rms > 0.005, f"{uri} is nearly silent (rms {rms})"
    assert (one_per_genre / "preview.png").stat().st_size > 10_000


def test_catalog_schema_and_parameters(one_per_genre):
    table = pq.read_table(one_per_genre / "catalog.parquet")
    assert table.schema.equals(make_catalog.CATALOG_SCHEMA)
    df = table.to_pandas()
    assert df["track_id"].is_unique
    assert set(df["split"]) <= {"train", "val", "test"}
    installed = [os.path.basename(os.path.realpath(p)) for p in render.installed_soundfonts().values()]
    # 10 songs, one per genre, spread over every installed soundfont (2 songs each with all 5)
    assert sorted(set(df["soundfont"])) == sorted(installed)
    assert df["soundfont"].value_counts().max() - df["soundfont"].value_counts().min() <= 1
    assert df["tempo"].between(50, 230).all()
    assert df[["key", "scale", "instruments", "effects", "drums"]].notna().all().all()


def test_same_seed_same_rows_and_audio(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert _run("--per-genre", "2", "--genres", "jazz,metal", "--out", str(out), "--seed", "3") == 0
    da, db = pd.read_parquet(a / "catalog.parquet"), pd.read_parquet(b / "catalog.parquet")
    pd.testing.assert_frame_equal(da.drop(columns="audio_uri"), db.drop(columns="audio_uri"))
    for ua, ub in zip(da["audio_uri"], db["audio_uri"], strict=True):
        assert open(ua, "rb").read() == open(ub, "rb").read()
    # and another seed gives other songs
    assert _run("--per-genre", "2", "--genres", "jazz,metal", "--out", str(tmp_path / "c"), "--seed", "4") == 0
    dc = pd.read_parquet(tmp_path / "c" / "catalog.parquet")
    assert not np.allclose(da["tempo"], dc["tempo"])


def test_shifted_preset_gets_its_own_split_and_the_soundfonts_asked_for(tmp_path):
    assert _run("--per-genre", "2", "--genres", "rock", "--preset", "shifted", "--soundfonts", "timgm6mb,fluidr3",
                "--seconds", "5", "--out", str(tmp_path)) == 0
    df = pd.read_parquet(tmp_path / "catalog.parquet")
    assert (df["split"] == "shifted").all() and list(df["track_id"]) == ["shifted-rock-00000", "shifted-rock-00001"]
    assert sorted(df["soundfont"]) == ["FluidR3_GM.sf2", "TimGM6mb.sf2"]
    assert (df["preset"] == "shifted").all() and all(isinstance(json.loads(e), dict) for e in df["effects"])


def test_reserved_soundfont_is_refused_directly_and_through_a_symlink(tmp_path, capsys):
    fake = tmp_path / "MuseScore_General.sf3"
    fake.write_bytes(b"RIFF" + (4).to_bytes(4, "little") + b"sfbk")  # a valid header; not the real file
    link = tmp_path / "default-GM.sf3"
    os.symlink(fake, link)
    for path in (fake, link):
        out = tmp_path / f"out-{path.name}"
        assert _run("--per-genre", "1", "--soundfonts", f"timgm6mb,{path}", "--out", str(out)) == 2
        assert "reserved for held-out evaluation" in capsys.readouterr().err
        assert not (out / "catalog.parquet").exists()


def test_output_to_s3(s3_bucket):
    out = f"s3://{s3_bucket}/demo"
    assert _run("--per-genre", "1", "--genres", "blues,reggae", "--out", out) == 0
    fs, path = storage.filesystem(out + "/catalog.parquet")
    with fs.open(path, "rb") as fh:
        df = pd.read_parquet(fh)
    assert len(df) == 2 and df["audio_uri"].str.startswith(f"s3://{s3_bucket}/demo/audio/").all()
    audio, sr = sf.read(io.BytesIO(storage.read_bytes(df["audio_uri"].iloc[0])))
    assert sr == 22050 and len(audio) == 30 * 22050


def test_missing_soundfont_is_a_clear_error(tmp_path, capsys):
    assert _run("--per-genre", "1", "--out", str(tmp_path), "--soundfonts", str(tmp_path / "nope.sf2")) == 2
    assert "soundfont not found" in capsys.readouterr().err
    bogus = tmp_path / "bogus.sf2"
    bogus.write_bytes(b"not a soundfont at all")
    assert _run("--per-genre", "1", "--out", str(tmp_path), "--soundfonts", str(bogus)) == 2
    assert "not a SoundFont file" in capsys.readouterr().err
    assert not (tmp_path / "catalog.parquet").exists()


def test_missing_fluidsynth_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH on which no fluidsynth exists
    with pytest.raises(render.SynthSetupError, match="apt-get install"):
        render.find_fluidsynth()
    assert _run("--per-genre", "1", "--out", str(tmp_path / "out")) == 2
    assert "FluidSynth is not installed" in capsys.readouterr().err


def test_unknown_genre_is_rejected(tmp_path, capsys):
    assert _run("--per-genre", "1", "--genres", "polka", "--out", str(tmp_path)) == 2
    assert "unknown genre" in capsys.readouterr().err


def test_revoiced_inputs_join_each_train_songs_pair(tmp_path, capsys):
    out = tmp_path / "paired"
    assert _run("--per-genre", "8", "--genres", "rock", "--soundfonts", "timgm6mb,csound", "--seconds", "3",
                "--reference-soundfont", "fluidr3", "--revoiced", "2", "--out", str(out)) == 0
    df = pd.read_parquet(out / "catalog.parquet").set_index("track_id")
    songs = [f"rock-{i:05d}" for i in range(8)]
    train = [t for t in songs if df.loc[t, "split"] == "train"]
    assert len(train) == 7 and df.loc["rock-00007", "split"] == "val"
    assert sorted(df.index) == sorted(songs + [f"{t}-r{k}" for t in train for k in (1, 2)])
    for t in train:
        rows = df.loc[[t, f"{t}-r1", f"{t}-r2"]]
        assert (rows["reference_uri"] == df.loc[t, "reference_uri"]).all()  # one clean target, three inputs
        assert (rows["reference_soundfont"] == "FluidR3_GM.sf2").all()
        assert (rows["split"] == "train").all() and (rows["genre"] == "rock").all()
        assert rows["audio_uri"].is_unique and set(rows["soundfont"]) <= {"TimGM6mb.sf2", "sf_GMbank.sf2"}
    assert pd.isna(df.loc["rock-00007", "reference_uri"])  # no pair outside split train, so no re-voicing
    assert pd.isna(df.loc["rock-00007", "reference_soundfont"])
    assert _run("--per-genre", "1", "--revoiced", "2", "--out", str(tmp_path / "unpaired")) == 2
    assert "needs --reference-soundfont" in capsys.readouterr().err
