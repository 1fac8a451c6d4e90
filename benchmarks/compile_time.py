r"""Compile time of the launch.py train step for the CPU, a GPU and a TPU.

The step is the paper config's (`configs/ocm_to_i.py`, networks from
`model_setup.build_networks`, `sharding.jit_train_step` on a one-device
mesh, donated state), float32, 3 source domains x 20 images of 256x256x6,
native (XLA) convolutions, for each remat policy, with launch.py's compile
options for the backend (`fasjax.compile_options`: on TPUs
exec_time_optimization_effort=-1). The CPU is compiled for
here; the GPU (an H100) and the TPU (a v5e chip) are compiled for without
the hardware (`fasjax.deviceless`: XLA:GPU through the CUDA 12 plugin,
libtpu), so nothing runs and only the compiler is timed. `lower_s` is
tracing and lowering to StableHLO (the same for every target), `compile_s`
the target's compiler. Each result is a JSON line appended to
docs/compile_time.jsonl with the commit, the machine's load, and the jax,
plugin and libtpu versions; a markdown table is printed at the end.

  python benchmarks/compile_time.py                         # every target and policy
  python benchmarks/compile_time.py --targets=v5e --remat=domains
  python benchmarks/compile_time.py --targets=v5e --size=64 --unroll-domains
  python benchmarks/compile_time.py --targets=v5e \
      --compiler-option=exec_time_optimization_effort=-1

Variants for finding what a compiler spends its time on: --size, --width,
--domains, --batch, --conv-impl, --unroll-domains (the domain scan
unrolled), --step=plain (meta.train_step without shard_map, so without
collectives), --compiler-option=NAME=VALUE (jax's compile options instead
of launch.py's, e.g. exec_time_optimization_effort=0 for XLA's default,
memory_fitting_effort, or an XLA debug option), --no-record. `compile_cpu_s`
(CPU seconds of all threads) compares runs on a loaded machine better than
wall time; on TPUs `optimal_seconds` is libtpu's estimate of the step's run
time (loop bodies counted once). libtpu's own flags are read from
LIBTPU_INIT_ARGS when libtpu loads (recorded with each line). Each
full-size TPU compile takes minutes of a core: run them one at a time.
"""

import argparse
import dataclasses
import datetime
import functools
import json
import os
import platform
import time
from typing import Any

import repo_root  # pylint: disable=unused-import  # checkout root on sys.path

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# libtpu asks the (absent) GCE metadata server which TPU this is, unless told.
os.environ.setdefault('TPU_SKIP_MDS_QUERY', '1')
# libtpu holds a lock file for one process per host; compiling without a TPU
# another process (a second benchmark, a test) may hold it too.
os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax

from fasjax import compile_options
from fasjax import deviceless
from fasjax import meta
from fasjax import model_setup
from fasjax import provenance
from fasjax import sharding
from fasjax.models import layers
import bench_common  # benchmarks/, next to this script

RECORD = os.path.join(repo_root.ROOT, 'docs', 'compile_time.jsonl')
TARGETS = ('cpu', 'h100', 'v5e')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line options."""
  p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  p.add_argument('--targets', default=','.join(TARGETS),
                 help='comma-separated: cpu and fasjax.deviceless target '
                 'names (h100, v5e, ...)')
  p.add_argument('--remat', default=','.join(layers.REMAT_POLICIES),
                 help='comma-separated remat policies')
  p.add_argument('--size', type=int, default=256, help='input side S')
  p.add_argument('--width', type=float, default=1.0, help='channel multiplier')
  p.add_argument('--batch', type=int, default=20, help='images per domain')
  p.add_argument('--domains', type=int, default=3, help='source domains')
  p.add_argument('--conv-impl', default='xla', choices=layers.CONV_IMPLS,
                 help='model.conv_impl (default: native XLA convolutions)')
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  p.add_argument('--unroll-domains', action='store_true',
                 help="remat=domains: unroll the domains' lax.scan")
  p.add_argument('--step', default='launch', choices=('launch', 'plain'),
                 help="launch: sharding.jit_train_step (launch.py's); plain: "
                 'meta.train_step jitted without shard_map (no collectives)')
  p.add_argument('--compiler-option', action='append', default=[],
                 metavar='NAME=VALUE', help='passed to .compile(); repeatable')
  p.add_argument('--record', default=RECORD,
                 help='JSON-lines file the results are appended to')
  p.add_argument('--no-record', action='store_true',
                 help='print only, append nothing')
  p.add_argument('--table', action='store_true',
                 help="print the table of the record's paper-step lines "
                 "(launch.py's options; the latest per target and policy) "
                 'and exit')
  return p.parse_args(argv)


def _option_value(text: str) -> Any:
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return {'true': True, 'false': False}.get(text.lower(), text)


def compiler_options(pairs: list[str]) -> dict[str, Any]:
  """--compiler-option NAME=VALUE pairs as .compile()'s dict."""
  out = {}
  for pair in pairs:
    name, sep, value = pair.partition('=')
    if not sep or not name:
      raise SystemExit(f'--compiler-option={pair!r}: expected NAME=VALUE')
    out[name] = _option_value(value)
  return out


