"""Tests of fasjax.losses against float64 numpy brute-force references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fasjax import losses

RTOL, ATOL = 1e-5, 1e-6


# -----------------------------------------------------------------------------
# Brute-force triplet references (plain loops, float64).
# -----------------------------------------------------------------------------


def _sq(x, y):
  return float(np.sum((np.asarray(x, np.float64) - y) ** 2))


def _ref_triplet(emb, labels, domains, margin, mining, mask, one_side):
  """Loops over every (a, p, n); returns the loss as a Python float."""
  emb = np.asarray(emb, np.float64)
  n = len(labels)
  keep = [True] * n if mask is None else [bool(m) for m in mask]
  if mining == 'all':
    active = []
    for a in range(n):
      for p in range(n):
        for q in range(n):
          if not (keep[a] and keep[p] and keep[q]):
            continue
          if one_side and labels[a] != 1:
            continue
          if (a == p or labels[p] != labels[a] or labels[q] == labels[a] or
              not domains[a] == domains[p] == domains[q]):
            continue
          loss = _sq(emb[a], emb[p]) - _sq(emb[a], emb[q]) + margin
          if loss > 0:
            active.append(loss)
    return sum(active) / len(active) if active else 0.0
  per_anchor = []
  for a in range(n):
    if not keep[a] or (one_side and labels[a] != 1):
      continue
    same = [i for i in range(n) if keep[i] and domains[i] == domains[a]]
    pos = [_sq(emb[a], emb[p]) for p in same
           if p != a and labels[p] == labels[a]]
    neg = [_sq(emb[a], emb[q]) for q in same if labels[q] != labels[a]]
    if pos and neg:
      per_anchor.append(max(0.0, max(pos) - min(neg) + margin))
  return sum(per_anchor) / len(per_anchor) if per_anchor else 0.0


def _random_batch(seed, n=24, dim=8, n_domains=3, normalise=True):
  """Random embeddings with random labels and domains."""
  rng = np.random.default_rng(seed)
  emb = rng.normal(size=(n, dim)).astype(np.float32)
  if normalise:
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
  live_share = rng.uniform(0.2, 0.8)
  labels = (rng.uniform(size=n) < live_share).astype(np.int32)
  domains = rng.integers(0, n_domains, n).astype(np.int32)
  return emb, labels, domains


def _jit(fn):
  # One compile per shape is much cheaper than eager op-by-op dispatch.
  return jax.jit(fn, static_argnames=('mining',))


LOSSES = {
    'one_side': (_jit(losses.one_side_triplet_loss), True),
    'normal': (_jit(losses.normal_triplet_loss), False),
}
VALUE_AND_GRAD = {
    'one_side': _jit(jax.value_and_grad(losses.one_side_triplet_loss)),
    'normal': _jit(jax.value_and_grad(losses.normal_triplet_loss)),
}


# -----------------------------------------------------------------------------
# Triplet losses against the references.
# -----------------------------------------------------------------------------


@pytest.mark.parametrize('kind', sorted(LOSSES))
@pytest.mark.parametrize('mining, margin', [('all', 0.1), ('all', 0.5),
                                            ('hard', 0.5), ('hard', 2.0)])
@pytest.mark.parametrize('seed, n, n_domains', [(0, 20, 2), (1, 30, 3),
                                                (2, 12, 3), (3, 40, 2)])
def test_triplet_matches_brute_force(kind, mining, margin, seed, n,
                                     n_domains):
  fn, one_side = LOSSES[kind]
  emb, labels, domains = _random_batch(seed, n=n, n_domains=n_domains)
  got = fn(emb, labels, domains, margin=margin, mining=mining)
  want = _ref_triplet(emb, labels, domains, margin, mining, None, one_side)
  np.testing.assert_allclose(float(got), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('kind', sorted(LOSSES))
@pytest.mark.parametrize('mining', ['all', 'hard'])
def test_triplet_unnormalised_embeddings(kind, mining):
  fn, one_side = LOSSES[kind]
  emb, labels, domains = _random_batch(7, n=20, dim=16, normalise=False)
  got = fn(emb, labels, domains, margin=1.0, mining=mining)
  want = _ref_triplet(emb, labels, domains, 1.0, mining, None, one_side)
  assert want > 0
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


def _degenerate_domains_batch():
  """Domain 0 is normal; domain 1 has one live only; domain 2 no spoof."""
  rng = np.random.default_rng(3)
  labels = np.array([1, 1, 1, 0, 0, 0] + [1, 0, 0, 0] + [1, 1, 1], np.int32)
  domains = np.array([0] * 6 + [1] * 4 + [2] * 3, np.int32)
  emb = rng.normal(size=(len(labels), 4)).astype(np.float32)
  return emb, labels, domains


@pytest.mark.parametrize('mining', ['all', 'hard'])
def test_domains_without_triplets_contribute_nothing(mining):
  emb, labels, domains = _degenerate_domains_batch()
  fn = LOSSES['one_side'][0]
  got = fn(emb, labels, domains, margin=3.0, mining=mining)
  only_0 = fn(emb[:6], labels[:6], domains[:6], margin=3.0, mining=mining)
  want = _ref_triplet(emb, labels, domains, 3.0, mining, None, True)
  np.testing.assert_allclose(float(got), want, rtol=RTOL)
  np.testing.assert_allclose(float(got), float(only_0), rtol=RTOL)


@pytest.mark.parametrize('kind', sorted(LOSSES))
@pytest.mark.parametrize('mining', ['all', 'hard'])
def test_triplet_mask_equals_subset(kind, mining):
  fn, one_side = LOSSES[kind]
  emb, labels, domains = _random_batch(5, n=30)
  mask = np.random.default_rng(5).uniform(size=30) < 0.7
  # Padding may hold anything; it must not matter.
  emb_padded = np.where(mask[:, None], emb, 1e3).astype(np.float32)
  got = fn(emb_padded, labels, domains, margin=0.5, mining=mining, mask=mask)
  subset = fn(emb[mask], labels[mask], domains[mask], margin=0.5,
              mining=mining)
  want = _ref_triplet(emb, labels, domains, 0.5, mining, mask, one_side)
  np.testing.assert_allclose(float(got), want, rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(float(got), float(subset), rtol=RTOL, atol=ATOL)


def test_hand_computed_triplet():
  # 1-D embeddings, one domain. Lives at 0 and 1, spoof at 3.
  # a=0: d(a,p)=1, d(a,n)=9; a=1: d(a,p)=1, d(a,n)=4.
  emb = np.array([[0.0], [1.0], [3.0]], np.float32)
  labels, domains = np.array([1, 1, 0]), np.zeros(3, np.int32)
  loss = functools.partial(LOSSES['one_side'][0], emb, labels, domains)
  assert float(loss(margin=4.0, mining='hard')) == pytest.approx(
      (0.0 + 1.0) / 2)  # Both anchors count, one with zero hinge.
  assert float(loss(margin=4.0, mining='all')) == pytest.approx(1.0)
  assert float(loss(margin=9.0, mining='all')) == pytest.approx((1 + 6) / 2)
  # The normal loss adds the spoof anchor, which has no positive.
  assert float(LOSSES['normal'][0](
      emb, labels, domains, margin=9.0, mining='all')) == pytest.approx(3.5)


def test_normal_differs_from_one_side():
  emb, labels, domains = _random_batch(11, n=20, n_domains=1)
  a = LOSSES['one_side'][0](emb, labels, domains, margin=1.0, mining='hard')
  b = LOSSES['normal'][0](emb, labels, domains, margin=1.0, mining='hard')
  assert abs(float(a) - float(b)) > 1e-3


# -----------------------------------------------------------------------------
# Gradients, jit, edge cases.
# -----------------------------------------------------------------------------


@pytest.mark.parametrize('kind', sorted(LOSSES))
@pytest.mark.parametrize('mining', ['all', 'hard'])
@pytest.mark.parametrize('case', ['random', 'identical', 'zero_loss',
                                  'no_triplet', 'all_masked'])
def test_triplet_gradients_are_finite(kind, mining, case):
  emb, labels, domains = _random_batch(2, n=16, n_domains=2)
  kw = {'margin': 0.5, 'mining': mining, 'mask': np.ones(16, bool)}
  if case == 'identical':
    emb = np.zeros_like(emb)
  elif case == 'zero_loss':
    # Lives and spoofs far apart: every hinge is 0.
    emb = np.where(labels[:, None] == 1, 0.0, 100.0) + 1e-3 * emb
    kw['margin'] = 0.1
  elif case == 'no_triplet':
    labels = np.zeros_like(labels)
  elif case == 'all_masked':
    kw['mask'] = np.zeros(16, bool)
  value, grad = VALUE_AND_GRAD[kind](jnp.asarray(emb, jnp.float32), labels,
                                     domains, **kw)
  assert np.isfinite(float(value))
  assert np.all(np.isfinite(np.asarray(grad)))
  if case == 'identical':
    np.testing.assert_allclose(float(value), 0.5, rtol=RTOL)
  if case in ('zero_loss', 'no_triplet', 'all_masked'):
    assert float(value) == 0.0
    assert np.all(np.asarray(grad) == 0.0)


def test_triplet_gradient_matches_finite_differences():
  emb, labels, domains = _random_batch(4, n=16, dim=3, n_domains=2)
  emb64 = emb.astype(np.float64)
  _, grad = VALUE_AND_GRAD['one_side'](emb, labels, domains, margin=0.5,
                                       mining='all')
  grad = np.asarray(grad)
  eps = 1e-4
  for i, j in [(0, 0), (3, 1), (7, 2)]:
    plus, minus = emb64.copy(), emb64.copy()
    plus[i, j] += eps
    minus[i, j] -= eps
    numeric = (_ref_triplet(plus, labels, domains, 0.5, 'all', None, True) -
               _ref_triplet(minus, labels, domains, 0.5, 'all', None, True)
               ) / (2 * eps)
    np.testing.assert_allclose(grad[i, j], numeric, rtol=1e-2, atol=1e-3)


def test_l2_normalised_zero_embedding_has_finite_gradient():
  emb, labels, domains = _random_batch(6, n=16, n_domains=1)
  emb[0] = 0.0

  @jax.jit
  @jax.grad
  def grad_fn(e):
    return losses.one_side_triplet_loss(losses.l2_normalize(e), labels,
                                        domains, margin=0.5, mining='hard')

  assert np.all(np.isfinite(np.asarray(grad_fn(jnp.asarray(emb)))))


@pytest.mark.parametrize('mining', ['all', 'hard'])
def test_triplet_jit(mining):
  emb, labels, domains = _random_batch(9, n=20)
  fn = jax.jit(losses.one_side_triplet_loss, static_argnames=('mining',))
  eager = losses.one_side_triplet_loss(emb, labels, domains, margin=0.3,
                                       mining=mining)
  jitted = fn(emb, labels, domains, margin=jnp.float32(0.3), mining=mining)
  np.testing.assert_allclose(float(jitted), float(eager), rtol=1e-6)


def test_triplet_bad_mining():
  emb, labels, domains = _random_batch(0, n=4)
  with pytest.raises(ValueError, match='mining'):
    losses.one_side_triplet_loss(emb, labels, domains, margin=0.1,
                                 mining='semi')


# -----------------------------------------------------------------------------
# BCE, depth, parsing, normalisation.
# -----------------------------------------------------------------------------


def test_sigmoid_bce_matches_numpy():
  rng = np.random.default_rng(0)
  logits = (rng.normal(size=32) * 4).astype(np.float32)
  labels = rng.integers(0, 2, 32)
  x = logits.astype(np.float64)
  p = 1 / (1 + np.exp(-x))
  per = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
  np.testing.assert_allclose(float(losses.sigmoid_bce(logits, labels)),
                             per.mean(), rtol=RTOL)
  mask = rng.uniform(size=32) < 0.5
  np.testing.assert_allclose(
      float(losses.sigmoid_bce(logits, labels, mask)), per[mask].mean(),
      rtol=RTOL)
  # A trailing singleton axis (the classifier's [B, 1] output) is accepted.
  np.testing.assert_allclose(
      float(losses.sigmoid_bce(logits[:, None], labels)), per.mean(),
      rtol=RTOL)


def test_sigmoid_bce_is_stable_for_extreme_logits():
  logits = jnp.array([100.0, -100.0, 100.0, -100.0])
  labels = jnp.array([1, 0, 0, 1])
  per = [float(losses.sigmoid_bce(logits[i:i + 1], labels[i:i + 1]))
         for i in range(4)]
  np.testing.assert_allclose(per, [0.0, 0.0, 100.0, 100.0], atol=1e-6)
  grad = jax.grad(losses.sigmoid_bce)(logits, labels)
  np.testing.assert_allclose(grad, [0.0, 0.0, 0.25, -0.25], atol=1e-6)


def test_sigmoid_bce_shape_mismatch():
  with pytest.raises(ValueError, match='shape'):
    losses.sigmoid_bce(jnp.zeros((4, 2)), jnp.zeros((4,)))


def test_depth_mse():
  pred = jnp.ones((3, 4, 4))
  target = jnp.zeros((3, 4, 4)).at[0].set(1.0)
  assert float(losses.depth_mse(pred, target)) == pytest.approx(2 / 3)
  assert float(losses.depth_mse(pred[..., None], target)) == pytest.approx(
      2 / 3)
  mask = jnp.array([True, False, False])
  assert float(losses.depth_mse(pred, target, mask)) == 0.0
  assert float(losses.depth_mse(pred, target, ~mask)) == 1.0
  assert float(losses.depth_mse(pred, target, jnp.zeros(3, bool))) == 0.0


def test_parsing_cross_entropy_matches_numpy_loop():
  rng = np.random.default_rng(1)
  b, h, w, k = 2, 4, 5, 13
  logits = (rng.normal(size=(b, h, w, k)) * 3).astype(np.float32)
  labels = rng.integers(0, k, (b, h, w))
  per = np.zeros((b, h, w))
  for i in range(b):
    for y in range(h):
      for x in range(w):
        z = logits[i, y, x].astype(np.float64)
        log_probs = z - z.max() - np.log(np.sum(np.exp(z - z.max())))
        per[i, y, x] = -log_probs[labels[i, y, x]]
  np.testing.assert_allclose(
      float(losses.parsing_cross_entropy(logits, labels)), per.mean(),
      rtol=RTOL)
  mask = np.array([False, True])
  np.testing.assert_allclose(
      float(losses.parsing_cross_entropy(logits, labels, mask)),
      per[1].mean(), rtol=RTOL)
  grad = jax.jit(jax.grad(losses.parsing_cross_entropy))(
      jnp.asarray(logits), labels)
  assert np.all(np.isfinite(np.asarray(grad)))


def test_l2_normalize():
  x = jnp.array([[3.0, 4.0], [0.0, 0.0]])
  np.testing.assert_allclose(losses.l2_normalize(x), [[0.6, 0.8], [0, 0]],
                             rtol=1e-6)
  grad = jax.jit(jax.jacobian(losses.l2_normalize))(jnp.zeros(3))
  assert np.all(np.isfinite(np.asarray(grad)))
