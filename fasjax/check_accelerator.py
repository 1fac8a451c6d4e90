r"""Does the train step run on this machine's accelerator, and how fast?

  python -m fasjax.check_accelerator                  # paper + synthetic config
  python -m fasjax.check_accelerator --json --torch   # one JSON line, + PyTorch
  python -m fasjax.check_accelerator --size=64 --width=0.5 --batch=4   # a CPU
  python -m fasjax.check_accelerator --target=h100,v5e --json   # no GPU/TPU here

With --target=NAME[,NAME...] it compiles, without running, for GPUs and TPUs
this machine does not have, and reports each target's memory, whether the
step fits, and a lower bound on its step time (`fasjax.check_target`;
`--remat=all` compares every remat policy). Both ways accept launch.py's
--config=configs/X.py[:ARGS] and --config.FIELD=VALUE instead of --configs.

On whatever backend JAX sees (GPU, TPU or CPU) and for each chosen config of
`configs/ocm_to_i.py` ('paper': 256x256x6, width 1.0, 3 domains x (10 live +
10 spoof); 'synthetic': the 64x64 demo) it builds the networks, optimizer and
train step exactly as `launch.py` does (`model_setup.build_networks`,
`sharding.jit_train_step` over a mesh of the devices) and reports: device kind
and count, compile time, step time (median of `--steps` after one warm-up
step), images/s (domains x 2 x per_class_batch per step), peak device memory
(`device.memory_stats()['peak_bytes_in_use']` where the backend keeps it,
else XLA's memory analysis of the compiled step: arguments + outputs +
temporaries - aliased), and with several devices the scaling of the step
from one device to all of them at the same global batch. `--torch` also
times the PyTorch port (`fasjax.torch_port`) on the same device (CUDA when
torch sees one, else the CPU).

Out of memory (compiling or in the first step) is reported for that config
with XLA's estimated peak, the remat policy in use and what to change, and the
check goes on with the next config. A batch that does not divide over the
devices, or a remat policy that does not exist, stops the check with one line
before anything compiles.

It imports only jax, flax, optax, numpy and ml_collections (and torch with
`--torch`), so it runs on a bare accelerator image: no TensorFlow, tfds or clu.

Caveat on `peak_memory_gb` from the device: the allocator's peak is kept per
process and cannot be reset, so configs run smallest first; where an earlier
step already set a higher peak, `peak_memory_upper_bound` is true and XLA's
estimate (`xla_peak_memory_gb`) is the better figure for that config.
"""

import argparse
import dataclasses
import importlib
import json
import os
import pathlib
import statistics
import sys
import time
from typing import Any, Sequence

import jax
import numpy as np

from fasjax import meta
from fasjax import model_setup
from fasjax import sharding
from fasjax.models import layers

CONFIG_ARGS = {'paper': None, 'synthetic': 'synthetic'}
NUM_CLASSES = 13
GB = 1e9  # decimal gigabytes, as in docs/accelerators.md and XLA estimates
_OOM_MARKERS = ('RESOURCE_EXHAUSTED', 'out of memory', 'Out of memory',
                'OutOfMemory', 'Resource exhausted')


