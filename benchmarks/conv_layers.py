r"""The network's 3x3 convolutions one by one: JAX kernels against PyTorch's.

For every 3x3 conv of the multi-task network (shapes captured from the
PyTorch port in `benchmarks/train_step.py` with forward hooks, so the list
follows the architecture), times the three products a training step needs,
at the step's batch (domains x images per domain):

- forward: JAX `lax.conv_general_dilated`; PyTorch `F.conv2d` (oneDNN);
- input gradient: JAX the conv with the flipped, transposed kernel (what
  `fast_conv` and XLA use); PyTorch `aten.convolution_backward` asked for
  the input gradient only;
- weight gradient: JAX `fast_conv`'s nine tap matmuls (`--conv-impl=matmul`)
  and XLA's own (`jax.vjp` of the conv, `--conv-impl=xla`); PyTorch
  `aten.convolution_backward` asked for the weight gradient only.

Medians of --repeats calls after one warm-up each. Prints one line per layer
(GFLOP/s) and the totals; with --json one JSON object. The meta learner's
convs (8x8 and smaller maps, <1% of the FLOPs) are left out.

  python benchmarks/conv_layers.py
  python benchmarks/conv_layers.py --size=32 --width=0.5 --json
"""

import argparse
import statistics
import sys
import time
from typing import Any, Callable

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

import repo_root  # pylint: disable=unused-import  # checkout root on sys.path

from fasjax.models import fast_conv
import bench_common  # benchmarks/, next to this script
import train_step as bench  # benchmarks/, next to this script


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line options."""
  p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  bench_common.add_step_shape_args(p)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--json', action='store_true')
  return p.parse_args(argv)


def conv_shapes(width: float, size: int) -> list[tuple[int, int, int, int]]:
  """(H, W, C_in, C_out) of every 3x3 conv in one forward of the network."""
  import torch  # pylint: disable=g-import-not-at-top
  net, _ = bench.build_torch(width)
  shapes = []

  def hook(module, inputs, _):
    if module.kernel_size == (3, 3):
      _, c, h, w = inputs[0].shape
      shapes.append((h, w, c, module.out_channels))

  for module in net.modules():
    if isinstance(module, torch.nn.Conv2d):
      module.register_forward_hook(hook)
  with torch.no_grad():
    net(torch.zeros(2, 6, size, size))
  return shapes


def median_s(fn: Callable[[], Any], repeats: int) -> float:
  """Median wall seconds of fn() after one warm-up call."""
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def jax_times(n: int, shape: tuple[int, int, int, int],
              repeats: int) -> dict[str, float]:
  """Seconds of JAX's forward, input gradient and both weight gradients."""
  h, w, c, o = shape
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(keys[0], (n, h, w, c))
  kernel = jax.random.normal(keys[1], (3, 3, c, o)) * 0.05
  g = jax.random.normal(keys[2], (n, h, w, o))
  conv = jax.jit(lambda x, k: fast_conv._xla_conv(x, k, None))  # pylint: disable=protected-access
  input_grad = jax.jit(lambda g, k: fast_conv._xla_conv(  # pylint: disable=protected-access
      g, fast_conv._transposed_kernel(k), None))  # pylint: disable=protected-access
  taps = jax.jit(lambda x, g: fast_conv._weight_grad(x, g, None))  # pylint: disable=protected-access
  xla_wgrad = jax.jit(lambda x, k, g: jax.vjp(
      lambda k: fast_conv._xla_conv(x, k, None), k)[1](g)[0])  # pylint: disable=protected-access
  run = lambda f, *a: median_s(lambda: jax.block_until_ready(f(*a)), repeats)
  return {'fwd': run(conv, x, kernel), 'dx': run(input_grad, g, kernel),
          'dw': run(taps, x, g), 'dw_xla': run(xla_wgrad, x, kernel, g)}


def torch_times(n: int, shape: tuple[int, int, int, int],
                repeats: int) -> dict[str, float]:
  """Seconds of PyTorch's forward, input gradient and weight gradient."""
  import torch  # pylint: disable=g-import-not-at-top
  h, w, c, o = shape
  x = torch.randn(n, c, h, w)
  kernel = torch.randn(o, c, 3, 3) * 0.05
  g = torch.randn(n, o, h, w)

  def backward(mask):
    return lambda: torch.ops.aten.convolution_backward(
        g, x, kernel, None, (1, 1), (1, 1), (1, 1), False, (0, 0), 1, mask)
  with torch.no_grad():
    return {
        'fwd': median_s(lambda: torch.nn.functional.conv2d(x, kernel,
                                                           padding=1),
                        repeats),
        'dx': median_s(backward([True, False, False]), repeats),
        'dw': median_s(backward([False, True, False]), repeats),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Times every layer; returns per-layer seconds and totals."""
  n = args.domains * args.batch
  layers = []
  for shape in conv_shapes(args.width, args.size):
    h, w, c, o = shape
    gflop = 2 * 9 * n * h * w * c * o / 1e9
    layers.append({'shape': shape, 'gflop': gflop,
                   'jax': jax_times(n, shape, args.repeats),
                   'torch': torch_times(n, shape, args.repeats)})
  totals = {f'{side}_{part}_s': round(sum(l[side][part] for l in layers), 3)
            for side, parts in (('jax', ('fwd', 'dx', 'dw', 'dw_xla')),
                                ('torch', ('fwd', 'dx', 'dw')))
            for part in parts}
  totals['jax_matmul_path_s'] = round(
      totals['jax_fwd_s'] + totals['jax_dx_s'] + totals['jax_dw_s'], 3)
  totals['torch_s'] = round(
      totals['torch_fwd_s'] + totals['torch_dx_s'] + totals['torch_dw_s'], 3)
  return {'size': args.size, 'width': args.width, 'images': n,
          'layers': layers, 'gflop_per_product': round(
              sum(l['gflop'] for l in layers), 1), **totals}


def print_table(result: dict[str, Any]) -> None:
  """One line per layer in GFLOP/s, then the totals in seconds."""
  print(f'{result["images"]} images; GFLOP/s of JAX (fwd / dx / dw taps / dw '
        'XLA) and PyTorch (fwd / dx / dw)')
  for layer in result['layers']:
    h, w, c, o = layer['shape']
    rate = lambda t, gf=layer['gflop']: f'{gf / t:5.0f}'
    j, t = layer['jax'], layer['torch']
    print(f'{h:3d}x{w:<3d} {c:4d}->{o:<4d} {layer["gflop"]:6.1f} GFLOP | JAX '
          f'{rate(j["fwd"])} {rate(j["dx"])} {rate(j["dw"])} '
          f'{rate(j["dw_xla"])} | PyTorch {rate(t["fwd"])} {rate(t["dx"])} '
          f'{rate(t["dw"])}')
  bench_common.print_result(
      {k: v for k, v in result.items() if k.endswith('_s')}, as_json=False)


def main(argv: list[str] | None = None) -> None:
  """Prints the per-layer table (or one JSON line with --json)."""
  args = parse_args(argv)
  result = run(args)
  if args.json:
    result['layers'] = [{**l, 'jax': {k: round(v, 4) for k, v in
                                       l['jax'].items()},
                         'torch': {k: round(v, 4) for k, v in
                                   l['torch'].items()}}
                        for l in result['layers']]
    bench_common.print_result(result, as_json=True)
  else:
    print_table(result)


if __name__ == '__main__':
  sys.exit(main())
