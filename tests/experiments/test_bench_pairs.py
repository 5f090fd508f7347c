"""experiments/bench_pairs.py on the tiny preset: one row per dim, and bad options refused."""

from __future__ import annotations

import json
import math

import pytest

from experiments import bench_pairs


def _refusal(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    """(exit code, `error:` lines) of `main(argv)` as the shell sees it (as `fault_harness.run_cli`,
    which lives with the fault tests and is not importable from here)."""
    capsys.readouterr()
    try:
        code = bench_pairs.main(argv)
    except SystemExit as e:  # argparse refuses while parsing
        code = e.code
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    return code, errors


@pytest.mark.slow  # two compiles (train step, per-example gradient); the projection's is tested
def test_writes_a_row_with_the_cost_of_a_training_run(tmp_path):
    out = tmp_path / "pairs.json"
    argv = ["--preset", "tiny", "--n", "8", "--n-val", "4", "--dims", "exact", "--chunk", "4",
            "--steps", "2", "--data-root", str(tmp_path / "data"), "--out", str(out)]  # fmt: skip
    result = bench_pairs.main(argv)
    record = json.loads(out.read_text())
    assert record["benchmark"] == "pairs" and record["config"]["dims"] == ["exact"]
    assert [r["dim"] for r in record["rows"]] == ["exact"] == [r["dim"] for r in result["rows"]]
    for row in record["rows"]:
        assert math.isfinite(row["seconds"]) and row["seconds"] > 0
        assert math.isfinite(row["cost / training run"]) and row["cost / training run"] > 0
        assert row["full_s"] > 0 and row["held_mb"] > 0


@pytest.mark.parametrize(
    ("argv", "flag"),
    [(["--dims", "0"], "--dims"), (["--dims", "exact,x"], "--dims"), (["--n", "0"], "--n"),
     (["--n", "100000"], "--n")],
)  # fmt: skip
def test_refuses_a_bad_option_in_one_line(tmp_path, capsys, argv, flag):
    out = tmp_path / "pairs.json"
    argv = [*argv, "--preset", "tiny", "--data-root", str(tmp_path / "data"), "--out", str(out)]
    code, errors = _refusal(argv, capsys)
    assert code == 2 and len(errors) == 1 and flag in errors[0], (code, errors)
    assert not out.exists()


def test_per_checkpoint_fit_separates_fixed_and_per_example_time():
    # A pass of m examples takes fixed + m * per: two passes recover both exactly.
    fixed, per = bench_pairs._per_checkpoint_fit(2.0 + 8 * 0.5, 8, 2.0 + 64 * 0.5, 64)
    assert (fixed, per) == pytest.approx((2.0, 0.5))
    # Timing noise that makes the small pass look cheap never gives negative fixed time; a full
    # pass no slower than the small one counts all its time per example.
    assert bench_pairs._per_checkpoint_fit(1.0, 8, 10.0, 16) == pytest.approx((0.0, 9.0 / 8))
    assert bench_pairs._per_checkpoint_fit(5.0, 8, 4.0, 64) == pytest.approx((0.0, 4.0 / 64))
    assert bench_pairs._per_checkpoint_fit(5.0, 8, 6.0, 8) == pytest.approx((0.0, 6.0 / 8))
