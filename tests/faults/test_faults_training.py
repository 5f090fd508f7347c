"""Faults of `python -m gf_jax.train`: each is refused or healed in one line, and nothing is lost.

Every test runs the command line in-process on the tiny preset (one compile of the steps for the
whole module) and asserts the exit code, one `error:` line naming the file or flag, that nothing
was written or changed, and that the same command succeeds once the input is fixed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
import pytest
from fault_harness import Outcome, assert_no_new_files, assert_refused, files_under, run_cli

from gf_jax import checkpoint, loop, train
from gf_jax import workdir as workdir_lib

EPOCHS = 2


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


def _argv(workdir: Path, data_root: Path, *extra: str) -> list[str]:
    return [
        "--preset", "tiny", "--epochs", str(EPOCHS), "--workdir", str(workdir),
        "--data-root", str(data_root), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_root) -> Path:
    """An uninterrupted run: what every resumed run must end as, bit for bit."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    assert train.main(_argv(workdir, data_root)) == 0
    return workdir


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Each file's (inode, mtime, size): any rewrite, even with the same bytes, changes it."""
    out = {}
    for name in files_under(root):
        st = (root / name).stat()
        out[name] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def _params(workdir: Path, epoch: int | str) -> list[np.ndarray]:
    store_ = checkpoint.CheckpointStore(workdir / workdir_lib.CHECKPOINTS_DIR)
    return [np.asarray(x) for x in jax.tree.leaves(store_.params(epoch))]


def _untimed(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.endswith("_seconds")}


def _assert_same_run(got: Path, want: Path) -> None:
    """Bit-identical history, metrics and parameters (timings aside)."""

    def result(workdir: Path) -> dict:
        r = json.loads((workdir / workdir_lib.RESULT_FILE).read_text())
        r.pop("fit_seconds")
        r["history"] = [_untimed(row) for row in r["history"]]
        return r

    assert result(got) == result(want)
    rows = (got / workdir_lib.METRICS_FILE).read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in rows] == list(range(1, EPOCHS + 1))
    for epoch in (EPOCHS - 1, "best"):
        for a, b in zip(_params(got, epoch), _params(want, epoch), strict=True):
            np.testing.assert_array_equal(a, b)


def _interrupt_after(monkeypatch, epochs_done: int) -> None:
    """The next run is stopped (Ctrl-C) as it starts 0-based epoch `epochs_done`."""
    run_epoch = loop.run_epoch

    def run_or_stop(trainer, state):
        if state.epoch >= epochs_done:
            raise KeyboardInterrupt
        return run_epoch(trainer, state)

    monkeypatch.setattr(loop, "run_epoch", run_or_stop)


# ----------------------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    "flags,names",
    [
        (["--epochs", "0"], ["--epochs", "must be >= 1"]),
        (["--epochs", "two"], ["--epochs", "'two'"]),
        (["--seed", "-1"], ["--seed", "must be >= 0"]),
        (["--preset", "huge"], ["--preset", "huge"]),
        (["--resume", "--overwrite"], ["--overwrite", "--resume"]),
        (["--coordinator", "localhost:1"], ["--coordinator", "--num-processes", "--process-id"]),
        (
            ["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "2"],
            ["--process-id", "[0, 2)"],
        ),
        (["--data", "nonsense-source"], ["--data", "nonsense-source"]),
    ],
)
def test_bad_options_exit_2_before_any_work(tmp_path, capsys, finished, data_root, flags, names):
    before = files_under(tmp_path)
    args = _argv(tmp_path / "run", tmp_path / "data")
    outcome = run_cli(train.main, [*args, *flags], capsys)
    assert_refused(outcome, 2, *names)
    assert_no_new_files(tmp_path, before)  # no workdir, no data cache: refused before work
    # Fixed (the finished run's own options), the command succeeds: it returns that run.
    fixed = run_cli(train.main, _argv(finished, data_root, "--resume"), capsys)
    assert fixed.code == 0 and fixed.errors == [], fixed.errors


