r"""Images per second of evaluation: the jitted predict step, and end to end.

`model_images_per_s` times `fasjax.evaluate.predict_step` (eval-mode forward
of all branches) on a device-resident batch; `end_to_end_images_per_s` times
`fasjax.evaluate.score_frames` over `synthetic_fas` target frames, i.e. the
tf.data eval pipeline (decode, resize, HSV) feeding the jitted step, as
training's periodic evaluation runs it. Parameters are freshly initialised:
speed does not depend on their values.

  python benchmarks/eval.py --json
  python benchmarks/eval.py --conv-impl=matmul --json
"""

import argparse
import functools
import os
import statistics
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np

import repo_root  # pylint: disable=unused-import  # checkout root on sys.path

from fasjax import meta
from fasjax.models import layers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step as train_step_bench  # The same network factory.
import bench_common  # benchmarks/, next to this script

DEFAULT_DATA_DIR = os.path.join('/tmp', 'fasjax_bench_data')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line options."""
  p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  p.add_argument('--size', type=int, default=64)
  p.add_argument('--width', type=float, default=1.0)
  p.add_argument('--batch', type=int, default=64, help='eval batch size')
  p.add_argument('--conv-impl', default='xla', choices=layers.CONV_IMPLS)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--data_dir', default=DEFAULT_DATA_DIR)
  p.add_argument('--domain', default='m', help='synthetic target domain')
  p.add_argument('--no-pipeline', action='store_true',
                 help='time the predict step only')
  p.add_argument('--json', action='store_true', help='one JSON line only')
  return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, object]:
  """Times the predict step, then one pass over the target's frames."""
  # Imported here so that --help answers without loading TensorFlow.
  from fasjax import evaluate
  from fasjax import input_pipeline
  from fasjax.datasets import prepare_synthetic
  nets = train_step_bench.make_networks(args.width, args.conv_impl)
  tx = meta.make_optimizer(1e-3, 0.9, 0.999, 1e-8, 5e-5)
  with jax.threefry_partitionable(False):
    state = jax.jit(functools.partial(meta.init_state, nets, tx,
                                      image_size=args.size))(
                                          jax.random.PRNGKey(0))
  predict = evaluate.make_predict_fn(nets)
  images = jnp.asarray(np.random.default_rng(0).random(
      (args.batch, args.size, args.size, 6), np.float32))
  t0 = time.perf_counter()
  jax.block_until_ready(predict(state.params, state.batch_stats, images))
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(predict(state.params, state.batch_stats, images))
    times.append(time.perf_counter() - t0)
  result = {
      'size': args.size, 'width': args.width, 'batch': args.batch,
      'conv_impl': args.conv_impl, 'compile_s': round(compile_s, 2),
      'model_images_per_s': round(args.batch / statistics.median(times), 1),
  }
  if not args.no_pipeline:
    prepare_synthetic.prepare([args.domain], args.data_dir)
    dataset = input_pipeline.load_domain('synthetic_fas', args.domain,
                                         ['train', 'test'], args.data_dir)
    batches = input_pipeline.eval_batches(
        dataset, batch_size=args.batch, image_size=args.size,
        depth_size=args.size // 8)
    t0 = time.perf_counter()
    frames = evaluate.score_frames(predict, state.params, state.batch_stats,
                                   batches)
    elapsed = time.perf_counter() - t0
    result.update(frames=int(len(frames['scores'])),
                  end_to_end_images_per_s=round(
                      len(frames['scores']) / elapsed, 1))
  result.update(cpu_count=os.cpu_count(),
                loadavg_1m=round(os.getloadavg()[0], 2))
  return result


def main(argv: list[str] | None = None) -> None:
  """Prints the result (one JSON line with --json)."""
  args = parse_args(argv)
  bench_common.print_result(run(args), args.json)


if __name__ == '__main__':
  sys.exit(main())