class CheckError(ValueError):
  """A setting the check refuses before compiling; the message says why."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  """Command-line options."""
  p = argparse.ArgumentParser(
      prog='python -m fasjax.check_accelerator',
      description=__doc__.split('\n', 1)[0], allow_abbrev=False)
  p.add_argument('--configs', default='paper,synthetic',
                 help='comma-separated: paper, synthetic')
  p.add_argument('--steps', type=int, default=10,
                 help='timed steps after one warm-up step (median reported)')
  p.add_argument('--size', type=int, help='override model.image_size')
  p.add_argument('--width', type=float, help='override model.width')
  p.add_argument('--batch', type=int,
                 help='override data.per_class_batch (live and spoof images '
                 'per domain and step)')
  p.add_argument('--dtype', choices=('float32', 'bfloat16'),
                 help='override model.dtype (activations)')
  p.add_argument('--remat', help="override model.remat (a policy name; "
                 "'all' with --target: every policy)")
  p.add_argument('--conv-impl', dest='conv_impl',
                 help="override model.conv_impl ('auto', 'xla', 'matmul')")
  p.add_argument('--devices', type=int,
                 help='use the first N devices (default: all visible)')
  p.add_argument('--torch', action='store_true',
                 help='also time the PyTorch port on the same device')
  p.add_argument('--json', action='store_true',
                 help='print one machine-readable JSON line only (with '
                 '--target: one per target)')
  p.add_argument('--target', help='compile, without running, for these '
                 'GPUs/TPUs (comma-separated names, e.g. h100,v5e; '
                 'fasjax/targets/targets.json lists them)')
  p.add_argument('--config', action='append', default=[],
                 metavar='configs/X.py[:ARGS]',
                 help="launch.py's config file (instead of --configs); "
                 'its fields are overridden by --config.FIELD=VALUE')
  args, rest = p.parse_known_args(argv)
  overrides = [a for a in rest if a.startswith('--config.')]
  unknown = [a for a in rest if a not in overrides]
  args.config_flags = [f'--config={c}' for c in args.config] + overrides
  if unknown:
    p.error(f'unrecognized arguments: {" ".join(unknown)}')
  if args.steps < 1:
    p.error('--steps must be >= 1')
  return args


# ----------------------------------------------------------------------------
# Configs and inputs.


def load_config(name: str, args: argparse.Namespace):
  """The named config of configs/ocm_to_i.py with the command's overrides."""
  if name not in CONFIG_ARGS:
    raise CheckError(f'--configs: unknown config {name!r}; choose from '
                     f'{", ".join(CONFIG_ARGS)}')
  try:
    ocm_to_i = importlib.import_module('configs.ocm_to_i')
  except ImportError:
    # Not run from the checkout's root: the configs sit next to the package.
    root = str(pathlib.Path(__file__).resolve().parents[1])
    if root not in sys.path:
      sys.path.insert(0, root)
    ocm_to_i = importlib.import_module('configs.ocm_to_i')
  return apply_shortcuts(ocm_to_i.get_config(CONFIG_ARGS[name]), args)


def apply_shortcuts(config, args: argparse.Namespace):
  """The check's --size/--width/--batch/--dtype/--remat/--conv-impl on top."""
  overrides = (('model', 'image_size', args.size),
               ('model', 'width', args.width),
               ('data', 'per_class_batch', args.batch),
               ('model', 'dtype', args.dtype),
               ('model', 'remat', None if args.remat == 'all' else args.remat),
               ('model', 'conv_impl', args.conv_impl))
  with config.unlocked():
    for section, field, value in overrides:
      if value is not None:
        config[section][field] = value
  return config


def remat_policies() -> list[str]:
  """The names `model.remat` takes."""
  return list(layers.REMAT_POLICIES)


def check_config(name: str, config, devices: int) -> None:
  """Raises CheckError for settings the step cannot compile with."""
  size = config.model.image_size
  if not (size >= 32 and size % 32 == 0):
    raise CheckError(f'{name}: config.model.image_size must be a multiple of '
                     f'32 (>= 32), got {size}; change --size')
  impls = getattr(layers, 'CONV_IMPLS_AND_AUTO', ('auto',) + layers.CONV_IMPLS)
  if config.model.conv_impl not in impls:
    raise CheckError(f'{name}: config.model.conv_impl '
                     f'{config.model.conv_impl!r} is not a conv path; use '
                     f'--conv-impl with one of {", ".join(impls)}')
  remat = config.model.get('remat', 'none')
  policies = remat_policies()
  if remat not in policies:
    raise CheckError(f'{name}: config.model.remat {remat!r} is not a remat '
                     f'policy; use --remat with one of {", ".join(policies)}')
  pcb = config.data.per_class_batch
  if pcb < 2:
    raise CheckError(f'{name}: config.data.per_class_batch must be >= 2 (a '
                     f'triplet needs two live images per domain), got {pcb}; '
                     'change --batch')
  if (2 * pcb) % devices:
    fits = [d for d in range(devices, 0, -1) if (2 * pcb) % d == 0][0]
    batches = [b for b in range(pcb, pcb + devices + 1)
               if (2 * b) % devices == 0]
    raise CheckError(
        f'{name}: the per-domain batch 2 x config.data.per_class_batch = '
        f'{2 * pcb} does not divide over {devices} devices; use '
        f'--batch={batches[0]} (or any per_class_batch whose double is a '
        f'multiple of {devices}) or --devices={fits}')


