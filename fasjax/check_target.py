r"""Does launch.py's train step fit a GPU or TPU this machine does not have?

  python -m fasjax.check_accelerator --target=h100 --json
  python -m fasjax.check_accelerator --target=v5e,l4 --devices=4 --remat=all
  python -m fasjax.check_accelerator --target=a100-40gb \
      --config=configs/ocm_to_i.py --config.model.dtype=bfloat16

For each config and target it compiles, without executing, the exact step
`launch.py` runs (`model_setup.build_networks`, `sharding.jit_train_step`:
the shard_map step over a 1-D mesh of the target's devices, a replicated
state and a batch split along its per-domain axis) with the target's own
compiler (XLA:GPU through the CUDA 12 plugin, or libtpu; see
`fasjax.deviceless`). Inputs are ShapeDtypeStructs with NamedShardings;
'auto' convolutions resolve to the native ones on GPUs and TPUs, as in a
real run. It reports: device, device count and topology, compile time, XLA's
peak memory per device (`memory_analysis()`: arguments + outputs +
temporaries - aliased), the device's memory and what JAX lets a step use of
it, whether the step fits and with what headroom, FLOPs per step (XLA's
count of the un-optimised loop-free twin, remat recomputation included; see
`check_accelerator.step_gflop`) and the step time those FLOPs and the
state's bytes imply at the target's published peak: a lower bound, never a
prediction. `--remat=all` compiles every remat policy and marks the
cheapest (fewest FLOPs) that fits; a step that does not fit gets the advice
(remat policy, more devices, bfloat16, a smaller batch).

What a compile analysis leaves out: no autotuning runs without the device
(cuDNN convolution workspaces are not counted; a real GPU picks faster
algorithms that may need scratch memory), nor the allocator's fragmentation
and the runtime's own buffers. GPU memory use: JAX preallocates 75% of the
GPU by default and a step cannot use more (XLA_PYTHON_CLIENT_MEM_FRACTION
raises it), so 'fits' is judged against that fraction on GPUs and against
the whole HBM on TPUs.
"""

import contextlib
import json
import os
import pathlib
import sys
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from fasjax import check_accelerator as ca
from fasjax import compile_options
from fasjax import deviceless
from fasjax import model_setup
from fasjax import sharding
from fasjax.models import layers

GB = ca.GB
ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = 'configs/ocm_to_i.py'
# JAX's default share of a GPU's memory (XLA_PYTHON_CLIENT_MEM_FRACTION).
GPU_MEM_FRACTION = 0.75


def usable_fraction(target: deviceless.Target) -> float:
  """The share of the device's memory a JAX step may use."""
  if target.platform != 'gpu':
    return 1.0
  return float(os.environ.get('XLA_PYTHON_CLIENT_MEM_FRACTION',
                              GPU_MEM_FRACTION))


# ----------------------------------------------------------------------------
# Configs as launch.py reads them.


