r"""One full meta iteration in fasjax against a PyTorch port, same run.

The JAX side is the step `launch.py` runs: the paper config of
`configs/ocm_to_i.py` (its conv_impl and remat policy unless overridden),
networks from `model_setup.build_networks`, compiled by
`sharding.jit_train_step` on a one-device mesh. The PyTorch side is
`fasjax.torch_port`, written as the reference RFMetaFAS code runs an
iteration, extended with the paper's branches (per-domain forwards, depth and
parsing losses, ASC, second-order inner steps through
`torch.autograd.grad(..., create_graph=True)`, one Adam step). Both sides share
architecture, widths, batch, input size and loss weights.

Shapes: `--size` (model.image_size), `--width` (model.width), `--batch`
(images per domain = 2 x data.per_class_batch), `--domains`; `--remat=NAME`
(model.remat), `--conv-impl` (model.conv_impl), `--dtype` (model.dtype).

Timing: one warm-up step each, then `--repeats` steps alternating JAX and
PyTorch so that load changes on a shared machine hit both alike; medians are
reported. `gflops_per_s` is the step's FLOP count over the JAX median;
`peak_gflops_per_s` is a dense float32 2048x2048 matmul in JAX, timed between
the steps of the same run.

FLOPs (`step_gflop`, `flops_from` says which): XLA's cost analysis of the
compiled step. XLA counts a loop body once, so where the step has loops
(conv_impl='matmul': a `lax.map` over the nine taps; remat='domains': a scan
over the domains) the count comes from the compiled step with XLA convs and
the domain loop unrolled (`check_accelerator.loop_free`: the same arithmetic;
one more compile, not in `compile_s`). Either way the remat policy's
recomputation is counted: `jax.checkpoint` puts the recomputed forward into
the backward pass behind optimisation barriers.

  python benchmarks/train_step.py --json              # defaults
  python benchmarks/train_step.py --conv-impl=matmul --json
  python benchmarks/train_step.py --size=256 --analyze-only --json
  python benchmarks/train_step.py --size=256 --remat=none \
      --analyze-only --json

`--analyze-only` compiles the JAX step without running it and prints XLA's
FLOP count and memory estimate (for planning GPU runs; no PyTorch needed).
"""

import argparse
import functools
import os
import statistics
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import repo_root  # pylint: disable=unused-import  # checkout root on sys.path

from fasjax import check_accelerator
from fasjax import meta
from fasjax import model_setup
from fasjax import sharding
# The PyTorch port, re-exported for profile_step.py and conv_layers.py.
from fasjax.torch_port import LOSS  # pylint: disable=unused-import
from fasjax.torch_port import NUM_CLASSES  # pylint: disable=unused-import
from fasjax.torch_port import build_torch  # pylint: disable=unused-import
from fasjax.torch_port import make_torch_step
from fasjax.torch_port import torch_batch
from fasjax.torch_port import torch_losses  # pylint: disable=unused-import
import bench_common  # benchmarks/, next to this script

synthetic_batch = check_accelerator.synthetic_batch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line options."""
  p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  bench_common.add_step_shape_args(p)
  bench_common.add_model_args(p)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--threads', type=int, default=0,
                 help='torch intra-op threads (0: torch default)')
  p.add_argument('--no-torch', action='store_true')
  p.add_argument('--analyze-only', action='store_true',
                 help='compile the JAX step, print XLA analyses, do not run')
  p.add_argument('--json', action='store_true', help='one JSON line only')
  return p.parse_args(argv)


# ----------------------------------------------------------------------------
# JAX side.


def make_networks(width: float, conv_impl: str | None = 'xla',
                  dtype: Any = None, remat: str | None = None,
                  size: int = 64, batch: int = 20) -> meta.Networks:
  """The paper config's networks (`model_setup.build_networks`).

  `conv_impl`, `dtype` and `remat` override the config's (None keeps it).
  """
  config = bench_common.paper_config(
      size=size, width=width, batch=batch, conv_impl=conv_impl,
      remat=remat, dtype=None if dtype is None else jnp.dtype(dtype).name)
  return model_setup.build_networks(config)


def one_device_mesh():
  """The launch path's mesh, on the first device."""
  return sharding.make_mesh(jax.devices()[:1])


def compile_jax_step(nets: meta.Networks, batch: dict[str, np.ndarray],
                     size: int):
  """(compiled step, optimizer, compile seconds), without running it.

  The step is `sharding.jit_train_step` on a one-device mesh, as launch.py
  compiles it (the state is donated).
  """
  tx = meta.make_optimizer(1e-3, 0.9, 0.999, 1e-8, 5e-5)
  state_shape = model_setup.abstract_state(nets, tx, size)
  step = sharding.jit_train_step(nets, tx, one_device_mesh(), donate=True)
  t0 = time.perf_counter()
  compiled = step.lower(state_shape, batch).compile()
  compile_s = time.perf_counter() - t0
  return compiled, tx, compile_s


def loop_free_flops(nets: meta.Networks, batch: dict[str, np.ndarray],
                    size: int) -> float:
  """FLOPs of the compiled step of `check_accelerator.loop_free(nets)`.

  XLA's cost analysis counts a loop body once, so the matmul path's tap loop
  and remat='domains' (a scan over the domains) would be under-counted; the
  same step with XLA convs and the domain loop unrolled is the same
  arithmetic, the remat policy's recomputation included.
  """
  compiled, _, _ = compile_jax_step(check_accelerator.loop_free(nets), batch,
                                    size)
  return xla_analysis(compiled)['flops']