def synthetic_batch(domains: int, batch: int, size: int,
                    seed: int = 0) -> dict[str, np.ndarray]:
  """A [D, B, ...] batch of the train stream's shapes (live first).

  `batch` is the images per domain (2 x per_class_batch), half live.
  """
  rng = np.random.default_rng(seed)
  half = batch // 2
  label = np.tile(np.r_[np.ones(half), np.zeros(batch - half)], (domains, 1))
  d = size // 8
  return {
      'image': rng.random((domains, batch, size, size, 6), np.float32),
      'depth': (rng.random((domains, batch, d, d), np.float32)
                * label[..., None, None]).astype(np.float32),
      'parsing': rng.integers(0, NUM_CLASSES, (domains, batch, size, size),
                              dtype=np.int32),
      'label': label.astype(np.int32),
  }


# ----------------------------------------------------------------------------
# Measuring.


def is_out_of_memory(exc: BaseException) -> bool:
  """Whether an XLA/JAX (or torch) error is an allocation failure."""
  text = f'{type(exc).__name__}: {exc}'
  return any(m in text for m in _OOM_MARKERS)


def xla_memory(compiled) -> dict[str, float]:
  """XLA's buffer assignment of a compiled step, per device, in GB."""
  try:
    mem = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except  # Not on every backend.
    return {}
  if isinstance(mem, (list, tuple)):
    mem = mem[0] if mem else None
  if mem is None:
    return {}
  args, outs = mem.argument_size_in_bytes, mem.output_size_in_bytes
  temp, alias = mem.temp_size_in_bytes, mem.alias_size_in_bytes
  return {'xla_peak_memory_gb': (args + outs + temp - alias) / GB,
          'xla_temp_memory_gb': temp / GB}


def lowered_gflop(lowered) -> float | None:
  """XLA's FLOP count of the un-optimised step (None where unavailable)."""
  try:
    cost = lowered.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost or 'flops' not in cost:
    return None
  return float(cost['flops']) / 1e9


def has_counted_loops(nets: meta.Networks) -> bool:
  """Whether the step has loops that XLA's cost analysis counts once.

  The matmul conv path's nine-tap `lax.map`, and remat='domains' (the
  domains' forward passes in a `lax.scan`).
  """
  domains_in_turn = getattr(layers, 'remat_domains_in_turn', lambda _: False)
  return (nets.net.conv_impl != 'xla'
          or domains_in_turn(getattr(nets.hp, 'remat', 'none')))


def loop_free(nets: meta.Networks) -> meta.Networks:
  """`nets` computing the same arithmetic without such loops (FLOP counts).

  XLA convs instead of the tap loop, the domain loop unrolled; the remat
  policy, and so its recomputation, is unchanged.
  """
  hp = nets.hp
  if 'unroll_domains' in {f.name for f in dataclasses.fields(hp)}:
    hp = dataclasses.replace(hp, unroll_domains=True)
  return meta.Networks(net=nets.net.clone(conv_impl='xla'),
                       meta=nets.meta.clone(conv_impl='xla'), hp=hp)


def step_gflop(nets: meta.Networks, tx, batch: dict[str, np.ndarray],
               size: int) -> float | None:
  """XLA's FLOP count of one step, recomputation included, not compiling.

  The un-optimised HLO of the launch path's one-device step for
  `loop_free(nets)`.
  """
  mesh = sharding.make_mesh(jax.devices()[:1])
  twin = loop_free(nets)
  step = sharding.jit_train_step(twin, tx, mesh, donate=False)
  return lowered_gflop(step.lower(model_setup.abstract_state(twin, tx, size),
                                  batch))