def load_launch_config(config_args: Sequence[str]):
  """(label, config) from launch.py's --config=FILE[:ARGS] --config.F=V flags.

  Parsed by ml_collections' config flag, as launch.py does; with only
  overrides the file is the paper config's (configs/ocm_to_i.py).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
  args = list(config_args)
  if not any(a.startswith('--config=') for a in args):
    args.insert(0, f'--config={ROOT / DEFAULT_CONFIG}')
  file_arg = [a for a in args if a.startswith('--config=')][-1]
  path = file_arg.split('=', 1)[1]
  filename = path.split(':')[0]
  if not os.path.isfile(filename) and os.path.isfile(ROOT / filename):
    path = str(ROOT / path)
    args = [a if a != file_arg else f'--config={path}' for a in args]
  if not os.path.isfile(path.split(':')[0]):
    raise ca.CheckError(f'--config: no file {filename} (configs/<protocol>'
                        '.py, from the repository root or as a path)')
  fv = flags.FlagValues()
  argv = ['check_accelerator'] + args
  # sys_argv: the overrides to define are these, not the process's argv.
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=fv,
                                  lock_config=True, sys_argv=argv)
  try:
    fv(argv)
  except Exception as e:  # pylint: disable=broad-except  # absl's many kinds.
    raise ca.CheckError(f'--config: {str(e).strip().splitlines()[-1]}') from e
  label = file_arg.split('=', 1)[1]
  return label, fv.config


# ----------------------------------------------------------------------------
# Compiling.


def abstract_inputs(nets, tx, config, mesh) -> tuple[Any, dict[str, Any]]:
  """(state, batch) ShapeDtypeStructs placed as launch.py places the arrays."""
  size = config.model.image_size
  rep = sharding.replicated(mesh)
  state = jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep),
      model_setup.abstract_state(nets, tx, size))
  d, b = len(config.data.sources), 2 * config.data.per_class_batch
  shapes = {'image': ((d, b, size, size, 6), jnp.float32),
            'depth': ((d, b, size // 8, size // 8), jnp.float32),
            'parsing': ((d, b, size, size), jnp.int32),
            'label': ((d, b), jnp.int32)}
  split = sharding.train_batch_sharding(mesh)
  batch = {k: jax.ShapeDtypeStruct(s, t, sharding=split)
           for k, (s, t) in shapes.items()}
  return state, batch


def compile_step(config, target: deviceless.Target, devices: int,
                 compiler_options: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
  """Compiles launch.py's step for `devices` devices of `target`; its memory.

  Returns the compile time and XLA's memory analysis per device, in bytes.
  `compiler_options` go to `Lowered.compile`; None: the options launch.py
  compiles its step with on the target's platform
  (compile_options.for_backend: on TPUs the lower
  exec_time_optimization_effort, which makes libtpu about 10x faster and
  its buffer assignment somewhat larger), so the check measures the step a
  run will compile.
  """
  if compiler_options is None:
    compiler_options = compile_options.for_backend(config, target.platform)
  key = (config.to_json_best_effort(sort_keys=True), target.name, devices,
         json.dumps(compiler_options, sort_keys=True))
  if key not in _COMPILED:
    found = deviceless.target_devices(target.name, devices)
    _COMPILED[key] = compile_on(config, list(found), target.platform,
                                compiler_options)
  return dict(_COMPILED[key])


# (config, target name, devices, options) -> compile_step's result: a
# process that asks twice (the tests and the command) compiles once.
_COMPILED: dict[tuple[str, str, int, str], dict[str, Any]] = {}


@contextlib.contextmanager
def _persistent_cache(enabled: bool):
  """JAX's persistent compilation cache on or off for one compile.

  A compile-only (deviceless) executable cannot be loaded back from the
  cache (jax 0.10.2: "PjRtCompiler must be constructed with a Client", a
  warning per compile), so writing it there only costs time and disk. JAX
  decides once per process whether it uses the cache, so the switch resets
  that decision on the way in and out.
  """
  from jax.experimental.compilation_cache import compilation_cache as cc  # pylint: disable=g-import-not-at-top
  saved = jax.config.jax_enable_compilation_cache
  if enabled or not saved:
    yield
    return
  jax.config.update('jax_enable_compilation_cache', False)
  cc.reset_cache()
  try:
    yield
  finally:
    jax.config.update('jax_enable_compilation_cache', saved)
    cc.reset_cache()


def compile_on(config, found: Sequence[Any], platform: str,
               compiler_options: dict[str, Any] | None = None
               ) -> dict[str, Any]:
  """Compiles launch.py's step on a mesh of `found` devices; its memory.

  `platform` ('cpu', 'gpu' or 'tpu') resolves conv_impl='auto' as a run on
  it would.
  """
  mesh = sharding.make_mesh(list(found))
  nets = model_setup.build_networks(config, backend=platform)
  tx = model_setup.build_optimizer(config)
  state, batch = abstract_inputs(nets, tx, config, mesh)
  step = sharding.jit_train_step(nets, tx, mesh, donate=True)
  t0 = time.perf_counter()
  with _persistent_cache(enabled=platform == 'cpu'):
    compiled = step.lower(state, batch).compile(compiler_options)
  out: dict[str, Any] = {'compile_s': time.perf_counter() - t0,
                         'device_kind': found[0].device_kind,
                         'conv_impl': nets.net.conv_impl}
  mem = compiled.memory_analysis()
  args, outs = mem.argument_size_in_bytes, mem.output_size_in_bytes
  temp, alias = mem.temp_size_in_bytes, mem.alias_size_in_bytes
  out.update(
      peak_bytes=args + outs + temp - alias, argument_bytes=args,
      output_bytes=outs, temp_bytes=temp, alias_bytes=alias,
      generated_code_bytes=mem.generated_code_size_in_bytes,
      state_bytes=sum(x.size * x.dtype.itemsize
                      for x in jax.tree.leaves(state)),
      params_bytes=sum(x.size * x.dtype.itemsize
                       for x in jax.tree.leaves(state.params)))
  return out


# ----------------------------------------------------------------------------
# Judging one compiled step.


def step_bytes_floor(compiled: dict[str, Any]) -> int:
  """Bytes a step must move at least, per device: read its inputs, write its outputs."""
  return compiled['argument_bytes'] + compiled['output_bytes']


def lower_bound_s(gflop: float | None, compiled: dict[str, Any],
                  target: deviceless.Target, devices: int,
                  dtype: str) -> float | None:
  """The step time the FLOPs and bytes imply at the target's peak (a floor)."""
  if gflop is None:
    return None
  peak = target.peak_flops_per_s.get(dtype,
                                     target.peak_flops_per_s['bfloat16'])
  compute = gflop * 1e9 / (devices * peak)
  memory = step_bytes_floor(compiled) / target.hbm_bytes_per_s
  return max(compute, memory)


