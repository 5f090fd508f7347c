"""Planning and prediction metrics: parity with the original, per-example vs batch, quirks."""

from pathlib import Path

import numpy as np
import pytest

from gf_jax import metrics
from gf_jax.config import PRESETS

FIXTURE = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "fixtures"
    / "gameformer_parity_seed0.npz"
).resolve()


@pytest.mark.skipif(not FIXTURE.exists(), reason=f"parity fixture not found at {FIXTURE}")
def test_matches_the_original_on_the_fixture():
    z = np.load(FIXTURE)
    outputs = {k.split(".", 1)[1]: z[k] for k in z.files if k.startswith("output.")}
    targets = {k.split(".", 1)[1]: z[k] for k in z.files if k.startswith("target.")}
    given = metrics.batch_metrics(
        outputs, {"final_best_mode_mu": z["loss.final_best_mode_mu"]}, targets
    )
    recomputed = metrics.batch_metrics(outputs, None, targets)
    for ours, theirs in metrics.ORIGINAL_NAMES.items():
        np.testing.assert_allclose(given[ours], z[f"metric.{theirs}"], rtol=1e-5, err_msg=ours)
        np.testing.assert_allclose(recomputed[ours], z[f"metric.{theirs}"], rtol=1e-4)
    assert PRESETS["paper"].model.neighbors == z["target.neighbor_agents_future"].shape[1]


def _arrays(seed: int, b: int = 3, n: int = 4):
    rng = np.random.default_rng(seed)
    plan = rng.normal(0, 2, (b, 80, 3)).astype(np.float32)
    ego = rng.normal(0, 2, (b, 80, 3)).astype(np.float32)
    pred = rng.normal(0, 2, (b, n, 80, 2)).astype(np.float32)
    nb = rng.normal(0, 2, (b, n, 80, 3)).astype(np.float32)
    nb[0, 2:] = 0.0  # example 0: two padded agents
    nb[1] = 0.0  # example 1: no neighbours at all
    nb[-1, 1, 30:] = 0.0  # last example: agent 1 disappears after 30 steps
    return plan, pred, ego, nb


def _reference(plan, pred, ego, nb):
    """The original's motion_metrics, in numpy."""
    valid = nb[..., :2] != 0
    pred = pred * valid
    pd = np.linalg.norm(plan[..., :2] - ego[..., :2], axis=-1)
    qd = np.linalg.norm(pred - nb[..., :2], axis=-1)
    he = np.abs(np.fmod(plan[..., 2] - ego[..., 2] + np.pi, 2 * np.pi) - np.pi)
    sel = valid[:, :, 0, 0]
    return {
        "plan_ade": pd.mean(),
        "plan_fde": pd[:, -1].mean(),
        "plan_ahe": he.mean(),
        "plan_fhe": he[:, -1].mean(),
        "pred_ade": qd.mean(-1)[sel].mean(),
        "pred_fde": qd[:, :, -1][sel].mean(),
    }


def test_per_example_aggregates_to_the_batch_value():
    plan, pred, ego, nb = _arrays(0)
    per = metrics.per_example_from_arrays(plan, pred, ego, nb)
    assert np.isnan(per["pred_ade"][1]) and per["pred_count"].tolist() == [2, 0, 4]
    batch = metrics.aggregate(per)
    ref = _reference(plan, pred, ego, nb)
    for k in metrics.METRIC_NAMES:
        np.testing.assert_allclose(batch[k], ref[k], rtol=1e-5, err_msg=k)
        np.testing.assert_allclose(
            metrics.motion_metrics(plan, pred, ego, nb)[k], ref[k], rtol=1e-5
        )
    # Aggregating per-example values of two batches equals the value of the joined batch.
    plan2, pred2, ego2, nb2 = _arrays(1, b=2)
    per2 = metrics.per_example_from_arrays(plan2, pred2, ego2, nb2)
    joined = metrics.aggregate({k: np.concatenate([per[k], per2[k]]) for k in per})
    ref_joined = _reference(
        *(
            np.concatenate(p)
            for p in zip((plan, pred, ego, nb), (plan2, pred2, ego2, nb2), strict=True)
        )
    )
    for k in metrics.METRIC_NAMES:
        np.testing.assert_allclose(joined[k], ref_joined[k], rtol=1e-5, err_msg=k)


def test_heading_error_keeps_the_fmod_quirk():
    plan = np.zeros((1, 80, 3), np.float32)
    ego = np.zeros((1, 80, 3), np.float32)
    plan[..., 2], ego[..., 2] = -3.0, 3.0  # difference -6 rad, i.e. 0.28 rad the short way
    per = metrics.per_example_from_arrays(
        plan, np.zeros((1, 1, 80, 2)), ego, np.zeros((1, 1, 80, 3))
    )
    np.testing.assert_allclose(per["plan_ahe"], 6.0, rtol=1e-5)  # not wrapped, as the original
    plan[..., 2], ego[..., 2] = 3.0, -3.0  # +6 rad is wrapped
    per = metrics.per_example_from_arrays(
        plan, np.zeros((1, 1, 80, 2)), ego, np.zeros((1, 1, 80, 3))
    )
    np.testing.assert_allclose(per["plan_ahe"], 2 * np.pi - 6.0, rtol=1e-4)