def devices_of(target: str) -> list[Any]:
  """One device of the target: this machine's CPU, or a deviceless one."""
  if target == 'cpu':
    return jax.devices('cpu')[:1]
  return list(deviceless.target_devices(target, 1))


def step_inputs(nets: meta.Networks, tx, mesh, args: argparse.Namespace):
  """The step's abstract state and batch, placed as launch.py places them."""
  rep = sharding.replicated(mesh)
  state = jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep),
      model_setup.abstract_state(nets, tx, args.size))
  split = sharding.train_batch_sharding(mesh)
  d, b, s = args.domains, args.batch, args.size
  shapes = {'image': ((d, b, s, s, 6), 'float32'),
            'depth': ((d, b, s // 8, s // 8), 'float32'),
            'parsing': ((d, b, s, s), 'int32'),
            'label': ((d, b), 'int32')}
  batch = {k: jax.ShapeDtypeStruct(shape, dtype, sharding=split)
           for k, (shape, dtype) in shapes.items()}
  return state, batch


def measure(target: str, remat: str, args: argparse.Namespace,
            options: dict[str, Any]) -> dict[str, Any]:
  """Lowers and compiles the step for one target and policy; times both."""
  config = bench_common.paper_config(
      size=args.size, width=args.width, batch=args.batch,
      conv_impl=args.conv_impl, remat=remat, dtype=args.dtype)
  nets = model_setup.build_networks(config)
  if args.unroll_domains:
    nets = dataclasses.replace(
        nets, hp=dataclasses.replace(nets.hp, unroll_domains=True))
  tx = model_setup.build_optimizer(config)
  devices = devices_of(target)
  mesh = sharding.make_mesh(devices)
  state, batch = step_inputs(nets, tx, mesh, args)
  if args.step == 'launch':
    step = sharding.jit_train_step(nets, tx, mesh, donate=True)
  else:
    rep = sharding.replicated(mesh)
    step = jax.jit(functools.partial(meta.train_step, nets=nets, tx=tx),
                   in_shardings=(rep, sharding.train_batch_sharding(mesh)),
                   out_shardings=(rep, rep), donate_argnums=(0,))
  load_before = os.getloadavg()[0]
  t0 = time.perf_counter()
  lowered = step.lower(state, batch)
  if not args.compiler_option:  # launch.py's options for the backend
    platform = 'cpu' if target == 'cpu' else deviceless.get_target(
        target).platform
    options = compile_options.for_backend(config, platform)
  t1, cpu1 = time.perf_counter(), time.process_time()
  error = None
  try:
    compiled = lowered.compile(compiler_options=options or None)
  except jax.errors.JaxRuntimeError as e:
    # libtpu refuses a program that does not fit the chip's HBM.
    if 'RESOURCE_EXHAUSTED' not in str(e):
      raise
    compiled, error = None, str(e).strip().splitlines()[0][:300]
  t2, cpu2 = time.perf_counter(), time.process_time()
  result = {
      'target': target, 'device': str(devices[0].device_kind),
      'remat': remat, 'size': args.size, 'width': args.width,
      'batch': args.batch, 'domains': args.domains,
      'conv_impl': args.conv_impl, 'dtype': args.dtype,
      'unroll_domains': args.unroll_domains, 'step': args.step,
      'compiler_options': options,
      'lower_s': round(t1 - t0, 2), 'compile_s': round(t2 - t1, 2),
      # CPU seconds of all the process's threads: less sensitive to other
      # jobs on the machine than wall time.
      'compile_cpu_s': round(cpu2 - cpu1, 2),
      'stablehlo_lines': len(lowered.as_text().splitlines()),
  }
  if error:
    result.update(error=error, load_1min=[round(load_before, 2),
                                          round(os.getloadavg()[0], 2)])
    return result
  try:
    result['compiled_hlo_lines'] = len(compiled.as_text().splitlines())
  except Exception:  # pylint: disable=broad-except  # Not every backend.
    pass
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  # Not every backend.
    cost = None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  # libtpu's estimate of the step's run time (loop bodies counted once):
  # what a lower optimisation effort costs at run time.
  for key in ('optimal_seconds', 'flops', 'bytes accessed'):
    if cost and key in cost:
      result[key.replace(' ', '_')] = float(cost[key])
  mem = compiled.memory_analysis()
  if mem is not None:
    result['peak_gb'] = round(
        (mem.argument_size_in_bytes + mem.output_size_in_bytes
         + mem.temp_size_in_bytes - mem.alias_size_in_bytes) / 1e9, 3)
  result['load_1min'] = [round(load_before, 2),
                         round(os.getloadavg()[0], 2)]
  return result


def context() -> dict[str, Any]:
  """What every line records about the code, the libraries and the machine."""
  versions = deviceless.installed_versions()
  return {
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'commit': provenance.git_commit(),
      'jax': versions['jax'], 'jax_cuda12_plugin':
          versions['jax-cuda12-plugin'], 'libtpu': versions['libtpu'],
      'machine': f'{platform.machine()}, {os.cpu_count()} CPUs, '
                 f'{platform.platform()}',
      'libtpu_init_args': os.environ.get('LIBTPU_INIT_ARGS', ''),
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
  }


def table(results: list[dict[str, Any]]) -> str:
  """A markdown table: one row per policy, compile seconds per target."""
  order = {name: i for i, name in enumerate(TARGETS + layers.REMAT_POLICIES)}
  targets = sorted(dict.fromkeys(r['target'] for r in results),
                   key=lambda t: order.get(t, len(order)))
  rows = ['| remat | ' + ' | '.join(f'{t}: compile (CPU s), peak'
                                    for t in targets) + ' | lower |',
          '|---|' + '---|' * (len(targets) + 1)]
  for remat in sorted(dict.fromkeys(r['remat'] for r in results),
                      key=lambda p: order.get(p, len(order))):
    cells, lower = [], ''
    for t in targets:
      found = [r for r in results if r['target'] == t and r['remat'] == remat]
      if not found:
        cells.append('')
        continue
      r = found[-1]
      if 'error' in r:
        cells.append(f"does not fit ({r['compile_s']:.0f} s)")
        continue
      cpu = f" ({r['compile_cpu_s']:.0f})" if 'compile_cpu_s' in r else ''
      peak = f", {r['peak_gb']:.2f} GB" if 'peak_gb' in r else ''
      cells.append(f"{r['compile_s']:.0f} s{cpu}{peak}")
      lower = f"{r['lower_s']:.1f} s"
    rows.append(f'| {remat} | ' + ' | '.join(cells) + f' | {lower} |')
  return '\n'.join(rows)


def is_paper_step(r: dict[str, Any]) -> bool:
  """Whether a recorded line is the paper step with launch.py's options."""
  config = bench_common.paper_config(size=256, batch=20)
  platform = 'cpu' if r['target'] == 'cpu' else deviceless.get_target(
      r['target']).platform
  return (r['size'] == 256 and r['width'] == 1.0 and r['batch'] == 20
          and r['domains'] == 3 and r['conv_impl'] == 'xla'
          and r['dtype'] == 'float32' and not r['unroll_domains']
          and r.get('step', 'launch') == 'launch'
          and r['compiler_options'] == compile_options.for_backend(
              config, platform))


def main(argv: list[str] | None = None) -> None:
  args = parse_args(argv)
  if args.table:
    with open(args.record) as f:
      print(table([r for r in map(json.loads, f) if is_paper_step(r)]))
    return
  options = compiler_options(args.compiler_option)
  targets = [t.strip() for t in args.targets.split(',') if t.strip()]
  policies = [p.strip() for p in args.remat.split(',') if p.strip()]
  for p in policies:
    if p not in layers.REMAT_POLICIES:
      raise SystemExit(f'--remat: unknown policy {p!r}; known: '
                       f'{", ".join(layers.REMAT_POLICIES)}')
  for t in targets:
    if t != 'cpu':
      deviceless.check_backend(deviceless.get_target(t))
  shared = context()
  results = []
  for target in targets:
    for remat in policies:
      result = measure(target, remat, args, options)
      print(json.dumps(result), flush=True)
      results.append(result)
      if not args.no_record:
        with open(args.record, 'a') as f:
          f.write(json.dumps({**shared, **result}) + '\n')
  print(table(results))


if __name__ == '__main__':
  main()
