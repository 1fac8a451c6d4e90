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


def _norm(tree) -> jnp.ndarray:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def _dot(a, b) -> jnp.ndarray:
  return sum(jnp.sum(x * y) for x, y in zip(jax.tree.leaves(a),
                                            jax.tree.leaves(b)))


def inner_step_figures(nets: meta.Networks, params, batch_stats, batch,
                       step: jnp.ndarray, meta_test_domain: int,
                       meta_train_domain: int) -> dict[str, jnp.ndarray]:
  """The figures of one (K, J_i) pair of one batch (see the module doc)."""
  hp = nets.hp
  net_out, _ = meta.apply_net_per_domain(nets, params['net'],
                                         batch_stats['net'], batch['image'])
  x_D, y_D = net_out['meta_input'], jnp.asarray(batch['label'])
  theta, meta_stats = params['meta'], batch_stats['meta']
  x_J, y_J = x_D[meta_train_domain], y_D[meta_train_domain]
  x_K, y_K = x_D[meta_test_domain], y_D[meta_test_domain]

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
  diff = jax.tree.map(jnp.subtract, through, plain)
  return {
      'theta_norm': _norm(theta),
      'inner_step_norm': _norm(jax.tree.map(jnp.subtract, theta_i, theta)),
      'loss_at_theta': meta_test_loss(theta),
      'loss_at_adapted': meta_test_loss(theta_i),
      'grad_rel_diff': _norm(diff) / _norm(plain),
      'grad_cosine': _dot(through, plain) / (_norm(through) * _norm(plain)),
  }


def main(argv=None) -> None:
  args = parse_args(argv)
  config = trained.load_config(args.workdir)
  if args.data_dir:
    config.data.data_dir = args.data_dir
  nets, tx, template = model_setup.build(config)
  del tx
  state, _ = checkpoint.restore(checkpoint.manager(args.workdir), template,
                                args.step)
  train = data.make(config, start_step=args.step).train.as_numpy_iterator()
  figures = jax.jit(inner_step_figures, static_argnums=(0, 5, 6))
  n_domains = len(config.data.sources)
  rows = []
  for _ in range(args.batches):
    batch = next(train)
    for k in range(n_domains):
      for j in range(n_domains):
        if j != k:
          rows.append(jax.device_get(figures(
              nets, state.params, state.batch_stats, batch,
              jnp.asarray(args.step), k, j)))
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
