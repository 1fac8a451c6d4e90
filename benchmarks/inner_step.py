r"""How much the meta step's inner update changes, in a trained run.

The meta step adapts the meta learner M on each meta-train domain J_i,
theta'_i = theta - alpha * grad L_inner(J_i; theta), and scores the
meta-test domain K at theta'_i (fasjax/meta.py). With the paper's
alpha = 1e-3 (an SGD step) the question is whether theta'_i differs enough
from theta for the meta-test loss, and its gradient, to differ from plain
multi-domain training on K: that is what `no_meta` drops.

For a run's checkpoint and a few of its training batches (every choice of K
in each), this prints:
- |theta|, |alpha * grad| and their ratio (Frobenius norms over M's params);
- the meta-test loss lambda_cls L_cls + lambda_trip L_trip on K at theta and
  at theta'_i, and their difference;
- the meta-test gradient with respect to theta: through the inner step
  (second order, what training uses) against the plain gradient at theta,
  as |difference| / |plain| and their cosine.

  python benchmarks/inner_step.py --workdir=RUN --step=300 --batches=4
"""

import argparse
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np
import optax

import repo_root  # pylint: disable=unused-import  # checkout root on sys.path

from fasjax import checkpoint
from fasjax import data
from fasjax import meta
from fasjax import model_setup
from fasjax import trained


def parse_args(argv=None) -> argparse.Namespace:
  """The command line."""
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True, help='a training run')
  p.add_argument('--step', type=int, required=True,
                 help='the checkpoint step to read')
  p.add_argument('--batches', type=int, default=4,
                 help='training batches drawn after --step')
  p.add_argument('--data_dir', default=None,
                 help="the run's data dir, if it moved")
  return p.parse_args(argv)


def meta_inputs(nets: meta.Networks, params, batch_stats, images):
  """The meta learner's input per domain, [D, B, ...] (train-mode forward)."""
  net_out, _ = meta.apply_net_per_domain(nets, params['net'],
                                         batch_stats['net'], images)
  return net_out['meta_input']


def inner_step_figures(nets: meta.Networks, theta, meta_stats, x_J, y_J, x_K,
                       y_K, step: jnp.ndarray) -> dict[str, jnp.ndarray]:
  """The figures of one (K, J_i) pair (see the module doc)."""
  hp = nets.hp

  def inner_loss(theta_):
    cls, trip, _ = meta.classifier_losses(nets, theta_, meta_stats, x_J, y_J,
                                          step)
    return cls + hp.inner_trip_weight * trip

  def adapted(theta_):
    return jax.tree.map(lambda p, g: p - hp.inner_lr * g, theta_,
                        jax.grad(inner_loss)(theta_))

  def meta_test_loss(theta_):
    cls, trip, _ = meta.classifier_losses(nets, theta_, meta_stats, x_K, y_K,
                                          step)
    return hp.lambda_cls * cls + hp.lambda_trip * trip

  theta_i = adapted(theta)
  plain = jax.grad(meta_test_loss)(theta)
  through = jax.grad(lambda t: meta_test_loss(adapted(t)))(theta)
  plain_norm = optax.global_norm(plain)
  through_norm = optax.global_norm(through)
  return {
      'theta_norm': optax.global_norm(theta),
      'inner_step_norm': optax.global_norm(
          jax.tree.map(jnp.subtract, theta_i, theta)),
      'loss_at_theta': meta_test_loss(theta),
      'loss_at_adapted': meta_test_loss(theta_i),
      'grad_rel_diff': optax.global_norm(
          jax.tree.map(jnp.subtract, through, plain)) / plain_norm,
      'grad_cosine': (optax.tree_utils.tree_vdot(through, plain)
                      / (through_norm * plain_norm)),
  }


def main(argv=None) -> None:
  args = parse_args(argv)
  config = trained.load_config(args.workdir)
  if args.data_dir:
    config.data.data_dir = args.data_dir
  nets, _, template = model_setup.build(config)
  state, _ = checkpoint.restore(checkpoint.manager(args.workdir), template,
                                args.step)
  theta, meta_stats = state.params['meta'], state.batch_stats['meta']
  train = data.make(config, start_step=args.step).train.as_numpy_iterator()
  forward = jax.jit(meta_inputs, static_argnums=0)
  figures = jax.jit(inner_step_figures, static_argnums=0)
  step = jnp.asarray(args.step)
  rows = []
  for _ in range(args.batches):
    batch = next(train)
    x_D = forward(nets, state.params, state.batch_stats, batch['image'])
    y_D = jnp.asarray(batch['label'])
    for k in range(x_D.shape[0]):
      for j in range(x_D.shape[0]):
        if j != k:
          rows.append(jax.device_get(figures(
              nets, theta, meta_stats, x_D[j], y_D[j], x_D[k], y_D[k], step)))
  print(f'{args.workdir} step {args.step}: alpha = {nets.hp.inner_lr}, '
        f'{len(rows)} (K, J_i) pairs over {args.batches} batches; '
        'median [min, max]')
  ratio = [r['inner_step_norm'] / r['theta_norm'] for r in rows]
  change = [r['loss_at_adapted'] - r['loss_at_theta'] for r in rows]
  rel_change = [c / r['loss_at_theta'] for c, r in zip(change, rows)]

  def line(name, values, fmt='.3g'):
    v = np.asarray(values, dtype=np.float64)
    print(f'  {name}: {np.median(v):{fmt}} [{v.min():{fmt}}, '
          f'{v.max():{fmt}}]')

  line('|theta_M|', [r['theta_norm'] for r in rows])
  line('|alpha grad L_inner(J_i)|', [r['inner_step_norm'] for r in rows])
  line('|alpha grad| / |theta_M|', ratio)
  line('meta-test loss on K at theta', [r['loss_at_theta'] for r in rows])
  line('  at theta\'_i minus at theta', change)
  line('  relative change', rel_change)
  line('|grad through the inner step - plain grad| / |plain grad|',
       [r['grad_rel_diff'] for r in rows])
  line('cosine(grad through the inner step, plain grad)',
       [r['grad_cosine'] for r in rows], fmt='.6f')


if __name__ == '__main__':
  main()