def device_memory(devices: Sequence[jax.Device]) -> dict[str, float] | None:
  """The allocator's peak and limit over `devices` (None if not kept)."""
  peaks, limits = [], []
  for d in devices:
    try:
      stats = d.memory_stats()
    except Exception:  # pylint: disable=broad-except
      stats = None
    if not stats or 'peak_bytes_in_use' not in stats:
      return None
    peaks.append(stats['peak_bytes_in_use'])
    if 'bytes_limit' in stats:
      limits.append(stats['bytes_limit'])
  out = {'peak': max(peaks) / GB}
  if limits:
    out['limit'] = min(limits) / GB
  return out


def measure_step(nets, tx, host_state, batch: dict[str, np.ndarray],
                 devices: Sequence[jax.Device], steps: int) -> dict[str, Any]:
  """Compiles and times the launch.py train step on a mesh of `devices`.

  Returns compile_s, step_s, times_s, loss and memory figures; or, when the
  device runs out of memory, 'error' and 'stage' with XLA's estimate where
  the compile got that far and the allocator's peak where it keeps one.
  """
  mesh = sharding.make_mesh(list(devices))
  out: dict[str, Any] = {'devices': len(devices)}
  stats_before = device_memory(devices)
  stage = 'compile'
  try:
    state = sharding.replicate(host_state, mesh)
    device_batch = sharding.global_train_batch(batch, mesh)
    step = sharding.jit_train_step(nets, tx, mesh, donate=True)
    t0 = time.perf_counter()
    lowered = step.lower(state, device_batch)
    compiled = lowered.compile()
    out['compile_s'] = time.perf_counter() - t0
    out.update(xla_memory(compiled))
    stage = 'first step'
    state, metrics = compiled(state, device_batch)
    jax.block_until_ready(metrics)
    stage = 'timed steps'
    times = []
    for _ in range(steps):
      t0 = time.perf_counter()
      state, metrics = compiled(state, device_batch)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - t0)
  except Exception as e:  # pylint: disable=broad-except
    if not is_out_of_memory(e):
      raise
    out.update(error='out_of_memory', stage=stage,
               detail=str(e).strip().splitlines()[0][:300])
    stats = device_memory(devices)
    if stats:
      out['device_peak_memory_gb'] = stats['peak']
      if 'limit' in stats:
        out['device_memory_limit_gb'] = stats['limit']
    return out
  out['step_s'] = statistics.median(times)
  out['times_s'] = times
  out['loss'] = float(jax.device_get(metrics['loss']))
  stats = device_memory(devices)
  if stats is not None:
    out['device_peak_memory_gb'] = stats['peak']
    # The allocator's peak is per process: an earlier, bigger step hides
    # this one's.
    out['peak_memory_upper_bound'] = bool(
        stats_before and stats['peak'] <= stats_before['peak'])
    if 'limit' in stats:
      out['device_memory_limit_gb'] = stats['limit']
  del state, metrics, compiled
  return out