def test_workdir_that_is_a_file_is_refused_then_trains(tmp_path, capsys, data_root):
    workdir = tmp_path / "run"
    workdir.write_text("not a folder")
    before = files_under(tmp_path)
    outcome = run_cli(train.main, _argv(workdir, data_root), capsys)
    assert_refused(outcome, 1, str(workdir), "is a file")
    assert_no_new_files(tmp_path, before)
    workdir.unlink()
    fixed = run_cli(train.main, _argv(workdir, data_root), capsys)
    assert fixed.code == 0 and (workdir / workdir_lib.RESULT_FILE).exists()


def test_read_only_workdir_is_refused_in_one_line(tmp_path, capsys, finished, data_root):
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        if os.access(parent, os.W_OK):  # root ignores modes; sysfs refuses even root
            parent = Path("/sys/gf-jax-read-only-test")
        workdir = parent / "run"
        outcome = run_cli(train.main, _argv(workdir, data_root), capsys)
        assert_refused(outcome, 1, str(parent))
        assert not workdir.exists()
    finally:
        (tmp_path / "read-only").chmod(0o755)
    fixed = run_cli(
        train.main, _argv(_copy(finished, tmp_path / "ok"), data_root, "--resume"), capsys
    )
    assert fixed.code == 0 and fixed.errors == []


# ----------------------------------------------------------------------------- no silent loss


def test_interrupted_run_is_refused_without_resume_then_resumes_exactly(
    tmp_path, capsys, monkeypatch, finished, data_root
):
    workdir = tmp_path / "run"
    args = _argv(workdir, data_root)
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        stopped = run_cli(train.main, args, capsys)
    # Ctrl-C: exit 130 and a hint that is true (a plain rerun is refused, see below).
    assert_refused(stopped, 130, "--resume", str(workdir))
    before = _snapshot(workdir)
    assert "checkpoints/epoch_000/metadata.json" in before
    refused = run_cli(train.main, args, capsys)
    assert_refused(refused, 1, str(workdir), "interrupted", "--resume", "--overwrite")
    assert _snapshot(workdir) == before  # the checkpoints are still there, untouched
    # Temporaries a kill -9 leaves mid-write go on the next start.
    stale = [
        workdir / "checkpoints" / ".epoch_001.k1ll3d.tmp",
        workdir / "checkpoints" / ".best.old.4242",
        workdir / ".result.json.x7a9q2.tmp",
    ]
    for path in stale[:2]:
        (path / "params").mkdir(parents=True)
        (path / "params" / "half-written").write_bytes(b"\0" * 100)
    stale[2].write_text('{"half": ')
    resumed = run_cli(train.main, [*args, "--resume"], capsys)
    assert resumed.code == 0 and resumed.errors == []
    assert not any(p.exists() for p in stale)
    _assert_same_run(workdir, finished)


def test_resume_with_another_config_is_refused_naming_the_keys(
    tmp_path, capsys, finished, data_root
):
    workdir = _copy(finished, tmp_path / "run")
    before = _snapshot(workdir)
    other = _argv(workdir, data_root, "--resume", "--seed", "7")
    outcome = run_cli(train.main, other, capsys)
    assert_refused(outcome, 1, str(workdir), "preset.train.seed", "--overwrite")
    assert _snapshot(workdir) == before
    same = run_cli(train.main, _argv(workdir, data_root, "--resume"), capsys)
    assert same.code == 0 and "best epoch" in same.stdout
    assert _snapshot(workdir) == before  # a finished run is returned as it is


