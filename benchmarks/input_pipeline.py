r"""Images per second of the training input pipeline on `synthetic_fas`.

Times `fasjax.input_pipeline.train_dataset` as training uses it: tfds read
and PNG decode, per-(domain, class) shuffling, resize, random horizontal flip
(with the parsing left/right swap), PIL-exact HSV, batching and stacking over
domains, consumed as numpy arrays. The data is generated on first use.

  python benchmarks/input_pipeline.py --json
  python benchmarks/input_pipeline.py --size=256 --json

Compare `images_per_s` with `jax_images_per_s` of benchmarks/train_step.py at
the same size: the pipeline should deliver several times what a step eats
(it runs on the host threads while the step runs).
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
import repo_root  # pylint: disable=unused-import  # checkout root on sys.path

import bench_common  # benchmarks/, next to this script

DEFAULT_DATA_DIR = os.path.join('/tmp', 'fasjax_bench_data')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line options."""
  p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  p.add_argument('--data_dir', default=DEFAULT_DATA_DIR)
  p.add_argument('--domains', default='o,c,i', help='source domains')
  p.add_argument('--smoke', action='store_true',
                 help='use the miniature *_smoke builders')
  p.add_argument('--size', type=int, default=64, help='model input side')
  p.add_argument('--per_class_batch', type=int, default=10)
  p.add_argument('--steps', type=int, default=40, help='timed steps per round')
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--warmup', type=int, default=5)
  p.add_argument('--json', action='store_true', help='one JSON line only')
  return p.parse_args(argv)


def make_dataset(args: argparse.Namespace) -> 'tf.data.Dataset':
  """The training stream of the chosen synthetic source domains."""
  # Imported here so that --help answers without loading TensorFlow.
  from fasjax import input_pipeline
  from fasjax.datasets import prepare_synthetic
  configs = [d + ('_smoke' if args.smoke else '')
             for d in args.domains.split(',')]
  prepare_synthetic.prepare(configs, args.data_dir)
  sources = [input_pipeline.load_domain('synthetic_fas', c, ['train', 'test'],
                                        args.data_dir) for c in configs]
  return input_pipeline.train_dataset(
      sources, per_class_batch=args.per_class_batch, image_size=args.size,
      depth_size=args.size // 8, seed=0, flip=True, shuffle_buffer=1024)


def run(args: argparse.Namespace) -> dict[str, object]:
  """Times rounds of `steps` elements after a warm-up; medians."""
  t0 = time.perf_counter()
  iterator = make_dataset(args).as_numpy_iterator()
  for _ in range(args.warmup):
    batch = next(iterator)
  setup_s = time.perf_counter() - t0
  images_per_step = batch['image'].shape[0] * batch['image'].shape[1]
  rates = []
  for _ in range(args.rounds):
    t0 = time.perf_counter()
    for _ in range(args.steps):
      next(iterator)
    rates.append(args.steps * images_per_step / (time.perf_counter() - t0))
  return {
      'size': args.size, 'domains': args.domains,
      'images_per_step': images_per_step,
      'images_per_s': round(statistics.median(rates), 1),
      'rounds_images_per_s': [round(r, 1) for r in rates],
      'setup_s': round(setup_s, 2), 'cpu_count': os.cpu_count(),
      'loadavg_1m': round(os.getloadavg()[0], 2),
  }


def main(argv: list[str] | None = None) -> None:
  """Prints the result (one JSON line with --json)."""
  args = parse_args(argv)
  bench_common.print_result(run(args), args.json)


if __name__ == '__main__':
  sys.exit(main())