def measure_torch(config, batch: dict[str, np.ndarray],
                  steps: int) -> dict[str, Any]:
  """The PyTorch port's step on CUDA when torch sees it, else the CPU."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return {'torch_error': 'torch is not installed'}
  from fasjax import torch_port  # pylint: disable=g-import-not-at-top
  device = torch_port.default_device()
  # The port computes in float32, whatever --dtype says.
  out: dict[str, Any] = {'torch_version': torch.__version__,
                         'torch_device': device, 'torch_dtype': 'float32'}
  cuda = device == 'cuda'
  if cuda:
    out['torch_device_name'] = torch.cuda.get_device_name()
    torch.backends.cudnn.benchmark = True  # As XLA autotunes its convs.
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
  else:
    out['torch_threads'] = torch.get_num_threads()
  try:
    step = torch_port.make_torch_step(config.model.width, device)
    tb = torch_port.torch_batch(batch, device)
    step(tb)  # Warm-up (allocation, cuDNN autotuning).
    times = []
    for _ in range(steps):
      t0 = time.perf_counter()
      step(tb)  # Returns a float: waits for the device.
      times.append(time.perf_counter() - t0)
  except Exception as e:  # pylint: disable=broad-except
    if not is_out_of_memory(e):
      raise
    first_line = str(e).strip().splitlines()[0][:200]
    out['torch_error'] = f'out_of_memory: {first_line}'
    return out
  finally:
    step = tb = None
    if cuda:
      torch.cuda.empty_cache()
  out['torch_step_s'] = statistics.median(times)
  if cuda:
    out['torch_peak_memory_gb'] = torch.cuda.max_memory_allocated() / GB
  return out


def oom_advice(name: str, config, result: dict[str, Any],
               devices: int) -> str:
  """What to change when a config's step does not fit."""
  remat = config.model.get('remat', 'none')
  others = [p for p in remat_policies() if p != remat]
  per_domain = 2 * config.data.per_class_batch
  splits = [d for d in range(2, per_domain + 1) if per_domain % d == 0]
  estimate = result.get('xla_peak_memory_gb')
  est = (f"XLA's estimate of the step's peak is {estimate:.1f} GB per device"
         if estimate is not None else "XLA's estimate is not available (the "
         'compile itself ran out of memory)')
  limit = result.get('device_memory_limit_gb')
  lim = f' of {limit:.1f} GB usable' if limit is not None else ''
  peak = result.get('device_peak_memory_gb')
  if peak is not None:
    lim += f' (allocator peak {peak:.1f} GB)'
  return (
      f'{name}: out of memory during the {result.get("stage")} on '
      f'{devices} device(s){lim}; {est} with remat policy {remat!r} and '
      f'dtype {config.model.dtype}. Options: a remat policy that keeps less '
      f'({", ".join(others)}: --remat=NAME here, --config.model.remat=NAME '
      'for launch.py); more devices (the per-domain batch of '
      f'{per_domain} splits over {", ".join(map(str, splits))} devices); '
      'bfloat16 activations (--dtype=bfloat16, --config.model.dtype=bfloat16);'
      ' or a smaller batch (--batch, --config.data.per_class_batch).')


def measure_config(name: str, config, devices: Sequence[jax.Device],
                   steps: int, with_torch: bool) -> dict[str, Any]:
  """All figures of one config (see the module docstring)."""
  size, width = config.model.image_size, config.model.width
  domains = len(config.data.sources)
  pcb = config.data.per_class_batch
  images = domains * 2 * pcb
  backend = devices[0].platform
  conv_impl, why = model_setup.resolve_conv_impl(config.model.conv_impl,
                                                 width, backend)
  result: dict[str, Any] = {
      'image_size': size, 'width': width, 'domains': domains,
      'per_class_batch': pcb, 'images_per_step': images,
      'dtype': config.model.dtype, 'conv_impl': conv_impl,
      'conv_impl_why': why, 'remat': config.model.get('remat', 'none'),
  }
  nets = model_setup.build_networks(config, backend=backend)
  tx = model_setup.build_optimizer(config)
  host_state = jax.device_get(
      model_setup.jit_init_state(nets, tx, size, config.seed))
  batch = synthetic_batch(domains, 2 * pcb, size)

  main = measure_step(nets, tx, host_state, batch, devices, steps)
  result.update(_step_figures(main, images))
  if 'error' in main:
    result['message'] = oom_advice(name, config, main, len(devices))

  if len(devices) > 1 and 'error' not in main:
    one = measure_step(nets, tx, host_state, batch, devices[:1], steps)
    if 'error' in one:
      result['one_device'] = {'error': one['error'],
                              'xla_peak_memory_gb': _r(
                                  one.get('xla_peak_memory_gb'))}
    else:
      result['one_device'] = _step_figures(one, images)
      result['scaling'] = _r(one['step_s'] / main['step_s'], 3)
      result['scaling_efficiency'] = _r(
          one['step_s'] / main['step_s'] / len(devices), 3)
  gflop = step_gflop(nets, tx, batch, size)
  if gflop is not None:
    result['step_gflop'] = _r(gflop, 1)
    result['step_gflop_from'] = (
        'XLA cost analysis of the un-optimised one-device step with XLA convs '
        'and the domain loop unrolled (remat recomputation included)')
    step_1 = (result.get('one_device', {}).get('step_s')
              if len(devices) > 1 else result.get('step_s'))
    if step_1:
      result['tflops_per_s_one_device'] = _r(gflop / step_1 / 1e3, 4)

  if with_torch:
    result.update(_rounded(measure_torch(config, batch, steps)))
    if 'torch_step_s' in result and 'step_s' in result:
      result['jax_over_torch'] = _r(result['step_s']
                                    / result['torch_step_s'], 3)
  return result


