"""Soundfonts: the list, the reserved MuseScore General refusal (direct, via symlinks, renamed; in make-catalog and
in training), the balanced soundfont per song of a planned catalog, deterministic renders with each one, and the
re-voicings (other programs of the same families, synthesis-parameter offsets that FluidSynth applies)."""

from __future__ import annotations

import collections
import hashlib
import io
import itertools
import json
import os
import shutil
import struct

import mido
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genre_core.config import GENRES
from genre_core.synth import render
from genre_core.synth.catalog import SongSpec, plan_catalog, reference_spec, render_song, revoiced_spec
from genre_core.synth.compose import DRUM_CHANNEL, compose, to_midi
from genre_core.synth.plan import plan_song
from genre_core.synth.revoice import (
    DRUM_GENERATORS,
    GENERATOR_JITTER,
    generator_nrpns,
    jitter_generators,
    revoice_programs,
)
from jobs import make_catalog, train
from jobs.cli import run_job


def _soundfont_file(path, bank_name: str = "Test GM") -> str:
    """A file with a valid RIFF/sfbk header and an INFO list naming the bank (not a playable soundfont)."""
    name = bank_name.encode() + b"\0"
    name += b"\0" * (len(name) % 2)
    inam = b"INAM" + len(name).to_bytes(4, "little") + name
    info = b"LIST" + (4 + len(inam)).to_bytes(4, "little") + b"INFO" + inam
    body = b"sfbk" + info
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    return str(path)


@pytest.fixture()
def reserved(tmp_path):
    """A fake MuseScore_General.sf3 and Debian-style symlinks to it (the real file is never installed here)."""
    real = _soundfont_file(tmp_path / "MuseScore_General.sf3", "MuseScore_General")
    alternatives = tmp_path / "alternatives"
    alternatives.mkdir()
    os.symlink(real, alternatives / "default-GM.sf3")
    os.symlink(alternatives / "default-GM.sf3", tmp_path / "default-GM.sf3")  # link to a link, as Debian does
    renamed = _soundfont_file(tmp_path / "innocent.sf2", "MuseScore General")
    return {"direct": real, "symlink": str(tmp_path / "default-GM.sf3"), "renamed": renamed}


def test_the_list_has_short_names_and_never_a_reserved_soundfont():
    assert list(render.SOUNDFONTS) == ["timgm6mb", "fluidr3", "fluidr3mono", "csound", "opl3"]
    for path, package in render.SOUNDFONTS.values():
        assert path.endswith((".sf2", ".sf3")) and "soundfont" in package
        assert not render.is_reserved_soundfont(path) and "musescore" not in package


@pytest.mark.parametrize("name", ["MuseScore_General.sf3", "MuseScore_General.sf2", "MuseScore_General-Lite.sf3",
                                  "/usr/share/sounds/sf3/musescore_general_full.sf3", "MuseScore General"])
def test_reserved_names(name):
    assert render.is_reserved_soundfont(name)


@pytest.mark.parametrize("name", ["FluidR3Mono_GM.sf3", "TimGM6mb.sf2", "default-GM.sf2", "MuseScore FluidSynth"])
def test_names_that_are_not_reserved(name):
    assert not render.is_reserved_soundfont(name)


@pytest.mark.parametrize("kind", ["direct", "symlink", "renamed"])
def test_check_soundfont_refuses_the_reserved_soundfont(reserved, kind, tmp_path):
    with pytest.raises(render.SynthSetupError, match="reserved for held-out evaluation"):
        render.check_soundfont(reserved[kind])
    ordinary = _soundfont_file(tmp_path / "Other_GM.sf2")
    with pytest.raises(render.SynthSetupError, match="reserved"):
        render.resolve_soundfonts(f"{ordinary},{reserved[kind]}")


def test_check_soundfont_refuses_a_missing_reserved_file_by_name(tmp_path):
    with pytest.raises(render.SynthSetupError, match="reserved"):
        render.check_soundfont(str(tmp_path / "MuseScore_General.sf2"))


def test_a_symlink_to_an_ordinary_soundfont_is_accepted(tmp_path):
    real = _soundfont_file(tmp_path / "Other_GM.sf2")
    os.symlink(real, tmp_path / "default-GM.sf2")
    assert render.check_soundfont(str(tmp_path / "default-GM.sf2")) == str(tmp_path / "default-GM.sf2")
    assert render.resolve_soundfonts(f"{tmp_path / 'default-GM.sf2'},{real}") == [os.path.realpath(real)]


