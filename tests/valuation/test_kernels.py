"""valuation.kernels: XLA options reach the compiled valuation programs, and a program compiled
under one set of options is never served under another."""

import jax
import numpy as np
import pytest
import valuation_helpers as h

from valuation import grads, kernels


@pytest.fixture
def restore_options():
    yield
    kernels.set_compiler_options(None)


def _losses(loss_fn):
    params, data = h.mlp_params(), h.mlp_data(4)
    k = kernels.kernels(loss_fn, False)
    return k, np.asarray(k.losses(params, data, kernels.default_key(None), np.arange(4)))


@pytest.mark.usefixtures("restore_options")
def test_options_key_the_kernel_cache_and_reach_xla():
    loss_fn = h.mlp_loss_nodrop
    default, want = _losses(loss_fn)
    assert kernels.compiler_options_key() == ()

    kernels.set_compiler_options({"xla_backend_optimization_level": 1})
    assert kernels.compiler_options_key() == (("xla_backend_optimization_level", 1),)
    other, got = _losses(loss_fn)
    assert other is not default  # a new program for the new options
    np.testing.assert_allclose(got, want, rtol=1e-6)

    # An option XLA does not know fails at compile time: the options are passed through.
    kernels.set_compiler_options({"xla_no_such_option": 1})
    with pytest.raises(jax.errors.JaxRuntimeError, match="xla_no_such_option"):
        _losses(loss_fn)

    kernels.set_compiler_options(None)  # back to the defaults: the first program again
    assert kernels.kernels(loss_fn, False) is default


def test_grads_reexports_the_option_setters():
    assert grads.set_compiler_options is kernels.set_compiler_options
    assert grads.compiler_options_key is kernels.compiler_options_key
