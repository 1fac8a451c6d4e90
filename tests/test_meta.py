"""The meta step against independent references.

- The full outer gradient (second order through the inner `jax.grad`) against
  central finite differences in float64; the first-order option fails that
  check, which shows the check can tell them apart.
- The vmapped, permuted objective against a plain per-domain loop.
- Per-domain BatchNorm against separate per-domain forward passes.
- The meta-test domain is drawn inside the compiled step (no recompilation).
- One golden-value step.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fasjax import losses
from fasjax import meta
from fasjax import models
from fasjax import train

D, B, S = 3, 4, 32


def _nets(dtype=jnp.float32, **hp):
  return meta.Networks(models.MultiTaskNet(width=0.125, dtype=dtype),
                       models.MetaLearner(width=0.125, dtype=dtype),
                       meta.MetaHParams(**hp))


def _batch(seed=0, dtype=np.float32):
  rng = np.random.default_rng(seed)
  label = np.tile(np.r_[np.ones(B // 2), np.zeros(B // 2)], (D, 1))
  return {
      'image': rng.random((D, B, S, S, 6)).astype(dtype),
      'depth': (rng.random((D, B, S // 8, S // 8)) * label[..., None, None]
                ).astype(dtype),
      'parsing': rng.integers(0, 13, (D, B, S, S)).astype(np.int32),
      'label': label.astype(np.int32),
  }


@pytest.fixture(scope='module')
def tx():
  return meta.make_optimizer(1e-3, 0.9, 0.999, 1e-8, 5e-5)


@pytest.fixture(scope='module')
def state(tx):
  return train.jit_init_state(_nets(), tx, S, seed=0)


@pytest.fixture(scope='module')
def jitted_step(tx):
  return jax.jit(functools.partial(meta.train_step, nets=_nets(), tx=tx))


def _f64(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64)
                      if np.issubdtype(np.asarray(x).dtype, np.floating)
                      else np.asarray(x), tree)


def _directional_check(first_order: bool):
  """Returns (analytic, numeric) directional derivatives in float64."""
  with jax.enable_x64(True):
    # A large inner step makes the second-order term big enough to matter.
    nets = _nets(jnp.float64, inner_lr=0.5, first_order=first_order,
                 hard_mining_step=10)
    tx = meta.make_optimizer(1e-3, 0.9, 0.999, 1e-8, 0.0)
    st = train.jit_init_state(nets, tx, S, seed=1)
    params, stats = _f64(st.params), _f64(st.batch_stats)
    batch = _batch(seed=3, dtype=np.float64)
    key, step = jax.random.PRNGKey(7), jnp.asarray(0)

    def loss(p):
      return meta.objective(p, stats, batch, key, step, nets)[0]

    grad = jax.jit(jax.grad(loss))(params)
    rng = np.random.default_rng(0)
    direction = jax.tree.map(lambda x: rng.standard_normal(x.shape), params)
    # A unit direction keeps the step eps small in every coordinate, so the
    # central difference stays clear of ReLU and max-pool kinks.
    norm = np.sqrt(sum(float(np.sum(v * v)) for v in jax.tree.leaves(direction)))
    direction = jax.tree.map(lambda v: v / norm, direction)
    analytic = sum(float(np.vdot(g, v)) for g, v in zip(
        jax.tree.leaves(grad), jax.tree.leaves(direction)))
    eps = 1e-6
    plus = jax.tree.map(lambda p, v: p + eps * v, params, direction)
    minus = jax.tree.map(lambda p, v: p - eps * v, params, direction)
    loss_jit = jax.jit(loss)
    numeric = (float(loss_jit(plus)) - float(loss_jit(minus))) / (2 * eps)
  return analytic, numeric


def test_second_order_gradient_matches_finite_differences():
  analytic, numeric = _directional_check(first_order=False)
  assert analytic == pytest.approx(numeric, rel=1e-6)


def test_first_order_gradient_fails_the_same_check():
  analytic, numeric = _directional_check(first_order=True)
  assert abs(analytic - numeric) > 0.1 * abs(numeric)


def _loop_reference(nets, params, stats, batch, perm, step):
  """The meta objective written as plain per-domain loops (no vmap)."""
  hp = nets.hp

  def net_one(images):
    return nets.net.apply({'params': params['net'],
                           'batch_stats': stats['net']}, images, train=True,
                          mutable=['batch_stats'])[0]

  def cls_trip(theta, x, y):
    (emb, logit), _ = nets.meta.apply({'params': theta,
                                       'batch_stats': stats['meta']}, x,
                                      train=True, mutable=['batch_stats'])
    zeros = jnp.zeros_like(y)
    if step < hp.hard_mining_step:
      trip = losses.one_side_triplet_loss(emb, y, zeros,
                                          margin=hp.margin_all, mining='all')
    else:
      trip = losses.one_side_triplet_loss(emb, y, zeros,
                                          margin=hp.margin_hard, mining='hard')
    return losses.sigmoid_bce(logit, y), trip

  outs = [net_one(batch['image'][d]) for d in range(D)]
  dep = [losses.depth_mse(o['depth'], batch['depth'][d])
         for d, o in enumerate(outs)]
  seg = [losses.parsing_cross_entropy(o['parsing'], batch['parsing'][d])
         for d, o in enumerate(outs)]
  test_d, train_ds = perm[-1], perm[:-1]
  theta = params['meta']
  meta_train, meta_test = 0.0, 0.0
  for d in train_ds:
    x, y = outs[d]['meta_input'], batch['label'][d]
    cls, trip = cls_trip(theta, x, y)
    meta_train += (hp.lambda_cls * cls + hp.lambda_trip * trip
                   + hp.lambda_dep * dep[d] + hp.lambda_seg * seg[d])
    grads = jax.grad(lambda t: sum(cls_trip(t, x, y)))(theta)
    adapted = jax.tree.map(lambda p, g: p - hp.inner_lr * g, theta, grads)
    cls_k, trip_k = cls_trip(adapted, outs[test_d]['meta_input'],
                             batch['label'][test_d])
    meta_test += hp.lambda_cls * cls_k + hp.lambda_trip * trip_k
  meta_test += hp.lambda_dep * dep[test_d] + hp.lambda_seg * seg[test_d]
  return hp.lambda_meta_train * meta_train + hp.lambda_meta_test * meta_test


@pytest.mark.parametrize('step', [0, 5000])
def test_objective_equals_per_domain_loop(state, step):
  nets = _nets()
  batch = _batch(seed=1)
  key = jax.random.PRNGKey(11)
  perm = [int(i) for i in jax.random.permutation(key, D)]
  total, aux = jax.jit(functools.partial(meta.objective, nets=nets))(
      state.params, state.batch_stats, batch, key, jnp.asarray(step))
  assert int(aux['meta_test_domain']) == perm[-1]
  reference = jax.jit(lambda p, s: _loop_reference(nets, p, s, batch, perm,
                                                   step))(
                                                       state.params,
                                                       state.batch_stats)
  np.testing.assert_allclose(float(total), float(reference), rtol=2e-5)


def test_batchnorm_statistics_are_per_domain(state):
  nets = _nets()
  batch = _batch(seed=2)
  # Make the domains' statistics very different.
  batch['image'] = batch['image'] * np.arange(1, D + 1)[:, None, None, None,
                                                        None].astype(np.float32)
  out, _ = meta.apply_net_per_domain(nets, state.params['net'],
                                     state.batch_stats['net'], batch['image'])
  for d in range(D):
    alone = nets.net.apply({'params': state.params['net'],
                            'batch_stats': state.batch_stats['net']},
                           batch['image'][d], train=True,
                           mutable=['batch_stats'])[0]
    np.testing.assert_allclose(out['depth'][d], alone['depth'], rtol=1e-4,
                               atol=1e-5)
  pooled = nets.net.apply({'params': state.params['net'],
                           'batch_stats': state.batch_stats['net']},
                          batch['image'].reshape((D * B, S, S, 6)), train=True,
                          mutable=['batch_stats'])[0]
  assert not np.allclose(out['depth'].reshape(-1), pooled['depth'].reshape(-1),
                         atol=1e-3)


def test_meta_test_domain_drawn_inside_jit(state, jitted_step):
  batch = _batch()
  drawn = set()
  st = state
  for _ in range(6):
    st, m = jitted_step(st, batch)
    drawn.add(int(m['meta_test_domain']))
  assert len(drawn) >= 2
  assert jitted_step._cache_size() == 1


def test_ablation_no_meta_sums_all_domains(state):
  nets = _nets(use_meta=False)
  batch = _batch(seed=4)
  total, aux = meta.objective(state.params, state.batch_stats, batch,
                              jax.random.PRNGKey(0), jnp.asarray(0), nets)
  parts = aux['metrics']
  expected = (parts['cls'] + 0.5 * parts['trip'] + 10.0 * parts['depth']
              + parts['parsing'])
  np.testing.assert_allclose(float(total), float(expected), rtol=1e-5)
  assert int(aux['meta_test_domain']) == -1


def test_golden_step(state, jitted_step):
  """A pinned regression value: the first step's loss at seed 0 on CPU."""
  _, m = jitted_step(state, _batch())
  assert float(m['loss']) == pytest.approx(GOLDEN_LOSS, rel=1e-4)


