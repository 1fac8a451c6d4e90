"""The meta step: one jitted outer update over all four branches.

Per iteration each of the D source domains gives one batch (b live + b spoof).
A random permutation, drawn *inside* the jitted function from the step's rng,
puts the meta-test domain K last and the D-1 meta-train domains J_i first, so
the choice costs no recompilation.

- Meta-train, for each J_i: theta'_i = theta_M - alpha * grad_theta_M
  (L_cls(J_i) + w_inner * L_trip(J_i)), an SGD step on the meta learner only
  (`jax.grad`, vmapped over the J_i).
- Meta-test: sum_i [lambda_cls L_cls(K; theta'_i) + lambda_trip L_trip(K; theta'_i)].
- Depth and parsing losses on every domain's batch with the shared weights.
- Total (paper eq. 7): lambda_mtrn * (lambda_cls L_cls + lambda_dep L_dep +
  lambda_seg L_seg + lambda_trip L_trip)(J) + lambda_mst * (the same)(K), each
  term summed over domains as in the RFMetaFAS reference.

The outer gradient differentiates through the inner update (second order);
`first_order=True` stops the gradient through the inner gradient instead.

BatchNorm statistics are per domain: the networks are vmapped over the domain
axis, so every domain's batch is normalised by its own statistics (as the
reference, which runs one forward per domain). The running averages kept for
evaluation are the mean of the per-domain updates: of all D domains for the
multi-task net, which sees every domain; of the D-1 meta-train domains for
the meta learner, whose train-mode forward on the meta-test domain runs under
the adapted parameters and is not kept (the reference likewise keeps the
statistics its meta-train forwards leave in the module).

`use_meta=False` is the paper's "w/o meta" ablation: the same networks and
per-domain BatchNorm, every domain's losses summed with the shared meta
learner, no inner step and no meta-test split (the running statistics of the
meta learner then average all D domains).

Data parallelism (`hp.data_axis`, set by `fasjax.sharding` inside
`jax.shard_map`): each device holds B/n images of every domain. BatchNorm
averages its batch moments over the axis, every loss that is a mean over the
batch is averaged over the axis (equal shares, so the value is the global
mean), and the triplet loss, which compares samples, runs on the embeddings
gathered from all devices. Every loss is then the same number on every device
and JAX's shard_map differentiation sums each device's share of the gradient:
the step computes what the one-device step computes.

Rematerialisation (`hp.remat`, a name of `layers.REMAT_POLICIES`): the
multi-task net's forward pass, the step's memory, is wrapped in
`jax.checkpoint` with that policy. 'none' keeps every activation for the
backward pass; 'conv' keeps only conv outputs and stage boundaries, and
recomputes BatchNorm, ReLU, pooling and up-sampling (cheap elementwise work);
'blocks' keeps only stage boundaries and recomputes whole blocks, convs
included; 'domains' runs the D domains' forward passes one after another
(a `lax.scan`) and keeps nothing across them, so the backward pass recomputes
one domain's forward at a time (keeping its conv outputs, as 'conv') and only
one domain's activations are alive at once. Values are unchanged; only
memory and FLOPs move.
"""

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from fasjax import losses
from fasjax import models
from fasjax.models import layers

PyTree = Any


@dataclasses.dataclass(frozen=True)
class MetaHParams:
  """Static hyper-parameters of the objective (hashable, for jit)."""
  lambda_cls: float = 1.0
  lambda_dep: float = 10.0
  lambda_seg: float = 1.0
  lambda_trip: float = 0.5
  lambda_meta_train: float = 1.0
  lambda_meta_test: float = 1.0
  inner_lr: float = 1e-3
  inner_trip_weight: float = 1.0
  first_order: bool = False
  use_meta: bool = True
  one_side_triplet: bool = True
  margin_all: float = 0.1
  margin_hard: float = 0.5
  hard_mining_step: int = 2000
  remat: str = 'none'
  # The shard_map mesh axis the batch is split over (None: one device).
  data_axis: str | None = None
  # remat='domains' unrolled: the same arithmetic, for FLOP counts only (XLA's
  # cost analysis counts a loop body once); it keeps more memory alive.
  unroll_domains: bool = False


@dataclasses.dataclass(frozen=True)
class Networks:
  """The two Flax modules and the objective's hyper-parameters."""
  net: models.MultiTaskNet
  meta: models.MetaLearner
  hp: MetaHParams


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (all of it is checkpointed)."""
  step: jnp.ndarray
  params: PyTree
  batch_stats: PyTree
  opt_state: PyTree
  rng: jnp.ndarray


def _mean_over_leading_axis(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda x: jnp.mean(x, axis=0), tree)


def global_mean(nets: Networks, local_mean: jnp.ndarray) -> jnp.ndarray:
  """The batch mean from each device's mean of its equal share."""
  axis = nets.hp.data_axis
  return local_mean if axis is None else jax.lax.pmean(local_mean, axis)


