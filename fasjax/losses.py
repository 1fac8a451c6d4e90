"""Losses of the multi-task one-side meta triplet model (JAX).

Conventions:

* Labels: 1 = live, 0 = spoof (integer, bool or float 0/1).
* Every loss is a scalar mean. An optional boolean ``mask`` marks the samples
  that count (False = padding); it has the batch shape ``[B]`` (or, for the
  dense losses, any leading prefix of the per-element loss shape, e.g. a
  per-pixel ``[B, H, W]`` mask). The loss is then the mean over the unmasked
  elements only; with nothing unmasked it is 0 (not NaN).
* All functions are pure, jit- and grad-compatible and float32 friendly;
  ``mining`` must be static under ``jax.jit`` (``static_argnames``), margins
  may be traced.

Decisions:

* Triplet distance is the *squared* Euclidean distance, computed by
  broadcasting the differences (``[N, N, D]``, N is a few dozen) rather than
  by ``|a|^2 + |b|^2 - 2ab``: it is exactly 0 on the diagonal, never
  negative, and has no sqrt, so gradients stay finite for identical
  embeddings.
* Embeddings are used as given. Normalise before the call (``l2_normalize``)
  when the config asks for it.
* Triplets never cross domains: anchor, positive and negative share one
  domain id. A domain with fewer than two anchors of a class, or with no
  negative, contributes nothing (not a zero term).
* ``mining='all'`` averages over the *active* triplets (loss > 0), the usual
  batch-all convention, so the loss does not fade as easy triplets become
  the majority. ``mining='hard'`` averages over the anchors that have at
  least one positive and one negative, including anchors whose hinge is 0.
* Counts are clipped to >= 1 before division and masked entries go through
  ``jnp.where``, so empty selections give 0 with finite (zero) gradients.
"""

from typing import Literal

import jax
import jax.numpy as jnp

Mining = Literal['all', 'hard']
_MINING = ('all', 'hard')


# -----------------------------------------------------------------------------
# Helpers.
# -----------------------------------------------------------------------------


def _masked_mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
  """Mean of `values` over elements where `mask` (a leading prefix) is True."""
  if mask is None:
    return jnp.mean(values)
  mask = jnp.asarray(mask, dtype=bool)
  if values.shape[:mask.ndim] != mask.shape:
    raise ValueError(f'mask shape {mask.shape} is not a prefix of the loss '
                     f'shape {values.shape}')
  mask = jnp.broadcast_to(mask.reshape(mask.shape + (1,) *
                                       (values.ndim - mask.ndim)),
                          values.shape)
  total = jnp.sum(jnp.where(mask, values, 0.0))
  count = jnp.sum(mask)
  return total / jnp.maximum(count, 1).astype(values.dtype)


def _match_trailing_one(pred: jax.Array, target: jax.Array,
                        name: str) -> jax.Array:
  """`pred` reshaped to `target`'s shape, allowing only a trailing 1 axis."""
  if pred.ndim == target.ndim + 1 and pred.shape[-1] == 1:
    pred = pred[..., 0]
  if pred.shape != target.shape:
    raise ValueError(f'{name}: prediction shape {pred.shape} does not match '
                     f'target shape {target.shape}')
  return pred


def l2_normalize(x: jax.Array, axis: int = -1,
                 eps: float = 1e-12) -> jax.Array:
  """x / max(||x||, eps) along `axis`, with a finite gradient at x = 0."""
  # max(sqrt(s), eps) == sqrt(max(s, eps^2)); rsqrt of the clipped sum avoids
  # the infinite derivative of sqrt at 0.
  sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


# -----------------------------------------------------------------------------
# Triplet losses.
# -----------------------------------------------------------------------------


def _pairwise_sq_dist(embeddings_NxD: jax.Array) -> jax.Array:
  """[N, N] squared Euclidean distances (exact zeros on the diagonal)."""
  diff_NxNxD = embeddings_NxD[:, None, :] - embeddings_NxD[None, :, :]
  return jnp.sum(jnp.square(diff_NxNxD), axis=-1)


def _triplet_loss(embeddings: jax.Array, labels: jax.Array,
                  domains: jax.Array, margin: float | jax.Array, mining: str,
                  mask: jax.Array | None, live_anchors_only: bool) -> jax.Array:
  """Shared domain-restricted triplet loss; see the public wrappers."""
  if mining not in _MINING:
    raise ValueError(f'mining must be one of {_MINING}, got {mining!r}')
  embeddings = jnp.asarray(embeddings)
  if embeddings.ndim != 2:
    raise ValueError(f'embeddings must be [N, D], got {embeddings.shape}')
  n = embeddings.shape[0]
  labels = jnp.asarray(labels).reshape(-1)
  domains = jnp.asarray(domains).reshape(-1)
  if labels.shape[0] != n or domains.shape[0] != n:
    raise ValueError(f'{n} embeddings but {labels.shape[0]} labels and '
                     f'{domains.shape[0]} domains')
  live = labels == 1
  valid = (jnp.ones((n,), bool) if mask is None else
           jnp.asarray(mask, bool).reshape(n))

  dist_NxN = _pairwise_sq_dist(embeddings)
  pair_ok = (domains[:, None] == domains[None, :]) & valid[:, None] & (
      valid[None, :])
  same_class = live[:, None] == live[None, :]
  anchor_ok = live if live_anchors_only else jnp.ones((n,), bool)
  not_self = ~jnp.eye(n, dtype=bool)
  pos_NxN = pair_ok & same_class & not_self & anchor_ok[:, None]
  neg_NxN = pair_ok & ~same_class & anchor_ok[:, None]

  if mining == 'all':
    # [a, p, n] = d(a, p) - d(a, n) + margin.
    hinge = dist_NxN[:, :, None] - dist_NxN[:, None, :] + margin
    triplet_ok = pos_NxN[:, :, None] & neg_NxN[:, None, :]
    losses = jnp.where(triplet_ok, jax.nn.relu(hinge), 0.0)
    count = jnp.sum(losses > 0)
  else:
    hardest_pos = jnp.max(jnp.where(pos_NxN, dist_NxN, -jnp.inf), axis=1)
    hardest_neg = jnp.min(jnp.where(neg_NxN, dist_NxN, jnp.inf), axis=1)
    has_both = jnp.any(pos_NxN, axis=1) & jnp.any(neg_NxN, axis=1)
    # Anchors without a triplet get finite stand-ins before the subtraction,
    # so no inf - inf reaches the graph.
    hinge = (jnp.where(has_both, hardest_pos, 0.0) -
             jnp.where(has_both, hardest_neg, 0.0) + margin)
    losses = jnp.where(has_both, jax.nn.relu(hinge), 0.0)
    count = jnp.sum(has_both)
  return jnp.sum(losses) / jnp.maximum(count, 1).astype(losses.dtype)


