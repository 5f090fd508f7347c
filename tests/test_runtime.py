"""gf_jax.runtime: a process re-executes itself under tcmalloc when one is installed, once."""

from __future__ import annotations

import os
import subprocess
import sys

from gf_jax import runtime

SCRIPT = """
import os, sys
from gf_jax import runtime
runtime.SEARCH_DIRS = (sys.argv[1],)
if runtime.tcmalloc_loaded():
    print("preloaded", os.environ["LD_PRELOAD"], sys.argv[1:])
    sys.exit(0)
runtime.use_tcmalloc()
print("not re-executed")
"""


def _run(tmp_path, **env) -> subprocess.CompletedProcess:
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    base = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", runtime.ENV_SWITCH)}
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path), "--flag"],
        env={**base, **env}, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


def test_reexecutes_with_the_library_and_the_same_arguments(tmp_path):
    lib = tmp_path / "libtcmalloc_minimal.so.4"
    lib.write_bytes(b"not an ELF")  # ld.so ignores it with a warning; the preload is what counts
    out = _run(tmp_path).stdout.strip()
    assert out == f"preloaded {lib} ['{tmp_path}', '--flag']"


def test_switch_off_or_no_library_leaves_the_process_alone(tmp_path):
    assert _run(tmp_path).stdout.strip() == "not re-executed"  # nothing installed there
    (tmp_path / "libtcmalloc_minimal.so.4").write_bytes(b"")
    out = _run(tmp_path, **{runtime.ENV_SWITCH: "0"}).stdout.strip()
    assert out == "not re-executed"


def test_preload_env_keeps_existing_preloads():
    env = runtime.preload_env("/lib/tc.so", {"LD_PRELOAD": "/lib/other.so", "X": "1"})
    assert env == {"LD_PRELOAD": "/lib/tc.so:/lib/other.so", "X": "1"}
    assert runtime.preload_env("/lib/tc.so", {})["LD_PRELOAD"] == "/lib/tc.so"
