"""gf_jax.evaluate: per-example values in the split's order with the padding dropped, and split
metrics that are those values aggregated (of the whole split, or of any subset)."""

import jax
import numpy as np
import pytest
from scenario_factory import make_scenarios

from gf_jax import evaluate, metrics, model
from gf_jax.config import PRESETS

CFG = PRESETS["tiny"].model


@pytest.fixture(scope="module")
def setup():
    return model.init_params(CFG, jax.random.key(0)), make_scenarios(7, seed=3)


def test_per_example_keeps_the_order_and_drops_the_padding(setup):
    params, data = setup
    per_N = evaluate.per_example(params, data, CFG, batch_size=4)  # 8 slots: 1 padded
    assert set(per_N) >= {"loss", "plan_ade", "pred_ade", "pred_count"}
    assert all(v.shape == (7,) for v in per_N.values())
    for i in (0, 4, 6):  # alone in its batch, each example gives the same values
        alone = evaluate.per_example(params, data.subset([i]), CFG, batch_size=4)
        for k, v in per_N.items():
            np.testing.assert_allclose(alone[k], v[i : i + 1], rtol=1e-5, atol=1e-6, err_msg=k)


def test_split_metrics_are_the_per_example_values_aggregated(setup):
    params, data = setup
    per_N = evaluate.per_example(params, data, CFG, batch_size=4)
    got = evaluate.evaluate(params, data, CFG, batch_size=4)
    assert got["loss"] == pytest.approx(float(np.mean(per_N["loss"])), rel=1e-6)
    want = metrics.aggregate({k: v for k, v in per_N.items() if k != "loss"})
    for k in evaluate.METRIC_KEYS:
        assert got[k] == pytest.approx(float(want[k]), rel=1e-6), k
    # A subset's summary is its own examples' aggregate: what the breakdown by type reports.
    part = evaluate.summarize({k: v[[1, 2, 5]] for k, v in per_N.items()})
    alone = evaluate.evaluate(params, data.subset([1, 2, 5]), CFG, batch_size=4)
    for k in ("loss", *evaluate.METRIC_KEYS):
        assert part[k] == pytest.approx(alone[k], rel=1e-5), k
