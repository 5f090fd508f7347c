"""experiments/gpu_check.py on CPU with the tiny preset: every section runs and writes positive,
finite throughputs; the TracIn modes agree to float32 rounding; the one-epoch fit is finite."""

from __future__ import annotations

import json
import math

import pytest

from experiments import gpu_check


def _positive_finite(x: float) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


# Mostly XLA compiles of the tiny model: train step, eval step and four valuation kernels. The
# session's tiny workdir compiles the same train/eval steps and jvp kernel (same shapes: batch 16,
# chunk 32), so asking for it first turns those compiles into cache hits here.
@pytest.mark.slow
@pytest.mark.usefixtures("tiny_scored")
def test_gpu_check_tiny_runs_every_section(tmp_path):
    out = tmp_path / "gpu_check.json"
    argv = ["--preset", "tiny", "--n-train", "32", "--n-val", "16", "--steps", "3",
            "--loop-n", "8", "--chunk", "32", "--budget-s", "600",
            "--data-root", str(tmp_path / "data"), "--out", str(out)]  # fmt: skip
    returned = gpu_check.main(argv)
    record = json.loads(out.read_text())
    assert record["sections"] == returned["sections"]
    sections = record["sections"]
    assert set(sections) == set(gpu_check.SECTIONS)
    assert all(s["ran"] for s in sections.values()), sections
    machine = record["machine"]
    assert machine["backend"] == "cpu" and machine["device_count"] >= 1
    assert machine["jax"] and machine["device_kinds"]

    step = sections["train_step"]
    for key in ("samples_per_s", "compile_s", "gflop_per_example", "tflop_per_s"):
        assert _positive_finite(step[key]), (key, step[key])
    assert step["batch"] == 16 and math.isfinite(step["final_loss"])

    data = sections["data"]
    assert (data["n_train"], data["n_val"], data["cache_hit"]) == (32, 16, False)
    assert _positive_finite(data["scenarios_per_s"])

    tr = sections["tracin"]
    assert (tr["n_train"], tr["n_val"], tr["loop_n"]) == (32, 16, 8)
    assert _positive_finite(tr["val_grad"]["examples_per_s"])
    for mode, n in (("loop", 8), ("jvp", 32), ("vmap", 32)):
        fig = tr["modes"][mode]
        assert fig["ran"] and fig["examples"] == n
        assert _positive_finite(fig["examples_per_s"]) and _positive_finite(fig["x_loop"])
    assert tr["modes"]["loop"]["x_loop"] == pytest.approx(1.0)
    assert set(tr["rel_diff_pairs"]) == {"loop_vs_jvp", "loop_vs_vmap", "jvp_vs_vmap"}
    assert tr["score_scale"] > 0 and tr["max_rel_diff"] < 1e-4

    ep = sections["epoch"]
    assert ep["steps"] == 2 and _positive_finite(ep["samples_per_s"])
    assert _positive_finite(ep["fit_s"]) and 0 < ep["train_s"] <= ep["fit_s"]
    assert 0 < ep["eval_s"] <= ep["rest_s"] and ep["val_n"] == 16
    assert math.isfinite(ep["train_loss"]) and all(math.isfinite(v) for v in ep["val"].values())
    assert {"plan_ade", "plan_fde"} <= set(ep["val"])

    measures = [r["measure"] for r in record["rows"]]
    assert len(measures) == 12 and not any("skipped" in m for m in measures)


def test_budget_skips_optional_sections(tmp_path):
    out = tmp_path / "gpu_check.json"
    record = gpu_check.main(["--preset", "tiny", "--steps", "1", "--budget-s", "0",
                             "--out", str(out)])  # fmt: skip
    sections = record["sections"]
    assert sections["train_step"]["ran"]
    assert not any(sections[s]["ran"] for s in ("data", "tracin", "epoch"))
    assert json.loads(out.read_text())["sections"]["epoch"]["why"].startswith("over budget")