def advice(config, target: deviceless.Target, devices: int,
           peak_gb: float, usable_gb: float) -> str:
  """What to change when the step does not fit the target."""
  remat = config.model.get('remat', 'none')
  others = [p for p in layers.REMAT_POLICIES if p != remat]
  per_domain = 2 * config.data.per_class_batch
  more = [n for n in target.device_counts()
          if n > devices and per_domain % n == 0]
  more_text = (f'more devices (--devices={more[0]}; the per-domain batch of '
               f'{per_domain} splits over {", ".join(map(str, more))})'
               if more else
               f'more devices (none of {target.name}\'s '
               f'{", ".join(map(str, target.device_counts()))} divides the '
               f'per-domain batch of {per_domain} beyond {devices})')
  dtype = ('' if config.model.dtype == 'bfloat16' else
           'bfloat16 activations (--config.model.dtype=bfloat16); ')
  return (f'does not fit: {peak_gb:.2f} GB per device needed, '
          f'{usable_gb:.2f} GB usable on {target.name}, with remat policy '
          f'{remat!r} and dtype {config.model.dtype}. Options: another remat '
          f'policy ({", ".join(others)}; domains keeps least: '
          '--config.model.remat=NAME, or --remat=all here to compare them); '
          f'{more_text}; {dtype}'
          'or a smaller batch (--config.data.per_class_batch).')


def judge(config, target: deviceless.Target, devices: int,
          compiled: dict[str, Any], gflop: float | None) -> dict[str, Any]:
  """The reported figures of one compiled step on one target."""
  usable = target.memory_bytes * usable_fraction(target)
  peak = compiled['peak_bytes']
  out: dict[str, Any] = {
      'remat': config.model.get('remat', 'none'),
      'compile_s': round(compiled['compile_s'], 2),
      'xla_peak_memory_gb': round(peak / GB, 4),
      'xla_argument_gb': round(compiled['argument_bytes'] / GB, 4),
      'xla_output_gb': round(compiled['output_bytes'] / GB, 4),
      'xla_temp_gb': round(compiled['temp_bytes'] / GB, 4),
      'xla_alias_gb': round(compiled['alias_bytes'] / GB, 4),
      'state_gb': round(compiled['state_bytes'] / GB, 4),
      'device_memory_gb': round(target.memory_bytes / GB, 3),
      'usable_memory_gb': round(usable / GB, 3),
      'fits': bool(peak <= usable),
      'headroom_gb': round((usable - peak) / GB, 3),
  }
  if gflop is not None:
    out['step_gflop'] = round(gflop, 1)
    lb = lower_bound_s(gflop, compiled, target, devices, config.model.dtype)
    out['step_s_lower_bound'] = float(f'{lb:.4g}')
  if not out['fits']:
    out['message'] = advice(config, target, devices, peak / GB, usable / GB)
  return out


# ----------------------------------------------------------------------------
# The command.