def gather_batch(nets: Networks, x_B: jnp.ndarray) -> jnp.ndarray:
  """The whole batch from each device's share, in the global order."""
  axis = nets.hp.data_axis
  return x_B if axis is None else jax.lax.all_gather(x_B, axis, tiled=True)


def apply_net_per_domain(nets: Networks, params: PyTree, batch_stats: PyTree,
                         images_DxBxSxSx6: jnp.ndarray
                         ) -> tuple[dict[str, jnp.ndarray], PyTree]:
  """Runs the multi-task net in train mode with per-domain BatchNorm."""
  def one_domain(images):
    out, updates = nets.net.apply(
        {'params': params, 'batch_stats': batch_stats}, images, train=True,
        mutable=['batch_stats'])
    return out, updates['batch_stats']
  policy = layers.remat_policy(nets.hp.remat)
  if policy is not None:
    one_domain = jax.checkpoint(one_domain, policy=policy)
  if layers.remat_domains_in_turn(nets.hp.remat):
    # The backward pass of a loop runs its iterations in reverse, one at a
    # time; saving nothing across iterations means only one domain's
    # activations are alive at once.
    body = jax.checkpoint(one_domain)
    _, (out, stats_D) = jax.lax.scan(lambda carry, x: (carry, body(x)), None,
                                     images_DxBxSxSx6,
                                     unroll=nets.hp.unroll_domains)
  else:
    out, stats_D = jax.vmap(one_domain)(images_DxBxSxSx6)
  return out, _mean_over_leading_axis(stats_D)


def triplet_loss(nets: Networks, embeddings_BxE: jnp.ndarray,
                 labels_B: jnp.ndarray, step: jnp.ndarray) -> jnp.ndarray:
  """One domain's triplet loss, batch-all before `hard_mining_step`, then batch-hard."""
  hp = nets.hp
  loss_fn = (losses.one_side_triplet_loss if hp.one_side_triplet
             else losses.normal_triplet_loss)
  # Triplets compare samples: every device needs the whole batch.
  embeddings_BxE = gather_batch(nets, embeddings_BxE)
  labels_B = gather_batch(nets, labels_B)
  domains = jnp.zeros_like(labels_B)
  batch_all = loss_fn(embeddings_BxE, labels_B, domains, margin=hp.margin_all,
                      mining='all')
  batch_hard = loss_fn(embeddings_BxE, labels_B, domains,
                       margin=hp.margin_hard, mining='hard')
  # pmean of equal values: marks the loss as the same on every device.
  return global_mean(nets, jnp.where(step < hp.hard_mining_step, batch_all,
                                     batch_hard))


def classifier_losses(nets: Networks, meta_params: PyTree, meta_stats: PyTree,
                      x_BxhxwxC: jnp.ndarray, labels_B: jnp.ndarray,
                      step: jnp.ndarray
                      ) -> tuple[jnp.ndarray, jnp.ndarray, PyTree]:
  """One domain's (L_cls, L_trip, new batch stats) under meta learner params."""
  (embeddings, logits), updates = nets.meta.apply(
      {'params': meta_params, 'batch_stats': meta_stats}, x_BxhxwxC,
      train=True, mutable=['batch_stats'])
  cls = global_mean(nets, losses.sigmoid_bce(logits, labels_B))
  trip = triplet_loss(nets, embeddings, labels_B, step)
  return cls, trip, updates['batch_stats']


def _branch_losses(nets, net_out, batch):
  """Per-domain depth and parsing losses, [D] each."""
  depth_D = global_mean(nets, jax.vmap(losses.depth_mse)(net_out['depth'],
                                                         batch['depth']))
  if 'parsing' in net_out:
    seg_D = global_mean(nets, jax.vmap(losses.parsing_cross_entropy)(
        net_out['parsing'], batch['parsing']))
  else:
    seg_D = jnp.zeros_like(depth_D)
  return depth_D, seg_D