def _r(x: float | None, digits: int = 4) -> float | None:
  return None if x is None else round(float(x), digits)


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
  return {k: (_r(v, 6) if isinstance(v, float) else v) for k, v in d.items()}


def _step_figures(m: dict[str, Any], images: int) -> dict[str, Any]:
  """The reported subset of `measure_step`'s output."""
  out: dict[str, Any] = {}
  for k in ('compile_s', 'xla_peak_memory_gb', 'xla_temp_memory_gb',
            'device_peak_memory_gb', 'device_memory_limit_gb',
            'peak_memory_upper_bound', 'error', 'stage', 'detail'):
    if k in m:
      out[k] = _r(m[k], 4) if isinstance(m[k], float) else m[k]
  if 'step_s' in m:
    out['step_s'] = _r(m['step_s'], 6)
    out['images_per_s'] = _r(images / m['step_s'], 3)
    out['times_s'] = [_r(t, 6) for t in m['times_s']]
    out['loss_finite'] = bool(np.isfinite(m['loss']))
  if 'device_peak_memory_gb' in m:
    out['peak_memory_gb'] = out['device_peak_memory_gb']
    out['peak_memory_source'] = 'device memory_stats peak_bytes_in_use'
  elif 'xla_peak_memory_gb' in m:
    out['peak_memory_gb'] = out['xla_peak_memory_gb']
    out['peak_memory_source'] = 'XLA memory_analysis'
  return out


def _activation_size(config) -> float:
  """Relative activation memory, to run the smallest config first."""
  return (config.model.image_size**2 * config.model.width
          * config.data.per_class_batch)


# ----------------------------------------------------------------------------


