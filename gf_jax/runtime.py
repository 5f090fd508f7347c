"""Process set-up for fast CPU training: run under tcmalloc when the system has it.

Why: XLA:CPU allocates each executable's temporary buffer afresh on every call (353 MB for the
`cpu` preset's train step at batch 16). glibc serves an allocation that large with `mmap` and
returns it with `munmap` on free (its mmap threshold is capped at 32 MB), so every step maps,
page-faults in (86k minor faults per step) and unmaps the whole buffer: about a third of a
training run's CPU time was spent in the kernel. tcmalloc keeps freed memory for reuse; with it
the same steps run without the faults (`experiments/bench_train.py` measures both in one run).

The allocator is chosen when the process starts (`LD_PRELOAD`), so the command-line entry points
call `use_tcmalloc()` first: if a tcmalloc library is installed (Debian/Ubuntu:
`apt-get install libtcmalloc-minimal4`) and not yet loaded, the process re-executes itself with it
preloaded; otherwise nothing happens. `GF_JAX_TCMALLOC=0` turns this off. Numbers do not change:
only where the buffers live does.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path

ENV_SWITCH = "GF_JAX_TCMALLOC"
LIBRARY_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
SEARCH_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
)


def find_tcmalloc() -> str | None:
    """The path of an installed tcmalloc shared library, or None."""
    for directory in SEARCH_DIRS:
        for name in LIBRARY_NAMES:
            if (Path(directory) / name).is_file():
                return str(Path(directory) / name)
    found = ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")
    return found if found and Path(found).is_absolute() else None


def tcmalloc_loaded() -> bool:
    """Whether this process runs with tcmalloc preloaded."""
    return "tcmalloc" in os.environ.get("LD_PRELOAD", "")


def preload_env(library: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with `library` added to LD_PRELOAD."""
    env = dict(os.environ if env is None else env)
    old = env.get("LD_PRELOAD", "")
    env["LD_PRELOAD"] = f"{library}:{old}" if old else library
    return env


def use_tcmalloc() -> None:
    """Re-executes this process under tcmalloc if it is installed, allowed and not yet loaded.

    Call it first in a command-line entry point, before any heavy import: the process image is
    replaced, so nothing done before the call survives (the command line does)."""
    if os.environ.get(ENV_SWITCH, "1") == "0" or tcmalloc_loaded():
        return
    library = find_tcmalloc()
    if library is None:
        return
    argv = [sys.executable, *sys.orig_argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, preload_env(library))