def test_finished_run_is_kept_and_the_overwrite_hint_is_true(tmp_path, capsys, finished, data_root):
    workdir = _copy(finished, tmp_path / "run")
    before = _snapshot(workdir)
    outcome = run_cli(train.main, _argv(workdir, data_root), capsys)
    assert_refused(outcome, 1, str(workdir), "finished", "--overwrite")
    assert _snapshot(workdir) == before
    again = run_cli(train.main, _argv(workdir, data_root, "--overwrite"), capsys)
    assert again.code == 0 and again.errors == []
    _assert_same_run(workdir, finished)  # trained again from scratch, to the same end


def test_failed_restore_writes_nothing(tmp_path, capsys, monkeypatch, finished, data_root):
    # Killed after the last checkpoint, before result.json: resuming only has to restore.
    workdir = _copy(finished, tmp_path / "run")
    (workdir / workdir_lib.RESULT_FILE).unlink()
    before = _snapshot(workdir)
    broken = workdir / "checkpoints" / "epoch_001"

    def unreadable(self, epoch, opt_state_like):
        raise OSError(5, "Input/output error", str(self.path(epoch)))

    with monkeypatch.context() as m:
        m.setattr(checkpoint.CheckpointStore, "restore", unreadable)
        outcome = run_cli(train.main, _argv(workdir, data_root, "--resume"), capsys)
    assert_refused(outcome, 1, str(broken), "Input/output error")
    assert _snapshot(workdir) == before  # config.json, log and checkpoints untouched
    fixed = run_cli(train.main, _argv(workdir, data_root, "--resume"), capsys)
    assert fixed.code == 0 and fixed.errors == []
    _assert_same_run(workdir, finished)


