r"""Where the meta step's time goes: ops of one step, by kind, JAX and PyTorch.

Traces one steady-state step of the paper's network (`benchmarks/train_step.py`
shapes) with `jax.profiler` and prints the time of each kind of XLA
operation (fusion names with their numeric suffix removed), largest first,
and the split between convolution/matrix-product kernels ("gemm": YNNPACK
fusions, convolutions, dots) and everything else. With `--torch` it does the
same for the PyTorch port's step (`torch.profiler`, self time per aten op;
"gemm" = convolutions and matrix products) and prints both splits side by
side: if JAX's gemm time alone exceeds PyTorch's whole step, no removal of
elementwise work can make the JAX step the faster one; only faster kernels can.

  python benchmarks/profile_step.py --conv-impl=matmul --torch
  python benchmarks/profile_step.py --size=64 --width=0.5 --top=20

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
import time

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax

import repo_root  # pylint: disable=unused-import  # checkout root on sys.path

from fasjax import meta
from fasjax.models import layers
import bench_common  # benchmarks/, next to this script
import train_step as bench  # benchmarks/, next to this script

# Runtime bookkeeping rather than XLA operations.
_NOT_OPS = re.compile(r'^\$|Thunk|ThreadPool|PjitFunction|DevicePut')
# Convolution and matrix-product kernels, by op name.
_JAX_GEMM = re.compile(r'ynn_fusion|conv|dot|onednn')
_TORCH_GEMM = re.compile(r'conv|mm$|matmul|linear')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line options."""
  p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  bench_common.add_step_shape_args(p)
  p.add_argument('--conv-impl', default='matmul', choices=layers.CONV_IMPLS)
  p.add_argument('--top', type=int, default=15)
  p.add_argument('--torch', action='store_true',
                 help='also profile the PyTorch port (needs torch)')
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


def gemm_split_ms(kinds: collections.Counter,
                  gemm: re.Pattern) -> tuple[float, float]:
  """(milliseconds in conv/matmul kernels, milliseconds in everything else)."""
  in_gemm = sum(ms for kind, ms in kinds.items() if gemm.search(kind))
  return in_gemm, sum(kinds.values()) - in_gemm


def torch_op_times_ms(width: float, batch) -> tuple[collections.Counter,
                                                    float]:
  """(self milliseconds per aten op of one traced step, unprofiled step s)."""
  from torch import profiler  # pylint: disable=g-import-not-at-top
  step = functools.partial(bench.make_torch_step(width),
                           bench.torch_batch(batch))
  step()  # warm-up
  t0 = time.perf_counter()
  step()
  wall_s = time.perf_counter() - t0
  with profiler.profile(activities=[profiler.ProfilerActivity.CPU]) as prof:
    step()
  kinds: collections.Counter = collections.Counter()
  for event in prof.key_averages():
    if event.self_cpu_time_total > 0:
      kinds[event.key] += event.self_cpu_time_total / 1e3
  return kinds, wall_s


def _print_kinds(title: str, kinds: collections.Counter, top: int) -> None:
  total = sum(kinds.values())
  print(f'{total:9.1f} ms in {title}')
  for kind, ms in kinds.most_common(top):
    print(f'{ms:9.1f} ms {100 * ms / total:5.1f}%  {kind}')


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
  t0 = time.perf_counter()
  state, _ = compiled(state, batch)
  jax.block_until_ready(state)
  jax_wall_s = time.perf_counter() - t0
  os.makedirs(args.trace_dir, exist_ok=True)
  with jax.profiler.trace(args.trace_dir, create_perfetto_trace=True):
    state, _ = compiled(state, batch)
    jax.block_until_ready(state)
  trace_file = max(glob.glob(os.path.join(args.trace_dir, '**',
                                          'perfetto_trace.json.gz'),
                             recursive=True), key=os.path.getmtime)
  kinds = op_times_ms(trace_file)
  _print_kinds(f'XLA ops ({args.size}x{args.size}, width {args.width}, '
               f'{args.domains}x{args.batch}, {args.conv_impl})', kinds,
               args.top)
  rows = [('JAX', jax_wall_s, *gemm_split_ms(kinds, _JAX_GEMM))]
  if args.torch:
    torch_kinds, torch_wall_s = torch_op_times_ms(args.width, batch)
    _print_kinds('PyTorch aten ops (self time)', torch_kinds, args.top)
    rows.append(('PyTorch', torch_wall_s,
                 *gemm_split_ms(torch_kinds, _TORCH_GEMM)))
  print('\n          step (unprofiled)   conv/matmul kernels   other ops')
  for name, wall_s, gemm_ms, other_ms in rows:
    print(f'{name:>8s}  {wall_s:10.2f} s  {gemm_ms / 1e3:14.2f} s  '
          f'{other_ms / 1e3:14.2f} s')


if __name__ == '__main__':
  main()