def run_targets(configs: dict[str, Any], names: Sequence[str],
                devices: int | None, all_policies: bool,
                emit=None) -> list[dict[str, Any]]:
  """Checks every config on every target; one report per target.

  `emit(report)` is called as each target's report is complete (default:
  `print_report`).
  """
  emit = emit or print_report
  targets = [deviceless.get_target(n) for n in names]
  for name, config in configs.items():
    ca.check_config(name, config, devices or 1)
  for t in targets:
    n = devices or 1
    if n not in t.device_counts():
      raise ca.CheckError(
          f'--devices={n}: {t.name} is available with '
          f'{", ".join(map(str, t.device_counts()))} devices')
    deviceless.check_backend(t)
  n = devices or 1
  gflops: dict[tuple[str, str], float | None] = {}
  reports = []
  for t in targets:
    report: dict[str, Any] = {
        'target': t.name, 'description': t.description,
        'platform': t.platform, 'devices': n,
        'topology': deviceless.topology_name(t, n),
        'jax_version': jax.__version__,
        'compiler': ('XLA:GPU (jax-cuda12-plugin '
                     f'{deviceless.installed_versions()["jax-cuda12-plugin"]})'
                     if t.platform == 'gpu' else
                     f'libtpu {deviceless.installed_versions()["libtpu"]}'),
        'peak_flops_per_s': t.peak_flops_per_s,
        'hbm_bytes_per_s': t.hbm_bytes_per_s,
        'analysis': 'compiled, not run: no autotuning, cuDNN workspaces or '
                    'allocator overhead counted',
        'configs': {}}
    for name, config in configs.items():
      policies = (list(layers.REMAT_POLICIES) if all_policies
                  else [config.model.get('remat', 'none')])
      rows = {}
      for policy in policies:
        c = _with_remat(config, policy)
        compiled = compile_step(c, t, n)
        key = (name, policy)
        if key not in gflops:
          gflops[key] = _gflop(c, t)
        report['device_kind'] = compiled['device_kind']
        rows[policy] = judge(c, t, n, compiled, gflops[key])
        rows[policy]['conv_impl'] = compiled['conv_impl']
      entry: dict[str, Any] = {
          'image_size': config.model.image_size, 'width': config.model.width,
          'domains': len(config.data.sources),
          'per_class_batch': config.data.per_class_batch,
          'dtype': config.model.dtype}
      if all_policies:
        fitting = [p for p in policies if rows[p]['fits']]
        cheapest = min(fitting, key=lambda p: rows[p].get('step_gflop') or 0,
                       default=None)
        entry['policies'] = rows
        entry['cheapest_fitting'] = cheapest
        if cheapest is None:
          entry['message'] = advice(config, t, n, min(
              r['xla_peak_memory_gb'] for r in rows.values()),
                                    rows[policies[0]]['usable_memory_gb'])
      else:
        entry.update(rows[policies[0]])
      report['configs'][name] = entry
    emit(report)
    reports.append(report)
  return reports


def _with_remat(config, policy: str):
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.model.remat = policy
  return c


def _gflop(config, target: deviceless.Target) -> float | None:
  """FLOPs of one global step (XLA's count of the loop-free twin, on the CPU)."""
  nets = model_setup.build_networks(config, backend=target.platform)
  tx = model_setup.build_optimizer(config)
  size = config.model.image_size
  batch = ca.synthetic_batch(len(config.data.sources),
                             2 * config.data.per_class_batch, size)
  return ca.step_gflop(nets, tx, batch, size)


def print_report(report: dict[str, Any]) -> None:
  """Human-readable lines for one target."""
  print(f"{report['target']}: {report['devices']} x "
        f"{report.get('device_kind', report['description'])} "
        f"(topology {report['topology']}; {report['compiler']}, jax "
        f"{report['jax_version']}); {report['analysis']}")
  for name, e in report['configs'].items():
    print(f"  {name}: {e['image_size']}x{e['image_size']}, width "
          f"{e['width']}, {e['domains']} domains x {2 * e['per_class_batch']}"
          f" images, {e['dtype']}")
    rows = e.get('policies') or {e['remat']: e}
    for policy, r in rows.items():
      mark = ('  <- cheapest that fits' if e.get('cheapest_fitting') == policy
              else '')
      fit = (f"fits, {r['headroom_gb']:.2f} GB headroom" if r['fits']
             else 'does not fit')
      lb = (f", {r['step_gflop']} GFLOP/step, >= {r['step_s_lower_bound']:.4f}"
            ' s/step at peak (lower bound)' if 'step_gflop' in r else '')
      print(f"    remat {policy}: compile {r['compile_s']:.1f} s, XLA peak "
            f"{r['xla_peak_memory_gb']:.2f} GB per device of "
            f"{r['usable_memory_gb']:.2f} GB usable "
            f"({r['device_memory_gb']:.2f} GB device): {fit}{lb}{mark}")
      if not r['fits'] and 'policies' not in e:
        print('    ' + r['message'])
    if 'message' in e and 'policies' in e:
      print('    no policy fits: ' + e['message'])