def test_resolve_all_is_every_installed_soundfont_and_unknown_items_are_errors(tmp_path):
    installed = render.installed_soundfonts()
    if not installed:
        with pytest.raises(render.SynthSetupError, match="apt-get install"):
            render.resolve_soundfonts("all")
    else:
        assert render.resolve_soundfonts("all") == [os.path.realpath(p) for p in installed.values()]
        first = next(iter(installed))
        assert render.resolve_soundfonts(first) == [os.path.realpath(installed[first])]
    with pytest.raises(render.SynthSetupError, match="soundfont not found"):
        render.resolve_soundfonts(str(tmp_path / "nope.sf2"))
    with pytest.raises(render.SynthSetupError, match="no soundfont given"):
        render.resolve_soundfonts(" , ")


def test_make_catalog_refuses_the_reserved_soundfont(reserved, tmp_path, capsys):
    if shutil.which("fluidsynth") is None:
        pytest.skip("fluidsynth not installed (make-catalog checks it first)")
    for kind in ("direct", "symlink"):
        out = tmp_path / f"out-{kind}"
        assert run_job(make_catalog, ["--per-genre", "1", "--soundfonts", reserved[kind], "--out", str(out)]) == 2
        assert "reserved for held-out evaluation" in capsys.readouterr().err
        assert not out.exists()


def _catalog(tmp_path, soundfont: str) -> str:
    df = pd.DataFrame({
        "track_id": [f"t{i}" for i in range(4)], "audio_uri": [str(tmp_path / f"t{i}.flac") for i in range(4)],
        "genre": ["rock", "jazz", "rock", "jazz"], "split": ["train", "train", "val", "test"],
        "soundfont": ["TimGM6mb.sf2", soundfont, "FluidR3_GM.sf2", "TimGM6mb.sf2"],
    })
    path = tmp_path / "catalog.parquet"
    df.to_parquet(path)
    return str(path)


@pytest.mark.parametrize("kind", ["cnn", "gan"])
def test_training_refuses_a_catalog_rendered_with_the_reserved_soundfont(tmp_path, capsys, kind):
    catalog = _catalog(tmp_path, "MuseScore_General.sf3")
    extra = ["--cnn", str(tmp_path / "no-cnn")] if kind == "gan" else []
    assert run_job(train, [kind, "--catalog", catalog, "--out", str(tmp_path / "bundle"), *extra]) == 2
    err = capsys.readouterr().err
    assert "MuseScore_General.sf3" in err and "reserved for held-out evaluation" in err and "1 song(s)" in err
    assert not (tmp_path / "bundle").exists()


def test_the_training_guard_passes_ordinary_catalogs(tmp_path):
    train.refuse_reserved_soundfonts(pd.read_parquet(_catalog(tmp_path, "sf_GMbank.sf2")), "c")
    train.refuse_reserved_soundfonts(pd.DataFrame({"track_id": ["a"]}), "c")  # no soundfont column
    with pytest.raises(ValueError, match="reserved"):
        train.refuse_reserved_soundfonts(pd.DataFrame({"soundfont": ["musescore_general.sf2", None]}), "c")


# ---------------------------------------------------------------- a soundfont per song

FONTS = ["/sf/a.sf2", "/sf/b.sf2", "/sf/c.sf3", "/sf/d.sf2", "/sf/e.sf2"]


@pytest.mark.parametrize("per_genre", [10, 37, 100])
def test_every_genre_soundfont_cell_of_every_split_is_populated_and_balanced(per_genre):
    specs = plan_catalog(list(GENRES), per_genre, 0, "default", FONTS)
    cells = collections.Counter((s.genre, s.soundfont) for s in specs)
    assert set(cells) == {(g, f) for g in GENRES for f in FONTS}
    for genre in GENRES:
        counts = [cells[genre, f] for f in FONTS]
        assert max(counts) - min(counts) <= 1 and sum(counts) == per_genre
    by_split = collections.Counter((s.genre, s.split, s.soundfont) for s in specs)
    for genre in GENRES:
        for split in ("train", "val", "test"):
            counts = [by_split[genre, split, f] for f in FONTS]
            assert max(counts) - min(counts) <= 1, (genre, split, counts)
    if per_genre >= 50:  # 5 val and 10 test songs per genre: every split sees every soundfont
        assert all(by_split[g, s, f] >= 1 for g in GENRES for s in ("train", "val", "test") for f in FONTS)