def xla_analysis(compiled) -> dict[str, float]:
  """FLOPs and memory of a compiled computation from XLA's analyses."""
  cost = compiled.cost_analysis()
  if isinstance(cost, list):  # Older jax returns one dict per computation.
    cost = cost[0]
  out = {'flops': float(cost.get('flops', float('nan')))}
  mem = compiled.memory_analysis()
  if mem is not None:
    args = mem.argument_size_in_bytes
    outs = mem.output_size_in_bytes
    temp = mem.temp_size_in_bytes
    alias = mem.alias_size_in_bytes
    out.update(argument_bytes=args, output_bytes=outs, temp_bytes=temp,
               peak_bytes_estimate=args + outs + temp - alias)
  return out


def peak_matmul_s(n: int = 2048) -> float:
  """Seconds of one float32 n x n matmul (median of 5, after warm-up)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  mm = jax.jit(jnp.matmul)
  mm(a, a).block_until_ready()
  times = []
  for _ in range(5):
    t0 = time.perf_counter()
    mm(a, a).block_until_ready()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


# ----------------------------------------------------------------------------


def _timed(fn) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Compiles, analyses and (unless --analyze-only) times both steps."""
  config = bench_common.paper_config(
      size=args.size, width=args.width, batch=args.batch,
      conv_impl=args.conv_impl, remat=args.remat, dtype=args.dtype)
  conv_impl, conv_why = model_setup.resolve_conv_impl(
      config.model.conv_impl, config.model.width)
  remat = config.model.get('remat', 'none')
  nets = model_setup.build_networks(config)
  batch = synthetic_batch(args.domains, args.batch, args.size)
  compiled, tx, compile_s = compile_jax_step(nets, batch, args.size)
  analysis = xla_analysis(compiled)
  if not check_accelerator.has_counted_loops(nets):
    flops_from = 'XLA cost analysis of the compiled step'
  else:
    analysis['flops'] = loop_free_flops(nets, batch, args.size)
    flops_from = ('XLA cost analysis of the compiled step with XLA convs and '
                  'the domain loop unrolled (XLA counts a loop body once)')
  result: dict[str, Any] = {
      'size': args.size, 'width': args.width, 'batch': args.batch,
      'domains': args.domains, 'conv_impl': conv_impl,
      'conv_impl_why': conv_why, 'remat': remat,
      'dtype': config.model.dtype, 'step': 'sharding.jit_train_step, 1 device',
      'backend': jax.default_backend(),
      'devices': jax.device_count(), 'cpu_count': os.cpu_count(),
      'compile_s': round(compile_s, 2),
      'step_gflop': round(analysis['flops'] / 1e9, 2),
      'flops_from': flops_from,
  }
  if 'peak_bytes_estimate' in analysis:
    result['peak_memory_gb'] = round(analysis['peak_bytes_estimate'] / 1e9,
                                     3)
    result['temp_memory_gb'] = round(analysis['temp_bytes'] / 1e9, 3)
  if args.analyze_only:
    result['loadavg_1m'] = round(os.getloadavg()[0], 2)
    return result

  mesh = one_device_mesh()
  state = sharding.replicate(
      model_setup.jit_init_state(nets, tx, args.size, seed=0), mesh)
  device_batch = sharding.global_train_batch(batch, mesh)
  holder = {'state': state}

  def jax_step():
    holder['state'], metrics = compiled(holder['state'], device_batch)
    jax.block_until_ready(metrics['loss'])

  torch_step = None
  if not args.no_torch:
    import torch  # pylint: disable=g-import-not-at-top
    if args.threads:
      torch.set_num_threads(args.threads)
    result['torch_version'] = torch.__version__
    result['torch_threads'] = torch.get_num_threads()
    tb = torch_batch(batch)
    step_fn = make_torch_step(args.width)
    torch_step = functools.partial(step_fn, tb)

  jax_step()  # Warm-up (first execution allocates).
  if torch_step:
    torch_step()
  jax_times, torch_times, peak_times = [], [], []
  for _ in range(args.repeats):
    jax_times.append(_timed(jax_step))
    peak_times.append(peak_matmul_s())
    if torch_step:
      torch_times.append(_timed(torch_step))
  jax_s = statistics.median(jax_times)
  peak_s = statistics.median(peak_times)
  result.update(
      jax_step_s=round(jax_s, 3),
      jax_images_per_s=round(args.domains * args.batch / jax_s, 2),
      gflops_per_s=round(analysis['flops'] / jax_s / 1e9, 1),
      peak_gflops_per_s=round(2 * 2048**3 / peak_s / 1e9, 1),
      jax_times_s=[round(t, 3) for t in jax_times])
  if torch_step:
    torch_s = statistics.median(torch_times)
    result.update(torch_step_s=round(torch_s, 3),
                  ratio=round(jax_s / torch_s, 3),
                  torch_times_s=[round(t, 3) for t in torch_times])
  result['loadavg_1m'] = round(os.getloadavg()[0], 2)
  return result


def main(argv: list[str] | None = None) -> None:
  """Prints the result (one JSON line with --json)."""
  args = parse_args(argv)
  bench_common.print_result(run(args), args.json)


if __name__ == '__main__':
  sys.exit(main())
