"""Multi-host training as the README describes it: two processes on localhost, one workdir.

Each process is `python -m gf_jax.train ... --coordinator localhost:P --num-processes 2
--process-id I` on CPU with two devices, so the two together see the same four devices as the
in-process reference run (tests/conftest.py gives it four). They must end with the reference's
parameters and metrics and leave exactly one set of output files, written by process 0; a run
whose process 0 is killed after its first checkpoint resumes on both to the uninterrupted end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from gf_jax import checkpoint, train
from gf_jax import mesh as mesh_lib
from gf_jax.evaluate import METRIC_KEYS

EPOCHS = 2
TIMEOUT_S = 900  # compiling the train step for two processes takes minutes on two busy cores
# Runs `gf_jax.train.main`; GF_TEST_KILL_AT_EPOCH=E SIGKILLs the process when it is about to run
# 0-based epoch E (after the previous epoch's checkpoint is committed): a kill -9, deterministic.
DRIVER = """
import os, signal, sys
import jax
jax.config.update("jax_default_matmul_precision", "highest")  # as tests/conftest.py
from gf_jax import loop, train
kill_at = os.environ.get("GF_TEST_KILL_AT_EPOCH")
if kill_at is not None:
    run_epoch = loop.run_epoch
    def run_or_die(trainer, state):
        if state.epoch >= int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)
        return run_epoch(trainer, state)
    loop.run_epoch = run_or_die