# ----------------------------------------------------------------------------- caches heal


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_damaged_latest_checkpoint_falls_back_in_one_line(
    tmp_path, capsys, caplog, finished, data_root, damage
):
    # Killed after the last checkpoint, before result.json; then a file of that checkpoint is
    # damaged. The one before it is complete: resume from it, train the last epoch again.
    workdir = _copy(finished, tmp_path / "run")
    (workdir / workdir_lib.RESULT_FILE).unlink()
    latest = workdir / "checkpoints" / f"epoch_{EPOCHS - 1:03d}"
    victim = max(
        (p for p in (latest / "params").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    _truncate(victim) if damage == "truncate" else victim.unlink()
    capsys.readouterr()
    assert train.main(_argv(workdir, data_root, "--resume")) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(latest) in warnings[0], err
    assert f"resuming from epoch_{EPOCHS - 2:03d}" in warnings[0]
    # orbax is never asked to read the damaged folder: none of its pages of log or traceback.
    assert "Traceback" not in err and "orbax" not in err.lower()
    assert not [r for r in caplog.records if r.name.split(".")[0] in ("absl", "orbax")]
    _assert_same_run(workdir, finished)


def test_refused_second_writer_leaves_the_lock_file_alone(tmp_path, capsys, finished, data_root):
    workdir = _copy(finished, tmp_path / "run")
    lock_file = workdir / workdir_lib.LOCK_FILE
    with workdir_lib.lock(workdir):
        assert lock_file.read_text() == str(os.getpid())
        outcome = run_cli(train.main, _argv(workdir, data_root, "--resume"), capsys)
        assert_refused(outcome, 1, str(workdir), "in use", str(os.getpid()))
        assert lock_file.read_text() == str(os.getpid())  # the holder is still named
    assert not lock_file.exists()  # released: the workdir holds only the run's files
    fixed = run_cli(train.main, _argv(workdir, data_root, "--resume"), capsys)
    assert fixed.code == 0 and fixed.errors == []


def test_non_finite_loss_names_the_last_checkpoint_that_exists(
    tmp_path, capsys, monkeypatch, finished, data_root
):
    workdir = tmp_path / "run"
    run_epoch = loop.run_epoch

    def nan_in_epoch_2(trainer, state):  # a NaN future in every training example of epoch 2
        if state.epoch >= 1:
            bad = trainer.train.subset(np.arange(len(trainer.train)))  # a copy
            bad.arrays["ego_agent_future"][:, 10, 0] = np.nan
            trainer = dataclasses.replace(trainer, train=bad)
        return run_epoch(trainer, state)

    with monkeypatch.context() as m:
        m.setattr(loop, "run_epoch", nan_in_epoch_2)
        outcome = run_cli(train.main, _argv(workdir, data_root), capsys)
    kept = workdir / "checkpoints" / "epoch_000"
    assert_refused(outcome, 1, "non-finite loss", "epoch 2, step 5", str(kept))
    assert (kept / checkpoint.METADATA_FILE).exists()
    assert not (workdir / workdir_lib.RESULT_FILE).exists()
    # With clean data the kept checkpoint resumes to the uninterrupted end.
    fixed = run_cli(train.main, _argv(workdir, data_root, "--resume"), capsys)
    assert fixed.code == 0 and fixed.errors == []
    _assert_same_run(workdir, finished)


# ----------------------------------------------------------------------------- full disk


@contextlib.contextmanager
def _small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real file system of `size` bytes at `folder` (root only: mount needs the privilege)."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)  # never mask the test's error


def _assert_full_disk_refused(outcome, workdir: Path) -> None:
    # The first write of epoch 1 is `best/` (it is the best epoch so far), then `epoch_000/`.
    assert_refused(outcome, 1, str(workdir / "checkpoints" / "best"), "No space left")
    for noise in ("Traceback", "Event loop is closed", "tensorstore_spec"):
        assert noise not in outcome.stderr, outcome.stderr
    assert not list((workdir / "checkpoints").glob(".*.tmp"))  # no half-written checkpoint
    assert not (workdir / "checkpoints" / "best").exists()


def _run_process(argv: list[str]):
    """`python -m gf_jax.train argv` in a child process: what the shell sees, including anything
    printed while the interpreter shuts down (orbax's threads printed 54 lines there)."""
    done = subprocess.run([sys.executable, "-m", "gf_jax.train", *argv],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    return Outcome(done.returncode, errors, done.stdout, done.stderr)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_is_one_line_and_resumes_once_space_is_freed(
    tmp_path, capsys, finished, data_root
):
    with _small_tmpfs(tmp_path / "disk", "96k") as disk:
        workdir = disk / "run"
        outcome = _run_process(_argv(workdir, data_root))
        _assert_full_disk_refused(outcome, workdir)
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        fixed = run_cli(train.main, _argv(workdir, data_root, "--resume"), capsys)
        assert fixed.code == 0 and fixed.errors == [], fixed.errors
        _assert_same_run(workdir, finished)


def test_disk_filling_up_during_a_write_is_one_line(
    tmp_path, capsys, monkeypatch, finished, data_root
):
    # Space ran out while orbax wrote (the free-space check passed): tensorstore's error is a
    # ValueError of several kilobytes ending in the OS error code; the user sees errno 28.
    def full(self, directory, *args, **kwargs):
        Path(directory).mkdir(parents=True)  # half a checkpoint is on disk when it fails
        (Path(directory) / "manifest.ocdbt").write_bytes(b"\0" * 100)
        raise ValueError(
            'RESOURCE_EXHAUSTED: Error writing local file "x/manifest.ocdbt": Failed to write'
            " 264 bytes to file 36: No space left on device [tensorstore_spec='{...}']"
            " [os_error_code='28']"
        )

    monkeypatch.setattr(checkpoint.ocp.Checkpointer, "save", full)
    workdir = tmp_path / "run"
    outcome = run_cli(train.main, _argv(workdir, data_root), capsys)
    _assert_full_disk_refused(outcome, workdir)
    assert "tensorstore_spec" not in outcome.errors[0]
    monkeypatch.undo()
    fixed = run_cli(train.main, _argv(workdir, data_root, "--resume"), capsys)
    assert fixed.code == 0 and fixed.errors == [], fixed.errors
    _assert_same_run(workdir, finished)
