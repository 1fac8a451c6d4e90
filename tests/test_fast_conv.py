"""The matmul-gradient conv equals XLA's conv at every order of differentiation.

- `fast_conv.conv3x3` against `lax.conv_general_dilated`: values, first-order
  gradients, second-order gradients (a gradient of a gradient, as the meta
  step takes), and under `vmap` with batched and unbatched kernels.
- `fast_conv.Conv3x3` against `flax.linen.Conv`: same parameters, same output.
- The whole meta objective (second order, all four branches) with
  `conv_impl='matmul'` against the default, in float64: loss, gradients and
  new batch statistics.
"""

import functools

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from fasjax import meta
from fasjax import models
from fasjax import train
from fasjax.models import fast_conv
from fasjax.models import layers

D, B, S, WIDTH = 3, 4, 32, 0.125


def _xla_conv(x, kernel):
  return lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _inputs(seed=0, n=2, size=5, c=3, o=4):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((n, size, size, c)), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((3, 3, c, o)), jnp.float32)
  target = jnp.asarray(rng.standard_normal((n, size, size, o)), jnp.float32)
  return x, kernel, target


def _assert_close(actual, expected, rtol=2e-5, atol=2e-5):
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol,
                               atol=atol)


def test_values_equal_xla_conv():
  x, kernel, _ = _inputs()
  _assert_close(fast_conv.conv3x3(x, kernel), _xla_conv(x, kernel))


def test_rectangular_maps_and_single_pixel():
  rng = np.random.default_rng(1)
  kernel = jnp.asarray(rng.standard_normal((3, 3, 2, 3)), jnp.float32)
  for shape in [(1, 4, 7, 2), (2, 1, 1, 2)]:
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    loss = lambda conv, x, k: jnp.sum(jnp.sin(conv(x, k)))
    _assert_close(jax.grad(functools.partial(loss, fast_conv.conv3x3), (0, 1))(
        x, kernel), jax.grad(functools.partial(loss, _xla_conv), (0, 1))(
            x, kernel))


def _loss(conv, x, kernel, target):
  # A non-quadratic loss, so second derivatives depend on the values.
  return jnp.sum(jnp.tanh(conv(x, kernel)) * target)


def test_first_order_gradients_equal():
  x, kernel, target = _inputs()
  fast = jax.grad(functools.partial(_loss, fast_conv.conv3x3), (0, 1))
  plain = jax.grad(functools.partial(_loss, _xla_conv), (0, 1))
  _assert_close(fast(x, kernel, target), plain(x, kernel, target))


def _second_order(conv):
  """d/d(x, kernel) of a function of the kernel gradient, like the meta step."""
  def inner(x, kernel, target):
    g = jax.grad(functools.partial(_loss, conv), 1)(x, kernel, target)
    adapted = kernel - 0.5 * g
    return jnp.sum(jnp.tanh(conv(x, adapted)) ** 2) + jnp.sum(g ** 2)
  return jax.grad(inner, (0, 1, 2))


def test_second_order_gradients_equal():
  x, kernel, target = _inputs(seed=2)
  _assert_close(_second_order(fast_conv.conv3x3)(x, kernel, target),
         _second_order(_xla_conv)(x, kernel, target), rtol=1e-4, atol=1e-4)


