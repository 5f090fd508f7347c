"""Shared helpers for `bench_*.py`: wall-clock timing, a printed table, and a JSON record.

Benchmarks report ratios measured within one run; absolute times depend on the machine and are
recorded with a description of it.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gf_jax import atomic


def timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[float, Any]:
    """Best wall time over `repeats` calls of fn (seconds) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    try:
        import jax

        info["jax"] = jax.__version__
        info["devices"] = [str(d) for d in jax.devices()]
    except Exception:  # a data-only benchmark must not need a working JAX backend
        pass
    return info


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table of `rows` (dicts) with the given columns."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def exit_status(returned: Any) -> int:
    """The process exit code of a `main` that returns its record on success (an int: an error's
    code from `gf_jax.cli.guarded`)."""
    return returned if isinstance(returned, int) else 0


def write_record(path: str | os.PathLike, name: str, rows: list[dict], config: dict) -> Path:
    """Writes {benchmark, config, machine, rows} as JSON, atomically."""
    record = {"benchmark": name, "config": config, "machine": machine(), "rows": rows}
    return atomic.write_json(path, record)


class TrainStepper:
    """The preset's jitted, donated train step fed by the real input path, for timing.

    `steps + 1` batches of `train` in one fixed shuffled order are gathered by
    `gf_jax.sampling.batches` and sharded over the visible devices; `step(i)` runs one step and
    waits for it, so the first call compiles and later calls time one step each. JAX is imported
    here, not at module level: `bench_train.py` chooses the allocator of a child process first.
    """

    def __init__(self, preset: Any, train: Any, steps: int) -> None:
        import jax
        import jax.numpy as jnp
        import numpy as np

        from gf_jax import mesh as mesh_lib
        from gf_jax import model
        from gf_jax import steps as steps_lib
        from gf_jax.sampling import batches

        mcfg, tcfg = preset.model, preset.train
        self.mesh = mesh_lib.data_mesh()
        self.step_fn, self.eval_fn = steps_lib.compiled_steps(mcfg, tcfg)
        self.params = mesh_lib.replicate(model.init_params(mcfg, jax.random.key(0)), self.mesh)
        opt = steps_lib.make_optimizer(tcfg).init(self.params)
        self.opt_state = mesh_lib.replicate(opt, self.mesh)
        order = np.random.default_rng(0).permutation(len(train))
        self._feed = batches(train, np.resize(order, (steps + 1) * tcfg.batch_size),
                             tcfg.batch_size, mcfg.neighbors)  # fmt: skip
        self._lr = jnp.float32(tcfg.learning_rate)
        self._key = jax.random.key
        self._shard = mesh_lib.shard_batch

    def step(self, i: int) -> None:
        batch, weight_B = next(self._feed)
        sharded = self._shard((batch, weight_B), self.mesh)
        self.params, self.opt_state, loss = self.step_fn(
            self.params, self.opt_state, *sharded, self._key(i), self._lr
        )
        loss.block_until_ready()
