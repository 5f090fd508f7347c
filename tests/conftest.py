"""Test setup: JAX on CPU with 4 fake devices, so sharding code paths run without accelerators."""

import os

# Must be set before jax is imported anywhere. Tests compile many small programs and run each
# briefly, so LLVM's optimisation passes are most of their time: without them tests/test_train.py
# took 189 s instead of 265 s (same busy machine, same results). Subprocesses inherit the flags.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax

jax.config.update("jax_default_matmul_precision", "highest")


import pytest  # noqa: E402
from scenario_factory import make_scenarios  # noqa: E402


@pytest.fixture
def scenarios():
    return make_scenarios


@pytest.fixture
def npz_source(tmp_path, scenarios):
    """A GameFormer npz folder with train/valid/test subfolders of 4/2/2 scenarios."""
    from gf_jax.data import gameformer_npz

    root = tmp_path / "processed"
    gameformer_npz.write_folder(scenarios(4, seed=0), root / "train")
    gameformer_npz.write_folder(scenarios(2, seed=1), root / "valid")
    gameformer_npz.write_folder(scenarios(2, seed=2), root / "test")
    return root