def test_soundfont_assignment_is_deterministic_and_does_not_depend_on_catalog_size():
    small = plan_catalog(["jazz", "rock"], 12, 3, "default", FONTS)
    large = plan_catalog(list(GENRES), 40, 3, "default", FONTS)
    same = {s.track_id: s for s in large}
    assert all(same[s.track_id] == s for s in small)
    assert plan_catalog(list(GENRES), 12, 3, "shifted", FONTS) == plan_catalog(list(GENRES), 12, 3, "shifted", FONTS)
    one = plan_catalog(list(GENRES), 1, 0, "default", FONTS)
    assert {s.soundfont for s in one} == set(FONTS)  # even one song per genre spreads over the soundfonts
    shifted = plan_catalog(list(GENRES), 5, 0, "shifted", FONTS)
    assert all({s.soundfont for s in shifted if s.genre == g} == set(FONTS) for g in GENRES)


def test_a_single_soundfont_string_still_plans():
    assert {s.soundfont for s in plan_catalog(["pop"], 3, 0, "default", "/sf/only.sf2")} == {"/sf/only.sf2"}
    with pytest.raises(ValueError):
        plan_catalog(["pop"], 3, 0, "default", [])



# ---------------------------------------------------------------- families (shared recordings)

def _sample_hashes(path: str) -> set[str]:
    """sha1 of each sample's 16-bit PCM data in an .sf2 file (RIFF sfbk: sdta/smpl holds the data, pdta/shdr the
    sample headers of 46 bytes with start and end offsets in samples; the last header is the terminator)."""
    with open(path, "rb") as fh:
        buf = fh.read()
    where: dict[bytes, tuple[int, int]] = {}

    def walk(off: int, end: int) -> None:
        while off + 8 <= end:
            cid, size = buf[off:off + 4], struct.unpack("<I", buf[off + 4:off + 8])[0]
            if cid == b"LIST":
                walk(off + 12, off + 8 + size)
            else:
                where[cid] = (off + 8, size)
            off += 8 + size + (size & 1)

    walk(12, len(buf))
    (smpl, _), (shdr, size) = where[b"smpl"], where[b"shdr"]
    hashes = set()
    for i in range(size // 46 - 1):
        start, end = struct.unpack("<II", buf[shdr + 46 * i + 20:shdr + 46 * i + 28])
        if end - start > 100:  # not a stub
            hashes.add(hashlib.sha1(buf[smpl + 2 * start:smpl + 2 * end]).hexdigest())
    return hashes


def test_sample_families_group_exactly_the_installed_sf2_files_that_share_recordings():
    sf2 = {name: path for name, path in render.installed_soundfonts().items() if path.endswith(".sf2")}
    if len(sf2) < 2:
        pytest.skip("fewer than two .sf2 soundfonts installed")
    hashes = {name: _sample_hashes(path) for name, path in sf2.items()}
    for a, b in itertools.combinations(sf2, 2):
        shared = len(hashes[a] & hashes[b])
        related = render.sample_family(sf2[a]) == render.sample_family(sf2[b])
        assert related == (shared > 0), f"{a} and {b} share {shared} samples; same family: {related}"
    assert render.sample_family("/elsewhere/FluidR3Mono_GM.sf3") == render.sample_family("FluidR3_GM.sf2")
    assert render.sample_family("/x/GeneralUser.sf2") == "GeneralUser"  # unknown: a family of its own


# ---------------------------------------------------------------- renders

def _installed_or_skip(name: str) -> str:
    if shutil.which("fluidsynth") is None:
        pytest.skip("fluidsynth not installed")
    path = render.installed_soundfonts().get(name)
    if path is None:
        pytest.skip(f"soundfont {name} not installed")
    return path


@pytest.mark.parametrize("name", list(render.SOUNDFONTS))
def test_each_soundfont_renders_music_deterministically(name):
    path = _installed_or_skip(name)
    spec = SongSpec(track_id="t", genre="pop", index=0, seed=11, split="train", preset="none", soundfont=path,
                    seconds=4.0)
    data, params = render_song(spec)
    again, params_again = render_song(spec)
    assert data == again and params == params_again  # same spec, same bytes
    assert params["soundfont"] == os.path.basename(path)
    audio, sr = sf.read(io.BytesIO(data), dtype="float32")
    assert sr == 22050 and len(audio) == 4 * 22050
    rms = float(np.sqrt(np.mean(audio**2)))
    assert rms > 0.01, f"{name} renders nearly silence (rms {rms})"


def test_another_soundfont_gives_other_audio():
    a, b = _installed_or_skip("timgm6mb"), _installed_or_skip("opl3")
    spec = SongSpec(track_id="t", genre="rock", index=0, seed=5, split="train", preset="none", soundfont=a,
                    seconds=3.0)
    data_a, _ = render_song(spec)
    data_b, _ = render_song(SongSpec(**{**spec.__dict__, "soundfont": b}))
    assert data_a != data_b


def test_a_revoicing_plays_other_instruments_of_the_same_families_and_shares_the_songs_clean_target():
    fonts = [_installed_or_skip("timgm6mb"), _installed_or_skip("fluidr3")]
    spec = SongSpec(track_id="rock-00001", genre="rock", index=1, seed=21, split="train", preset="default",
                    soundfont=fonts[0], seconds=3.0)
    data, params = render_song(spec)
    variants = [revoiced_spec(spec, k, fonts) for k in (1, 2, 3)]
    assert [v.track_id for v in variants] == ["rock-00001-r1", "rock-00001-r2", "rock-00001-r3"]
    renders = [render_song(v) for v in variants]
    assert render_song(variants[0]) == renders[0]  # same spec, same bytes
    original = json.loads(params["instruments"])
    for (v_data, v_params) in renders:
        assert v_data != data and v_params["soundfont"] in {os.path.basename(f) for f in fonts}
        programs = json.loads(v_params["instruments"])
        assert programs.keys() == original.keys()
        assert all(programs[r] // 8 == original[r] // 8 for r in original)  # the same General MIDI family
    assert any(json.loads(p["instruments"]) != original for _, p in renders)
    assert len({p["effects"] for _, p in renders} | {params["effects"]}) == 4  # a recording chain each
    # every re-voicing is an input of the same pair: its clean target is the song's own
    target, _ = render_song(reference_spec(spec, fonts[1]))
    assert all(render_song(reference_spec(v, fonts[1]))[0] == target for v in variants)
    with pytest.raises(ValueError, match="re-voicing"):
        revoiced_spec(spec, 0, fonts)


def test_revoice_programs_stays_in_the_family_and_changes_most_programs():
    programs = {"bass": 33, "comp": 27, "lead": 66, "pad": 89}
    drawn = [revoice_programs(programs, np.random.default_rng(s)) for s in range(200)]
    assert all(d[r] // 8 == p // 8 for d in drawn for r, p in programs.items())
    changed = np.mean([d[r] != p for d in drawn for r, p in programs.items()])
    assert 0.6 < changed < 0.8  # p 0.8 of a redraw, 1 in 8 of which draws the same program: 0.7
    assert revoice_programs(programs, np.random.default_rng(5)) == revoice_programs(programs, np.random.default_rng(5))


def test_jitter_generators_draws_each_offset_in_its_range_and_only_filter_and_decay_for_drums():
    drawn = [jitter_generators(np.random.default_rng(s)) for s in range(300)]
    assert all(set(d) == {0, 1, 2, 3, DRUM_CHANNEL} for d in drawn)
    for d in drawn:
        for channel, gens in d.items():
            assert channel != DRUM_CHANNEL or set(gens) <= set(DRUM_GENERATORS)
            assert all(GENERATOR_JITTER[g][1] <= v <= GENERATOR_JITTER[g][2] for g, v in gens.items())
    cutoff_share = np.mean([8 in d[0] for d in drawn])
    assert 0.6 < cutoff_share < 0.8  # drawn with probability 0.7
    assert jitter_generators(np.random.default_rng(3)) == jitter_generators(np.random.default_rng(3))


def _centroid_hz(audio: np.ndarray, sample_rate: int = 22050) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float((spectrum * np.fft.rfftfreq(len(audio), 1 / sample_rate)).sum() / spectrum.sum())


def test_generator_offsets_reach_fluidsynth_as_soundfont_nrpns():
    font = _installed_or_skip("timgm6mb")
    plan = plan_song("rock", 5, seconds=4.0)
    notes = compose(plan)
    darker = {ch: {8: -4000.0} for ch in (0, 1, 2, 3, DRUM_CHANNEL)}  # filter cutoff 40 semitones lower
    midi = to_midi(plan, notes, generator_nrpns(darker))
    sent = [m for m in mido.MidiFile(file=io.BytesIO(midi)).tracks[0] if m.type == "control_change" and m.channel == 0]
    data = 8192 - 4000 // 2  # NRPN steps of 2 cents around 8192
    assert [(m.control, m.value) for m in sent[:4]] == [(99, 120), (98, 8), (38, data & 127), (6, data >> 7)]
    plain = render.render_midi(to_midi(plan, notes), font)
    dark = render.render_midi(midi, font)
    assert plain.shape == dark.shape
    assert _centroid_hz(dark) < 0.7 * _centroid_hz(plain)
