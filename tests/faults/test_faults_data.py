"""Fault injection, data side: broken caches heal, bad npz folders and flags are named in one line.

Each test injects one fault and asserts the verdict (exit code, or exception type and one line
naming the file, field, example or flag), that nothing partial was written, and that the same call
succeeds once the input is fixed. Datasets are tiny (`scenario_factory`, a few synthetic scenarios).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from fault_harness import assert_no_new_files, assert_refused, files_under, run_cli

from gf_jax.config import DataConfig
from gf_jax.data import cache, gameformer_npz, store, synthetic
from gf_jax.data.schema import ARRAY_KEYS, DataError

# The submodule, not the `preview` function the package exports under the same name.
preview = importlib.import_module("gf_jax.data.real_samples.preview")
SYNTHETIC = DataConfig(n_train=2, n_val=1, n_test=1, noise_fraction=0.0)


def assert_one_line(error: BaseException, *names: object) -> None:
    """A one-line message that names every one of `names`."""
    text = str(error)
    assert "\n" not in text, text
    for name in names:
        assert str(name) in text, (name, text)


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def snapshot(s):
    """In-memory copies (the memory maps would fault once a test damages their files)."""
    return store.ScenarioSet({k: np.array(v) for k, v in s.arrays.items()}, s.meta, s.source)


def cached(root, split: str = "train"):
    (path,) = root.glob(f"{split}-*")
    return path


def assert_same(a, b) -> None:
    for k in ARRAY_KEYS:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k])
    np.testing.assert_array_equal(a.meta["token"], b.meta["token"])


# --- caches heal -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: _truncate(p / "lanes.npy"), id="truncated-array"),
        pytest.param(lambda p: (p / "route_lanes.npy").write_bytes(b"\x00garbage"), id="garbage"),
        pytest.param(lambda p: (p / "meta.json").write_text("{not json"), id="meta-sidecar"),
        pytest.param(lambda p: (p / "source.json").write_text("[1, 2]"), id="source-sidecar"),
        pytest.param(lambda p: (p / "crosswalks.npy").unlink(), id="missing-array"),
    ],
)
def test_corrupt_synthetic_cache_is_named_and_rebuilt(tmp_path, capsys, damage):
    good = snapshot(store.load_split(SYNTHETIC, "train", root=tmp_path, progress=False))
    path = cached(tmp_path)
    damage(path)
    capsys.readouterr()
    healed = store.load_split(SYNTHETIC, "train", root=tmp_path, progress=False, verbose=True)
    out = capsys.readouterr()
    (line,) = warnings_of(out.err)
    assert str(path) in line and "rebuilding" in line
    assert "rebuilt" in out.out
    assert_same(healed, good)
    store.load_split(SYNTHETIC, "train", root=tmp_path, progress=False)  # a clean hit now
    assert not warnings_of(capsys.readouterr().err)
    assert {p.name for p in tmp_path.iterdir()} == {path.name}  # no temp folders left


def _truncate(f):
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])


def test_nan_in_cached_split_names_file_field_and_example(tmp_path, capsys, npz_source):
    cfg = DataConfig(source=str(npz_source))
    good = snapshot(store.load_split(cfg, "train", root=tmp_path, progress=False))
    path = cached(tmp_path)
    f = path / "neighbor_agents_future.npy"
    a = np.load(f, mmap_mode="r+")
    a[2, 5, 7, 1] = np.nan
    a.flush()
    del a
    with pytest.raises(DataError) as e:
        store.load(path)
    assert_one_line(e.value, f, "neighbor_agents_future", "example 2", good.meta["token"][2])
    capsys.readouterr()
    healed = store.load_split(cfg, "train", root=tmp_path, progress=False)
    (line,) = warnings_of(capsys.readouterr().err)
    assert str(f) in line and "example 2" in line
    assert_same(healed, good)


def test_corrupt_cache_that_cannot_be_rebuilt_says_so(tmp_path, npz_source):
    cfg = DataConfig(source=str(npz_source))
    store.load_split(cfg, "train", root=tmp_path, progress=False)
    path = cached(tmp_path)
    _truncate(path / "lanes.npy")
    # The source file rots in place (same size and time, so the cache key still matches).
    src = sorted((npz_source / "train").glob("*.npz"))[1]
    original, st = src.read_bytes(), src.stat()
    src.write_bytes(b"\xff" * len(original))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    before = files_under(tmp_path)
    with pytest.raises(DataError) as e:
        store.load_split(cfg, "train", root=tmp_path, progress=False)
    assert_one_line(e.value, path, "cannot be rebuilt", src.name, "not an npz/zip archive")
    assert_no_new_files(tmp_path, before)
    src.write_bytes(original)  # fixed: the next load rebuilds
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert len(store.load_split(cfg, "train", root=tmp_path, progress=False)) == 4


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temp_folders_of_killed_writes_are_removed(tmp_path, capsys):
    key = "0123456789abcdef"
    dead = tmp_path / f".train-{key}.k1ll3d.tmp"  # killed while writing (marker: a dead pid)
    (dead).mkdir()
    (dead / cache.WRITER_FILE).write_text(f"{socket.gethostname()} {_dead_pid()}")
    (dead / "lanes.npy").write_bytes(b"half")
    old = tmp_path / f".val-{key}.old.{_dead_pid()}"  # killed while replacing
    old.mkdir()
    aged = tmp_path / f".test-{key}.n0mark.tmp"  # no marker, hours old
    aged.mkdir()
    hours_ago = time.time() - 3 * cache.STALE_AFTER_S
    os.utime(aged, (hours_ago, hours_ago))
    live = tmp_path / f".train-{key}.l1ve00.tmp"  # another process is writing right now
    live.mkdir()
    (live / cache.WRITER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}")
    unrelated = tmp_path / ".keep.tmp"
    unrelated.mkdir()
    store.load_split(SYNTHETIC, "val", root=tmp_path, progress=False)
    err = capsys.readouterr().err
    for gone in (dead, old, aged):
        assert not gone.exists() and str(gone) in err
    assert live.exists() and unrelated.exists() and cached(tmp_path, "val").is_dir()


# --- tokens: duplicates and overlap ----------------------------------------------------------


def test_duplicate_token_in_a_split_is_refused(tmp_path, npz_source):
    cfg = DataConfig(source=str(npz_source))
    first = sorted((npz_source / "train").glob("*.npz"))[0]
    copy = first.with_name("us-ma-boston_copy.npz")  # the same scenario under a second name
    shutil.copy(first, copy)
    token = str(np.load(first)["token"])
    with pytest.raises(DataError) as e:
        store.load_split(cfg, "train", root=tmp_path / "cache", progress=False)
    assert_one_line(e.value, npz_source / "train", "train split", token, "more than once")
    assert not files_under(tmp_path / "cache")
    copy.unlink()
    assert len(store.load_split(cfg, "train", root=tmp_path / "cache", progress=False)) == 4


def test_train_val_overlap_is_refused(tmp_path, npz_source):
    cfg = DataConfig(source=str(npz_source))
    leaked = sorted((npz_source / "train").glob("*.npz"))[3]
    shutil.copy(leaked, npz_source / "valid" / leaked.name)
    token = str(np.load(leaked)["token"])
    with pytest.raises(DataError) as e:
        store.load_splits(cfg, root=tmp_path / "cache", progress=False)
    assert_one_line(e.value, npz_source / "valid", "val split", "train split", token)
    assert not list((tmp_path / "cache").glob(".*"))  # nothing half-written
    (npz_source / "valid" / leaked.name).unlink()
    assert [len(s) for s in store.load_splits(cfg, root=tmp_path / "cache").values()] == [4, 2, 2]


def test_val_reused_as_test_only_warns(tmp_path, capsys, npz_source):
    shutil.rmtree(npz_source / "test")
    shutil.copytree(npz_source / "valid", npz_source / "test")
    splits = store.load_splits(DataConfig(source=str(npz_source)), root=tmp_path, progress=False)
    (line,) = warnings_of(capsys.readouterr().err)
    assert "test split" in line and "val split" in line
    assert len(splits["test"]) == 2


def test_synthetic_splits_never_share_tokens(tmp_path):
    splits = store.load_splits(SYNTHETIC, root=tmp_path, progress=False)  # raises if they do
    assert sum(len(s) for s in splits.values()) == 4


# --- the npz reader --------------------------------------------------------------------------


def test_every_bad_file_is_counted_and_the_first_named(tmp_path, scenarios):
    paths = gameformer_npz.write_folder(scenarios(7), tmp_path)
    originals = {p: p.read_bytes() for p in paths[1:6]}
    for p in originals:
        p.write_bytes(b"garbage")
    with pytest.raises(DataError) as e:
        gameformer_npz.read_folder(tmp_path)
    assert_one_line(e.value, tmp_path, "5 of 7", *(p.name for p in paths[1:4]), "2 more")
    for p, data in originals.items():
        p.write_bytes(data)
    assert len(gameformer_npz.read_folder(tmp_path)) == 7


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _object_array(path, arrays):
    np.savez(path, **arrays, map_name=np.array([{"evil": 1}], dtype=object))


@pytest.mark.parametrize(
    ("write", "says", "not_says"),
    [
        (lambda p, a: p.write_bytes(b"\x80\x04garbage bytes"), "garbage bytes", "pickle"),
        (lambda p, a: p.write_bytes(_npy_bytes(a["lanes"])), "single .npy array", "pickle"),
        (lambda p, a: p.write_bytes(b""), "empty", "pickle"),
        (_object_array, "map_name: contains pickled objects", "not an npz"),
    ],
    ids=["garbage", "npy", "empty", "pickle"],
)
def test_garbage_is_not_called_pickled(tmp_path, scenarios, write, says, not_says):
    s = scenarios(1)
    arrays = {k: s.arrays[k][0] for k in ARRAY_KEYS}
    bad = tmp_path / "us-ma-boston_bad.npz"
    write(bad, arrays)
    with pytest.raises(DataError) as e:
        gameformer_npz.read_file(bad)
    assert_one_line(e.value, bad, says)
    assert not_says not in str(e.value)
    gameformer_npz.write_file(bad, arrays, "us-ma-boston", "bad")
    assert gameformer_npz.read_file(bad)[2] == "bad"


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        (["boston"], "is an array"),
        ("boston", "is a string"),
        ({"city": 3}, "city is a number"),
        ({"corrupted": "yes"}, "corrupted is a string"),
    ],
)
def test_bad_sidecar_entry_is_a_data_error(tmp_path, scenarios, entry, says):
    paths = gameformer_npz.write_folder(scenarios(2), tmp_path)
    sidecar = tmp_path / gameformer_npz.META_FILE
    good = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**good, paths[1].name: entry}))
    with pytest.raises(DataError) as e:
        gameformer_npz.read_folder(tmp_path)
    assert_one_line(e.value, sidecar, paths[1].name, says)
    sidecar.write_text(json.dumps(good))
    assert len(gameformer_npz.read_folder(tmp_path)) == 2


def test_dangling_symlink_is_named(tmp_path, npz_source):
    link = npz_source / "train" / "us-ma-boston_gone.npz"
    link.symlink_to(tmp_path / "elsewhere" / "gone.npz")
    cfg = DataConfig(source=str(npz_source))
    with pytest.raises(DataError) as e:
        store.load_split(cfg, "train", root=tmp_path / "cache", progress=False)
    assert_one_line(e.value, link, "dangling symlink")
    assert not files_under(tmp_path / "cache")
    link.unlink()
    assert len(store.load_split(cfg, "train", root=tmp_path / "cache", progress=False)) == 4


# --- command lines ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--n", "0"], ["--n", "0"]),
        (["--seed", "-1"], ["--seed"]),
        (["--city", "mars"], ["--city", "mars"]),
        (["--type", "flying"], ["--type", "flying"]),
        (["--n", "two"], ["--n", "two"]),
        (["--colour", "red"], ["--colour"]),
    ],
)
def test_synthetic_preview_flags_refused_before_work(tmp_path, capsys, flags, names):
    out = tmp_path / "pics"
    outcome = run_cli(synthetic.main, ["preview", "--out", str(out), *flags], capsys)
    assert_refused(outcome, 2, *names)
    assert not out.exists()


def test_synthetic_preview_out_is_a_file_then_fixed(tmp_path, capsys):
    out = tmp_path / "pics"
    out.write_text("not a folder")
    outcome = run_cli(synthetic.main, ["preview", "--n", "0", "--out", str(out)], capsys)
    assert_refused(outcome, 2, "--n")  # the first bad flag is named
    outcome = run_cli(synthetic.main, ["preview", "--n", "1", "--out", str(out)], capsys)
    assert_refused(outcome, 2, "--out", out)
    assert out.read_text() == "not a folder"
    out.unlink()
    outcome = run_cli(synthetic.main, ["preview", "--n", "1", "--out", str(out)], capsys)
    assert outcome.code == 0 and not outcome.errors
    assert len(list(out.glob("*.png"))) == 2  # one scenario and the contact sheet


def test_real_samples_preview_flags_refused_then_fixed(tmp_path, capsys, monkeypatch, scenarios):
    out, root = tmp_path / "pics", tmp_path / "samples"
    argv = ["preview", "--out", str(out), "--root", str(root)]
    assert_refused(run_cli(preview.main, [*argv, "--per-log", "0"], capsys), 2, "--per-log")
    assert_refused(run_cli(preview.main, argv, capsys), 2, "--root", root)
    assert_refused(run_cli(preview.main, [*argv, "--n", "0"], capsys), 2, "--n")
    assert not out.exists()
    root.mkdir()
    # The adapters are tested in tests/data; here the samples are two tiny scenarios.
    monkeypatch.setattr(preview, "load", lambda *a, **k: scenarios(2))
    outcome = run_cli(preview.main, argv, capsys)
    assert outcome.code == 0 and not outcome.errors
    assert (out / "contact_sheet.png").exists()


def test_real_samples_preview_data_error_is_one_line(tmp_path, capsys):
    root = tmp_path / "samples"
    root.mkdir()  # a folder without any AV2 or nuScenes recording
    out = tmp_path / "pics"
    outcome = run_cli(preview.main, ["preview", "--out", str(out), "--root", str(root)], capsys)
    assert_refused(outcome, 1, root, "no AV2 or nuScenes samples")
    assert not out.exists()
