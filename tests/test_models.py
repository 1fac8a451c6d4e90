"""Networks against independent references: ECA in numpy, conv shapes and
parameter counts from docs/design.md §1's layer table, the shared U-Net encoder."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fasjax import models
from fasjax.models import layers


@pytest.mark.parametrize('channels,expected', [
    (6, 1), (64, 3), (128, 5), (196, 5), (256, 5), (384, 5), (512, 5),
    (16, 3), (8, 3), (2, 1), (1024, 5), (2048, 7)])
def test_eca_kernel_size(channels, expected):
  assert models.eca_kernel_size(channels) == expected


def test_eca_kernel_size_formula_by_hand():
  for c in range(1, 5000):
    t = int(abs((math.log(c, 2) + 1) / 2))
    assert models.eca_kernel_size(c) == (t if t % 2 == 1 else t + 1)


def test_eca_against_numpy():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 5, 5, 64)).astype(np.float32)
  eca = models.ECA()
  variables = eca.init(jax.random.PRNGKey(0), x)
  w = np.asarray(variables['params']['conv']['kernel'])[:, 0, 0]  # [k]
  assert w.shape == (3,)
  y = np.asarray(eca.apply(variables, x))
  pooled = x.mean(axis=(1, 2))
  padded = np.pad(pooled, ((0, 0), (1, 1)))
  # Cross-correlation over channels with zero padding, no bias.
  att = np.stack([padded[:, c:c + 3] @ w for c in range(64)], axis=1)
  expected = x * (1 / (1 + np.exp(-att)))[:, None, None, :]
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def _conv_params(cin, cout, k=3):
  return k * k * cin * cout


# docs/design.md §1 at width 1.0, written out layer by layer.
ENCODER_LAYERS = [(6, 64), (64, 128), (128, 196), (196, 128),
                  (128, 128), (128, 196), (196, 128),
                  (128, 128), (128, 196), (196, 128)]
DEPTH_LAYERS = [(384, 128), (128, 64), (64, 1)]
META_LAYERS = [(256, 128), (128, 256), (256, 512)]


@pytest.fixture(scope='module')
def full_size_shapes():
  net = models.MultiTaskNet(width=1.0)
  meta = models.MetaLearner(width=1.0)
  x = jax.ShapeDtypeStruct((1, 256, 256, 6), jnp.float32)
  net_vars = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0),
                                             jnp.zeros(x.shape), train=False))
  out = jax.eval_shape(lambda v: net.apply(v, jnp.zeros(x.shape), train=False),
                       net_vars)
  meta_vars = jax.eval_shape(lambda: meta.init(
      jax.random.PRNGKey(0), jnp.zeros(out['meta_input'].shape), train=False))
  return net_vars, out, meta_vars


def test_full_size_output_shapes(full_size_shapes):
  _, out, _ = full_size_shapes
  assert out['depth'].shape == (1, 32, 32)
  assert out['parsing'].shape == (1, 256, 256, models.NUM_CLASSES)
  assert out['meta_input'].shape == (1, 32, 32, 256)  # f 128 || ASC 128


def _kernel_count(tree):
  return sum(int(np.prod(leaf.shape)) for path, leaf in
             jax.tree_util.tree_flatten_with_path(tree)[0]
             if 'kernel' in jax.tree_util.keystr(path))


def test_encoder_depth_meta_parameter_counts(full_size_shapes):
  net_vars, _, meta_vars = full_size_shapes
  params = net_vars['params']
  assert _kernel_count(params['encoder']) == sum(
      _conv_params(a, b) for a, b in ENCODER_LAYERS)
  assert _kernel_count(params['depth']) == sum(
      _conv_params(a, b) for a, b in DEPTH_LAYERS)
  assert _kernel_count(meta_vars['params']) == sum(
      _conv_params(a, b) for a, b in META_LAYERS) + 512 * 1


def test_parsing_unet_shares_the_encoder(full_size_shapes):
  net_vars, _, _ = full_size_shapes
  params = net_vars['params']
  # The decoder owns no encoder convs: only up-sampling stages and a classifier.
  assert set(params['decoder']) == {'up1_conv1', 'up1_conv2', 'up2_conv1',
                                    'up2_conv2', 'up3_conv1', 'up3_conv2',
                                    'classifier'}
  # Its first stage reads x4 (128) || x3 (128).
  first = jax.tree.leaves(params['decoder']['up1_conv1'])
  assert any(leaf.shape == (3, 3, 256, 128) for leaf in first)


def test_parsing_loss_reaches_the_encoder():
  net = models.MultiTaskNet(width=0.125)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 32, 6))
  variables = net.init(jax.random.PRNGKey(0), x, train=False)

  def parsing_only(params):
    out, _ = net.apply({'params': params,
                        'batch_stats': variables['batch_stats']}, x,
                       train=True, mutable=['batch_stats'])
    return jnp.mean(out['parsing'] ** 2)

  grads = jax.grad(parsing_only)(variables['params'])
  enc = grads['encoder']['down3_conv3']
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(enc))
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads['depth']))


def test_ablation_switches_change_the_graph():
  x = jnp.zeros((1, 32, 32, 6))
  no_asc = models.MultiTaskNet(width=0.125, use_asc=False)
  v = no_asc.init(jax.random.PRNGKey(0), x, train=False)
  assert 'asc' not in v['params']
  assert no_asc.apply(v, x, train=False)['meta_input'].shape[-1] == 16
  bare = models.MultiTaskNet(width=0.125, use_asc=False, use_decoder=False)
  v = bare.init(jax.random.PRNGKey(0), x, train=False)
  assert 'decoder' not in v['params']
  assert 'parsing' not in bare.apply(v, x, train=False)


def test_meta_learner_embedding_is_unit_norm():
  meta = models.MetaLearner(width=0.125)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 4, 32))
  v = meta.init(jax.random.PRNGKey(1), x, train=False)
  emb, logit = meta.apply(v, x, train=False)
  assert logit.shape == (3,)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(emb), axis=1), 1.0,
                             rtol=1e-5)


def test_pools_equal_numpy_loops_and_reduce_window_gradients():
  """max_pool2 / avg_pool_to vs loops, and their gradients vs reduce_window."""
  x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
  want_max = np.array([[[[x[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c].max()
                          for c in range(3)] for j in range(4)]
                        for i in range(4)] for b in range(2)])
  want_avg = np.array([[[[x[b, 4 * i:4 * i + 4, 4 * j:4 * j + 4, c].mean()
                          for c in range(3)] for j in range(2)]
                        for i in range(2)] for b in range(2)])
  np.testing.assert_array_equal(layers.max_pool2(jnp.asarray(x)), want_max)
  np.testing.assert_allclose(layers.avg_pool_to(jnp.asarray(x), 2), want_avg,
                             rtol=1e-6)
  # Continuous random inputs have no ties, where the gradients may differ.
  for ours, reference in (
      (layers.max_pool2, lambda v: nn.max_pool(v, (2, 2), strides=(2, 2))),
      (lambda v: layers.avg_pool_to(v, 2),
       lambda v: nn.avg_pool(v, (4, 4), strides=(4, 4)))):
    loss = lambda f: lambda v: jnp.sum(jnp.sin(f(v)) * f(v))
    np.testing.assert_allclose(jax.grad(loss(ours))(x),
                               jax.grad(loss(reference))(x), rtol=1e-6,
                               atol=1e-7)