def objective(params: PyTree, batch_stats: PyTree, batch: dict[str, jnp.ndarray],
              key: jnp.ndarray, step: jnp.ndarray, nets: Networks
              ) -> tuple[jnp.ndarray, dict[str, Any]]:
  """The total loss of one iteration and its parts (aux holds new batch stats)."""
  hp = nets.hp
  net_out, net_stats = apply_net_per_domain(nets, params['net'],
                                            batch_stats['net'], batch['image'])
  depth_D, seg_D = _branch_losses(nets, net_out, batch)
  x_D, y_D = net_out['meta_input'], jnp.asarray(batch['label'])
  theta, meta_stats = params['meta'], batch_stats['meta']
  per_domain = jax.vmap(classifier_losses,
                        in_axes=(None, None, None, 0, 0, None))

  def weighted(cls, trip, dep, seg):
    return (hp.lambda_cls * cls + hp.lambda_trip * trip + hp.lambda_dep * dep
            + hp.lambda_seg * seg)

  if not hp.use_meta:
    cls_D, trip_D, stats_D = per_domain(nets, theta, meta_stats, x_D, y_D, step)
    total = jnp.sum(weighted(cls_D, trip_D, depth_D, seg_D))
    parts = {'cls': jnp.sum(cls_D), 'trip': jnp.sum(trip_D)}
    meta_test_domain = jnp.asarray(-1)
  else:
    perm = jax.random.permutation(key, x_D.shape[0])
    x_D, y_D = x_D[perm], y_D[perm]
    depth_D, seg_D = depth_D[perm], seg_D[perm]

    def inner_loss(theta_, x, y):
      cls, trip, stats = classifier_losses(nets, theta_, meta_stats, x, y, step)
      return cls + hp.inner_trip_weight * trip, (cls, trip, stats)

    grads_J, (cls_J, trip_J, stats_D) = jax.vmap(
        jax.grad(inner_loss, has_aux=True), in_axes=(None, 0, 0))(
            theta, x_D[:-1], y_D[:-1])
    if hp.first_order:
      grads_J = jax.lax.stop_gradient(grads_J)
    adapted_J = jax.tree.map(lambda p, g: p[None] - hp.inner_lr * g,
                             theta, grads_J)
    cls_KJ, trip_KJ, _ = jax.vmap(classifier_losses,
                                  in_axes=(None, 0, None, None, None, None))(
                                      nets, adapted_J, meta_stats, x_D[-1],
                                      y_D[-1], step)
    meta_train = jnp.sum(weighted(cls_J, trip_J, depth_D[:-1], seg_D[:-1]))
    meta_test = (jnp.sum(hp.lambda_cls * cls_KJ + hp.lambda_trip * trip_KJ)
                 + hp.lambda_dep * depth_D[-1] + hp.lambda_seg * seg_D[-1])
    total = hp.lambda_meta_train * meta_train + hp.lambda_meta_test * meta_test
    parts = {'cls': jnp.sum(cls_J), 'trip': jnp.sum(trip_J),
             'cls_meta_test': jnp.sum(cls_KJ),
             'trip_meta_test': jnp.sum(trip_KJ)}
    meta_test_domain = perm[-1]
  aux = {
      'batch_stats': {'net': net_stats,
                      'meta': _mean_over_leading_axis(stats_D)},
      'metrics': {'loss': total, 'depth': jnp.sum(depth_D),
                  'parsing': jnp.sum(seg_D), **parts},
      'meta_test_domain': meta_test_domain,
  }
  return total, aux


def train_step(state: TrainState, batch: dict[str, jnp.ndarray], *,
               nets: Networks, tx: optax.GradientTransformation
               ) -> tuple[TrainState, dict[str, jnp.ndarray]]:
  """One outer update of all parameters; returns the new state and metrics."""
  key = jax.random.fold_in(state.rng, state.step)
  grad_fn = jax.value_and_grad(objective, has_aux=True)
  (_, aux), grads = grad_fn(state.params, state.batch_stats, batch, key,
                            state.step, nets)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = dict(aux['metrics'])
  metrics['grad_norm'] = optax.tree.norm(grads)
  metrics['meta_test_domain'] = aux['meta_test_domain']
  new_state = state.replace(step=state.step + 1, params=params,
                            batch_stats=aux['batch_stats'],
                            opt_state=opt_state)
  return new_state, metrics


def make_optimizer(lr: float, b1: float, b2: float, eps: float,
                   weight_decay: float) -> optax.GradientTransformation:
  """Adam with weight decay added to the gradient (PyTorch Adam, not AdamW)."""
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
                     optax.scale(-lr))


def init_state(nets: Networks, tx: optax.GradientTransformation,
               rng: jnp.ndarray, image_size: int) -> TrainState:
  """Initialises parameters, batch stats and optimizer state."""
  net_rng, meta_rng, step_rng = jax.random.split(rng, 3)
  images = jnp.zeros((2, image_size, image_size, 6), jnp.float32)
  net_vars = nets.net.init(net_rng, images, train=False)
  meta_input = jax.eval_shape(
      functools.partial(nets.net.apply, train=False), net_vars,
      images)['meta_input']
  meta_vars = nets.meta.init(meta_rng, jnp.zeros(meta_input.shape,
                                                 jnp.float32), train=False)
  params = {'net': net_vars['params'], 'meta': meta_vars['params']}
  batch_stats = {'net': net_vars['batch_stats'],
                 'meta': meta_vars['batch_stats']}
  return TrainState(step=jnp.asarray(0, jnp.int32), params=params,
                    batch_stats=batch_stats, opt_state=tx.init(params),
                    rng=step_rng)