GOLDEN_LOSS = 23.983059


# Rematerialisation ----------------------------------------------------------


@pytest.fixture(scope='module')
def remat_results():
  """Loss, gradients and batch stats of the objective per remat policy (float64)."""
  out = {}
  with jax.enable_x64(True):
    batch = _batch(seed=5, dtype=np.float64)
    key, step = jax.random.PRNGKey(3), jnp.asarray(0)
    for policy in models.layers.REMAT_POLICIES:
      nets = _nets(jnp.float64, remat=policy, hard_mining_step=10)
      tx = meta.make_optimizer(1e-3, 0.9, 0.999, 1e-8, 0.0)
      st = train.jit_init_state(nets, tx, S, seed=2)
      params, stats = _f64(st.params), _f64(st.batch_stats)
      fn = jax.value_and_grad(
          lambda p, n=nets: meta.objective(p, stats, batch, key, step, n),
          has_aux=True)
      (loss, aux), grads = jax.jit(fn)(params)
      out[policy] = {'loss': loss, 'grads': grads,
                     'batch_stats': aux['batch_stats'],
                     'jaxpr': str(jax.make_jaxpr(
                         lambda p, n=nets: meta.objective(
                             p, stats, batch, key, step, n))(params))}
  return out


@pytest.mark.parametrize('policy', ['conv', 'blocks', 'domains'])
def test_remat_policy_equals_no_remat(remat_results, policy):
  ref, got = remat_results['none'], remat_results[policy]
  np.testing.assert_allclose(got['loss'], ref['loss'], rtol=1e-12)
  for name in ('grads', 'batch_stats'):
    for a, b in zip(jax.tree.leaves(got[name]), jax.tree.leaves(ref[name])):
      np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * np.max(
          np.abs(b)), err_msg=name)


def _saved_names(jaxpr: str) -> list[set[str]]:
  """The name sets of every save-only-these-names remat policy in a jaxpr."""
  sets = []
  for part in jaxpr.split('saveable_names=frozenset({')[1:]:
    inside = part.split('})')[0]
    sets.append({name.strip(" '") for name in inside.split(',')})
  return sets


def test_remat_policies_are_applied(remat_results):
  # Equal values alone could mean no remat at all: the checkpointed forward
  # must appear in the traced objective, with the policy's saved names.
  saved = {p: _saved_names(r['jaxpr']) for p, r in remat_results.items()}
  assert saved['none'] == []
  assert saved['conv'] == [{'conv_out', 'block_out'}]
  assert saved['blocks'] == [{'block_out'}]
  assert saved['domains'] == [{'conv_out', 'block_out'}]
  # 'domains' runs the domains in a loop; the others vmap them.
  assert 'scan' in remat_results['domains']['jaxpr']
  assert 'scan' not in remat_results['conv']['jaxpr']