def chosen_configs(args: argparse.Namespace) -> dict[str, Any]:
  """The configs to check: launch.py's --config flags, else --configs."""
  if args.config_flags:
    from fasjax import check_target  # pylint: disable=g-import-not-at-top
    label, config = check_target.load_launch_config(args.config_flags)
    return {label: apply_shortcuts(config, args)}
  names = [n.strip() for n in args.configs.split(',') if n.strip()]
  if not names:
    raise CheckError('--configs: name at least one of paper, synthetic')
  return {n: load_config(n, args) for n in names}


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Checks every chosen config; raises CheckError before compiling."""
  if args.remat == 'all':
    raise CheckError('--remat=all compares the policies by compiling for a '
                     '--target; without one, name a policy: '
                     f'{", ".join(remat_policies())}')
  configs = chosen_configs(args)
  names = list(configs)
  all_devices = jax.devices()
  n = args.devices or len(all_devices)
  if not 1 <= n <= len(all_devices):
    raise CheckError(f'--devices={args.devices}: {len(all_devices)} devices '
                     'are visible')
  devices = all_devices[:n]
  for name, config in configs.items():
    check_config(name, config, n)
  from fasjax import deviceless  # pylint: disable=g-import-not-at-top
  warning = deviceless.cpu_fallback_warning(jax.default_backend(),
                                            os.environ.get('JAX_PLATFORMS'))
  if warning:  # A GPU/TPU plugin installed, but JAX found no device for it.
    print(warning, file=sys.stderr, flush=True)
  report: dict[str, Any] = {
      'backend': jax.default_backend(), 'device_kind': devices[0].device_kind,
      'devices': n, 'visible_devices': len(all_devices),
      'jax_version': jax.__version__, 'steps': args.steps,
      'configs': {},
  }
  if args.torch:
    report['jax_preallocate'] = os.environ.get(
        'XLA_PYTHON_CLIENT_PREALLOCATE', 'true')
  if not args.json:
    print(f"backend {report['backend']}: {n} x {report['device_kind']} "
          f"(jax {report['jax_version']}; {len(all_devices)} visible)")
  for name in sorted(names, key=lambda k: _activation_size(configs[k])):
    result = measure_config(name, configs[name], devices, args.steps,
                            args.torch)
    report['configs'][name] = result
    if not args.json:
      print_config(name, result, n)
  report['configs'] = {k: report['configs'][k] for k in names}
  return report


def print_config(name: str, r: dict[str, Any], devices: int) -> None:
  """Human-readable lines for one config."""
  print(f"{name}: {r['image_size']}x{r['image_size']}, width {r['width']}, "
        f"{r['domains']} domains x {2 * r['per_class_batch']} images, "
        f"{r['dtype']}, conv {r['conv_impl']} ({r['conv_impl_why']}), "
        f"remat {r['remat']}")
  if 'error' in r:
    print('  ' + r['message'])
    return
  mem = (f"peak memory {r['peak_memory_gb']:.2f} GB per device "
         f"({r['peak_memory_source']}"
         + (', an upper bound' if r.get('peak_memory_upper_bound') else '')
         + ')') if 'peak_memory_gb' in r else 'peak memory unknown'
  if 'xla_peak_memory_gb' in r and 'device_peak_memory_gb' in r:
    mem += f", XLA estimate {r['xla_peak_memory_gb']:.2f} GB"
  print(f"  {devices} device(s): compile {r['compile_s']:.1f} s, step "
        f"{r['step_s']:.4f} s (median of {len(r['times_s'])}), "
        f"{r['images_per_s']:.1f} images/s, {mem}")
  one = r.get('one_device')
  if one is not None:
    if 'error' in one:
      print(f"  1 device: {one['error']} (XLA estimate "
            f"{one.get('xla_peak_memory_gb')} GB); no scaling figure")
    else:
      print(f"  1 device: step {one['step_s']:.4f} s, "
            f"{one['images_per_s']:.1f} images/s; scaling {r['scaling']}x "
            f"on {devices} devices ({100 * r['scaling_efficiency']:.0f}%)")
  if 'step_gflop' in r:
    print(f"  {r['step_gflop']} GFLOP per step (XLA, un-optimised HLO), "
          f"{r.get('tflops_per_s_one_device')} TFLOP/s on one device")
  if 'torch_step_s' in r:
    print(f"  PyTorch {r['torch_version']} on {r['torch_device']}: step "
          f"{r['torch_step_s']:.4f} s; JAX/PyTorch {r['jax_over_torch']}")
  elif 'torch_error' in r:
    print(f"  PyTorch: {r['torch_error']}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the check; prints the figures (one JSON line with --json)."""
  args = parse_args(argv)
  if args.torch:
    # JAX would otherwise take 75% of GPU memory up front and leave PyTorch
    # too little; JAX's allocator then grows on demand. Read when the
    # backend starts, so only effective before the first device call.
    os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  from fasjax import deviceless  # pylint: disable=g-import-not-at-top
  try:
    if args.target:
      return run_targets(args)
    report = run(args)
  except (CheckError, deviceless.DevicelessError) as e:
    print(f'check_accelerator: error: {e}', file=sys.stderr)
    raise SystemExit(2) from None
  if args.json:
    print(json.dumps(report))
  return report


def run_targets(args: argparse.Namespace) -> dict[str, Any]:
  """--target: compiles for GPUs/TPUs not present (fasjax.check_target)."""
  from fasjax import check_target  # pylint: disable=g-import-not-at-top
  names = [n.strip() for n in args.target.split(',') if n.strip()]
  if not names:
    raise CheckError('--target: name at least one target')
  configs = chosen_configs(args)
  emit = ((lambda r: print(json.dumps(r), flush=True)) if args.json
          else check_target.print_report)
  reports = check_target.run_targets(configs, names, args.devices,
                                     args.remat == 'all', emit=emit)
  return {'targets': reports}


if __name__ == '__main__':
  main()