def test_hessian_vector_products_equal():
  x, kernel, target = _inputs(seed=3)
  v = jnp.ones_like(kernel)

  def hvp(conv):
    grad = jax.grad(functools.partial(_loss, conv), 1)
    return jax.grad(lambda k: jnp.vdot(grad(x, k, target), v))(kernel)
  _assert_close(hvp(fast_conv.conv3x3), hvp(_xla_conv), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('kernel_batched', [False, True])
def test_vmap_equals_loop(kernel_batched):
  x, kernel, target = _inputs(seed=4)
  xs = jnp.stack([x, 2 * x])
  kernels = jnp.stack([kernel, -kernel]) if kernel_batched else kernel
  axes = (0, 0 if kernel_batched else None, None)
  fast = jax.vmap(jax.grad(functools.partial(_loss, fast_conv.conv3x3),
                           (0, 1)), axes)(xs, kernels, target)
  for i in range(2):
    k = kernels[i] if kernel_batched else kernel
    plain = jax.grad(functools.partial(_loss, _xla_conv), (0, 1))(
        xs[i], k, target)
    _assert_close(jax.tree.map(lambda a, i=i: a[i], fast), plain)


def test_module_matches_flax_conv():
  x, _, _ = _inputs(seed=5)
  flax_conv = nn.Conv(4, (3, 3), padding='SAME', use_bias=False)
  fast = fast_conv.Conv3x3(4)
  key = jax.random.PRNGKey(0)
  flax_vars, fast_vars = flax_conv.init(key, x), fast.init(key, x)
  _assert_close(fast_vars, flax_vars, rtol=0, atol=0)
  _assert_close(fast.apply(fast_vars, x), flax_conv.apply(flax_vars, x))


def test_conv_bn_relu_parameter_trees_match():
  x, _, _ = _inputs(seed=6)
  key = jax.random.PRNGKey(1)
  plain = layers.ConvBNReLU(4).init(key, x, train=False)
  fast = layers.ConvBNReLU(4, conv_impl='matmul').init(key, x, train=False)
  assert jax.tree.structure(plain) == jax.tree.structure(fast)
  _assert_close(fast, plain, rtol=0, atol=0)


def test_unknown_conv_impl_is_rejected():
  x, _, _ = _inputs()
  with pytest.raises(ValueError, match='conv_impl'):
    layers.ConvBNReLU(4, conv_impl='winograd').init(jax.random.PRNGKey(0), x,
                                                    train=False)


# The whole meta objective ------------------------------------------------


def _networks(conv_impl, dtype, hp):
  """(networks, replacement unit or None) with `conv_impl` in every conv."""
  if 'conv_impl' in models.MultiTaskNet.__dataclass_fields__:
    return meta.Networks(
        models.MultiTaskNet(width=WIDTH, dtype=dtype, conv_impl=conv_impl),
        models.MetaLearner(width=WIDTH, dtype=dtype, conv_impl=conv_impl),
        hp), None
  # Until the model modules carry the field: a unit whose default differs,
  # swapped in while tracing (they look `layers.ConvBNReLU` up then).
  class Unit(layers.ConvBNReLU):
    conv_impl: str = 'matmul'
  return meta.Networks(models.MultiTaskNet(width=WIDTH, dtype=dtype),
                       models.MetaLearner(width=WIDTH, dtype=dtype),
                       hp), Unit


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  label = np.tile(np.r_[np.ones(B // 2), np.zeros(B // 2)], (D, 1))
  return {
      'image': rng.random((D, B, S, S, 6)),
      'depth': rng.random((D, B, S // 8, S // 8)) * label[..., None, None],
      'parsing': rng.integers(0, 13, (D, B, S, S)).astype(np.int32),
      'label': label.astype(np.int32),
  }


def _objective_and_grads(conv_impl):
  """(loss, grads, new batch stats) of one meta objective, float64, numpy."""
  with jax.enable_x64(True):
    # A large inner step makes the second-order term matter.
    hp = meta.MetaHParams(inner_lr=0.5)
    nets, unit = _networks(conv_impl, jnp.float64, hp)
    saved = layers.ConvBNReLU
    if unit is not None and conv_impl != 'xla':
      layers.ConvBNReLU = unit
    try:
      tx = meta.make_optimizer(1e-3, 0.9, 0.999, 1e-8, 0.0)
      st = train.jit_init_state(nets, tx, S, seed=0)
      params = jax.tree.map(lambda a: a.astype(jnp.float64), st.params)
      stats = jax.tree.map(lambda a: a.astype(jnp.float64), st.batch_stats)
      fn = jax.jit(jax.value_and_grad(
          functools.partial(meta.objective, nets=nets), has_aux=True))
      args = (params, stats, _batch(), jax.random.PRNGKey(3), jnp.asarray(0))
      (loss, aux), grads = fn(*args)
      uses_fast = 'custom_vjp_call' in str(jax.make_jaxpr(
          functools.partial(meta.objective, nets=nets))(*args))
      return jax.tree.map(np.asarray, (loss, grads, aux['batch_stats'])), (
          uses_fast)
    finally:
      layers.ConvBNReLU = saved


@pytest.fixture(scope='module')
def plain_result():
  result, uses_fast = _objective_and_grads('xla')
  assert not uses_fast
  return result


@pytest.fixture(scope='module')
def fast_result():
  result, uses_fast = _objective_and_grads('matmul')
  assert uses_fast
  return result


def test_meta_objective_loss_equal(plain_result, fast_result):
  np.testing.assert_allclose(fast_result[0], plain_result[0], rtol=1e-10)


def test_meta_objective_gradients_equal(plain_result, fast_result):
  assert (jax.tree.structure(fast_result[1])
          == jax.tree.structure(plain_result[1]))
  _assert_close(fast_result[1], plain_result[1], rtol=1e-8, atol=1e-10)
  # The meta learner's gradient carries the second-order term.
  assert np.abs(fast_result[1]['meta']['conv1']['Conv_0']['kernel']).max() > 0


def test_meta_objective_batch_stats_equal(plain_result, fast_result):
  _assert_close(fast_result[2], plain_result[2], rtol=1e-10, atol=1e-12)