def one_side_triplet_loss(embeddings: jax.Array, labels: jax.Array,
                          domains: jax.Array, *,
                          margin: float | jax.Array, mining: Mining,
                          mask: jax.Array | None = None) -> jax.Array:
  """One-side triplet loss: live anchors and positives, spoof negatives.

  Args:
    embeddings: [N, D], used as given (no normalisation here).
    labels: [N], 1 live, 0 spoof.
    domains: [N] integer domain ids; triplets stay within one domain.
    margin: the hinge margin.
    mining: 'all' (mean over active triplets) or 'hard' (hardest positive
      and negative per live anchor, mean over anchors that have both).
    mask: optional [N] bool, False excludes a sample (padding).

  Returns:
    Scalar loss; 0 when there is no valid (or, for 'all', no active) triplet.
  """
  return _triplet_loss(embeddings, labels, domains, margin, mining, mask,
                       live_anchors_only=True)


def normal_triplet_loss(embeddings: jax.Array, labels: jax.Array,
                        domains: jax.Array, *,
                        margin: float | jax.Array, mining: Mining,
                        mask: jax.Array | None = None) -> jax.Array:
  """Ordinary triplet loss (anchors of both classes), the paper's ablation.

  Same arguments and domain restriction as `one_side_triplet_loss`; a
  spoof anchor takes spoof positives and live negatives.
  """
  return _triplet_loss(embeddings, labels, domains, margin, mining, mask,
                       live_anchors_only=False)


# -----------------------------------------------------------------------------
# Classification, depth and parsing losses.
# -----------------------------------------------------------------------------


def sigmoid_bce(logits: jax.Array, labels: jax.Array,
                mask: jax.Array | None = None) -> jax.Array:
  """Mean binary cross-entropy with logits (label 1 = live), stable form.

  `logits` has the shape of `labels`, or that shape plus a trailing 1.
  """
  labels = jnp.asarray(labels)
  logits = _match_trailing_one(jnp.asarray(logits), labels, 'sigmoid_bce')
  labels = labels.astype(logits.dtype)
  # -y log s(x) - (1 - y) log(1 - s(x)) = log(1 + e^x) - y x, overflow-free
  # through logaddexp.
  per_sample = jnp.logaddexp(0.0, logits) - labels * logits
  return _masked_mean(per_sample, mask)


def depth_mse(pred_BxHxW: jax.Array, target_BxHxW: jax.Array,
              mask: jax.Array | None = None) -> jax.Array:
  """Mean squared error over all pixels of the unmasked samples.

  `pred_BxHxW` may carry a trailing channel axis of size 1 (the decoder's
  [B, H, W, 1] output). Spoof targets are all-zero maps (docs/design.md §1).
  """
  target_BxHxW = jnp.asarray(target_BxHxW)
  pred_BxHxW = _match_trailing_one(jnp.asarray(pred_BxHxW), target_BxHxW,
                                   'depth_mse')
  sq_err = jnp.square(pred_BxHxW - target_BxHxW.astype(pred_BxHxW.dtype))
  return _masked_mean(sq_err, mask)


def parsing_cross_entropy(logits_BxHxWxK: jax.Array, labels_BxHxW: jax.Array,
                          mask: jax.Array | None = None) -> jax.Array:
  """Mean per-pixel softmax cross-entropy against integer class ids.

  Labels must lie in [0, K); out-of-range ids are not checked (they cannot
  be under jit).
  """
  logits_BxHxWxK = jnp.asarray(logits_BxHxWxK)
  labels_BxHxW = jnp.asarray(labels_BxHxW).astype(jnp.int32)
  if logits_BxHxWxK.shape[:-1] != labels_BxHxW.shape:
    raise ValueError(f'parsing_cross_entropy: logits shape '
                     f'{logits_BxHxWxK.shape} does not match labels shape '
                     f'{labels_BxHxW.shape} plus a class axis')
  log_probs = jax.nn.log_softmax(logits_BxHxWxK, axis=-1)
  picked = jnp.take_along_axis(log_probs, labels_BxHxW[..., None], axis=-1)
  return _masked_mean(-picked[..., 0], mask)