sys.exit(train.main(sys.argv[1:]))
"""


# tests/conftest.py sets 4 fake devices; each of the two processes gets 2.
DEVICE_COUNT_FLAG = re.compile(r"(--xla_force_host_platform_device_count=)\d+")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _args(workdir: Path, data_root: Path, *extra: str) -> list[str]:
    return [
        "--preset", "tiny", "--epochs", str(EPOCHS), "--workdir", str(workdir),
        "--data-root", str(data_root), *extra,
    ]  # fmt: skip


def _launch(
    args: list[str], cache: Path, kill_lead_at: int | None = None
) -> list[subprocess.Popen]:
    """Starts the two processes of one run (CPU, two devices each) on a free local port.

    `cache`: JAX's persistent compilation cache, so that later launches skip the compile.
    """
    port = _free_port()
    procs = []
    for pid in range(2):
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            # tests/conftest.py's flags (its compile-time saving too), with two devices each
            "XLA_FLAGS": DEVICE_COUNT_FLAG.sub(r"\g<1>2", os.environ["XLA_FLAGS"]),
            "JAX_COMPILATION_CACHE_DIR": str(cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        }
        if kill_lead_at is not None and pid == 0:
            env["GF_TEST_KILL_AT_EPOCH"] = str(kill_lead_at)
        cluster = ["--coordinator", f"localhost:{port}", "--num-processes", "2"]
        cmd = [sys.executable, "-c", DRIVER, *args, *cluster, "--process-id", str(pid)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    return procs


def _wait(procs: list[subprocess.Popen], timeout: float = TIMEOUT_S) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each process; kills all of them if one overruns."""
    deadline = time.monotonic() + timeout
    out = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            out.append((p.returncode, stdout.decode(), stderr.decode()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return out


def _ok(runs: list[tuple[int, str, str]]) -> None:
    for i, (code, _, stderr) in enumerate(runs):
        assert code == 0, f"process {i} exited {code}:\n{stderr[-3000:]}"


def _files(workdir: Path) -> set[str]:
    """The workdir's files, orbax's content-hashed chunk names folded into one name."""
    return {
        re.sub(r"/d/[0-9a-f]+$", "/d/<chunk>", str(p.relative_to(workdir)))
        for p in workdir.rglob("*")
        if p.is_file()
    }


def _params(workdir: Path, epoch: int | str) -> dict[str, np.ndarray]:
    """{path of the leaf: array} of a checkpoint's parameters."""
    store = checkpoint.CheckpointStore(workdir / "checkpoints")
    leaves = jax.tree_util.tree_leaves_with_path(store.params(epoch))
    return {jax.tree_util.keystr(path): np.asarray(x) for path, x in leaves}


def _result(workdir: Path) -> dict:
    result = json.loads((workdir / "result.json").read_text())
    result["history"] = [
        {k: v for k, v in row.items() if not k.endswith("_seconds")} for row in result["history"]
    ]
    result.pop("fit_seconds")
    return result


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("multihost")


@pytest.fixture(scope="module")
def reference(root) -> Path:
    """One process, four devices, in this process; it also builds the shared data cache."""
    workdir = root / "one-process"
    assert jax.device_count() == 4 and jax.process_count() == 1
    assert train.main(_args(workdir, root / "data")) == 0
    return workdir


@pytest.fixture(scope="module")
def two_processes(root, reference) -> tuple[Path, list[tuple[int, str, str]]]:
    """The same run as two processes of two devices each, into one shared workdir."""
    workdir = root / "two-processes"
    runs = _wait(_launch(_args(workdir, root / "data"), root / "jax-cache"))
    _ok(runs)
    return workdir, runs


def test_two_processes_train_like_one_process_with_four_devices(reference, two_processes):
    workdir, runs = two_processes
    # One set of outputs, written by process 0 alone: the same files as the one-process run,
    # no lock or temporary left, nothing of process 1's (orbax would name it process_1).
    assert _files(workdir) == _files(reference)
    assert {"config.json", "metrics.jsonl", "result.json"} <= _files(workdir)
    # Only process 0 reports (progress lines and the final line).
    assert "best epoch 2" in runs[0][1] and "best epoch" not in runs[1][1]
    assert "epoch   1" not in runs[1][1] + runs[1][2]
    want, got = _result(reference), _result(workdir)
    assert got["config"] == want["config"] and got["best_epoch"] == want["best_epoch"]
    assert got["steps"] == want["steps"]
    # The same SPMD program on the same four devices; only the cross-device sums (gradients,
    # batch means) run through gloo between processes instead of within one process, in another
    # order. Float32 addition is not associative: metrics agree to rounding (~1e-7 relative,
    # measured), grown over 8 Adam steps; 1e-5 relative leaves a margin of 100.
    tol = {"rel": 1e-5, "abs": 1e-6}
    for key in METRIC_KEYS:
        assert got[key] == pytest.approx(want[key], **tol), key
        assert got["test"][key] == pytest.approx(want["test"][key], **tol), key
    for r_got, r_want in zip(got["history"], want["history"], strict=True):
        assert r_got == pytest.approx(r_want, **tol)
    lr_steps = want["config"]["preset"]["train"]["learning_rate"] * want["steps"]
    for epoch in (EPOCHS - 1, "best"):
        a_P, b_P = _params(workdir, epoch), _params(reference, epoch)
        for name in a_P:
            a, b = a_P[name], b_P[name]
            if name.endswith("['in_bias']"):  # [query | key | value] biases of an attention
                # A key bias shifts every score of a query alike, so softmax cancels it: its exact
                # gradient is 0 and its computed one is rounding noise, which Adam (dividing by
                # its own RMS) turns into steps of ~lr each way. It moves the two runs apart by
                # up to lr x steps, and changes no output; the query and value parts must agree.
                q_a, k_a, v_a = np.split(a, 3)
                q_b, k_b, v_b = np.split(b, 3)
                assert np.abs(k_a - k_b).max() <= lr_steps, name
                a, b = np.concatenate([q_a, v_a]), np.concatenate([q_b, v_b])
            # 8 steps of rounding-level differences, amplified where Adam divides small moments.
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=name)


def test_a_killed_process_resumes_on_both_to_the_uninterrupted_end(root, two_processes):
    uninterrupted, _ = two_processes
    workdir = root / "killed"
    args = _args(workdir, root / "data")
    # Process 0 (the one holding the lock and writing) is killed as it starts epoch 2. Its peer
    # blocks in the next collective; it must fail, not wait forever: give it a while, then kill.
    lead, peer = _launch(args, root / "jax-cache", kill_lead_at=1)
    lead.wait(timeout=TIMEOUT_S)
    assert lead.returncode == -signal.SIGKILL
    try:
        peer.wait(timeout=120)
    except subprocess.TimeoutExpired:
        peer.kill()
    peer.communicate()
    assert peer.returncode != 0
    assert not (workdir / "result.json").exists()
    assert checkpoint.CheckpointStore(workdir / "checkpoints").epochs() == [0]
    # Without --resume the interrupted run is refused (by process 0, and so by both), intact.
    refused = _wait(_launch(args, root / "jax-cache"))
    assert [code for code, _, _ in refused] == [1, 1]
    assert "--resume" in refused[0][2] and str(workdir) in refused[0][2]
    runs = _wait(_launch([*args, "--resume"], root / "jax-cache"))
    _ok(runs)
    # Bit-identical to the uninterrupted two-process run: same topology, same reduction order.
    assert _result(workdir) == _result(uninterrupted)
    assert _files(workdir) == _files(uninterrupted)
    for epoch in (EPOCHS - 1, "best"):
        got, want = _params(workdir, epoch), _params(uninterrupted, epoch)
        assert got.keys() == want.keys()
        for name in got:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


# ----------------------------------------------------------------------------- cluster detection

SLURM = {
    "SLURM_JOB_ID": "77",
    "SLURM_STEP_NODELIST": "node[1-2]",
    "SLURM_NTASKS": "2",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
}


@pytest.mark.parametrize(
    "environ,want",
    [
        ({}, None),  # a plain machine
        (SLURM, "slurm"),  # srun of two tasks
        ({**SLURM, "SLURM_NTASKS": "1"}, None),  # a one-task allocation: no peer will come
        ({**SLURM, "SLURM_STEP_NUM_TASKS": "1"}, None),  # the batch script itself, not srun
        ({k: v for k, v in SLURM.items() if k != "SLURM_STEP_NODELIST"}, None),  # salloc shell
        ({"TPU_WORKER_HOSTNAMES": "t0,t1"}, "cloud-tpu"),  # a GKE TPU slice
    ],
)
def test_cluster_detection(environ, want):
    assert mesh_lib.cluster_detected(environ) == want


def test_distributed_is_initialized_only_where_a_cluster_is(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **kw: calls.append((a, kw)))
    for key in [k for k in os.environ if k.startswith(("SLURM_", "TPU_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setattr(mesh_lib, "_tpu_chips_present", lambda: False)
    assert mesh_lib.initialize_distributed() is None and calls == []  # this machine
    for key, value in SLURM.items():
        monkeypatch.setenv(key, value)
    assert mesh_lib.initialize_distributed() == "slurm"
    assert calls == [((), {})]  # no arguments: JAX reads the job from SLURM itself
    cluster = mesh_lib.Cluster("host0:1234", 2, 1)
    assert mesh_lib.initialize_distributed(cluster) == "flags"
    assert calls[-1] == (
        (),
        {"coordinator_address": "host0:1234", "num_processes": 2, "process_id": 1},
    )
