r"""Where the meta step's time goes: XLA ops of one step, by kind.

Traces one steady-state step of the paper's network (`benchmarks/train_step.py`
shapes) with `jax.profiler` and prints the time of each kind of XLA
operation (fusion names with their numeric suffix removed), largest first.

  PYTHONPATH=. python benchmarks/profile_step.py --conv-impl=matmul
  PYTHONPATH=. python benchmarks/profile_step.py --size=64 --width=0.5 --top=20

The trace (TensorBoard / Perfetto) stays in --trace_dir for a closer look.
"""

import argparse
import collections
import functools
import glob
import gzip
import json
import os
import re

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax

from fasjax import meta
from fasjax.models import layers
import train_step as bench  # benchmarks/, next to this script

# Runtime bookkeeping rather than XLA operations.
_NOT_OPS = re.compile(r'^\$|Thunk|ThreadPool|PjitFunction|DevicePut')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line options."""
  p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  p.add_argument('--size', type=int, default=64)
  p.add_argument('--width', type=float, default=1.0)
  p.add_argument('--batch', type=int, default=20, help='images per domain')
  p.add_argument('--domains', type=int, default=3)
  p.add_argument('--conv-impl', default='matmul', choices=layers.CONV_IMPLS)
  p.add_argument('--top', type=int, default=15)
  p.add_argument('--trace_dir', default='/tmp/fasjax_profile_step')
  return p.parse_args(argv)


def op_times_ms(trace_file: str) -> collections.Counter:
  """Milliseconds per XLA operation kind in a Perfetto JSON trace."""
  with gzip.open(trace_file) as f:
    trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  kinds: collections.Counter = collections.Counter()
  for e in events:
    if e.get('ph') == 'X' and 'dur' in e and not _NOT_OPS.search(e['name']):
      kinds[re.sub(r'[._]\d+$', '', e['name'])] += e['dur'] / 1e3
  return kinds


def main(argv: list[str] | None = None) -> None:
  """Compiles, warms up, traces one step, prints the op kinds."""
  args = parse_args(argv)
  nets = bench.make_networks(args.width, args.conv_impl)
  batch = bench.synthetic_batch(args.domains, args.batch, args.size)
  compiled, tx, _ = bench.compile_jax_step(nets, batch, args.size)
  init = jax.jit(functools.partial(meta.init_state, nets, tx,
                                   image_size=args.size))
  with jax.threefry_partitionable(False):
    state = init(jax.random.PRNGKey(0))
  state, _ = compiled(state, batch)  # warm-up
  jax.block_until_ready(state)
  os.makedirs(args.trace_dir, exist_ok=True)
  with jax.profiler.trace(args.trace_dir, create_perfetto_trace=True):
    state, _ = compiled(state, batch)
    jax.block_until_ready(state)
  trace_file = max(glob.glob(os.path.join(args.trace_dir, '**',
                                          'perfetto_trace.json.gz'),
                             recursive=True), key=os.path.getmtime)
  kinds = op_times_ms(trace_file)
  total = sum(kinds.values())
  print(f'{total:9.1f} ms in XLA ops ({args.size}x{args.size}, width '
        f'{args.width}, {args.domains}x{args.batch}, {args.conv_impl})')
  for kind, ms in kinds.most_common(args.top):
    print(f'{ms:9.1f} ms {100 * ms / total:5.1f}%  {kind}')


if __name__ == '__main__':
  main()
