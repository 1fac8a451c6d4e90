"""Compiling for GPUs and TPUs this machine does not have (deviceless AOT).

jax 0.10.2 runs an accelerator's own compiler without the accelerator:
`jax.experimental.topologies.get_topology_desc` gives devices of a described
GPU (the CUDA 12 PJRT plugin, from a text-format
`stream_executor.GpuTargetConfigProto`) or TPU slice (libtpu, from a
topology name), and `jax.jit(...).lower(ShapeDtypeStructs with
NamedShardings on a mesh of them).compile()` runs XLA:GPU or libtpu;
nothing executes. `memory_analysis()` of the result is the compiler's buffer
assignment per device.

The targets (`targets()`) are data in `fasjax/targets/`: the GPU target
configs and a table of device memory, published peak FLOP/s and bandwidth,
and TPU topology names per chip count (sources in third_party/NOTES.md).
`check_backend` says what to install when the CUDA plugin or libtpu is
missing, or which versions go together when they do not match jax; the
`aot` extra of setup.cfg installs matching ones. Nothing here needs
TensorFlow; only jax and the standard library are imported.
"""

import dataclasses
import fnmatch
import functools
import importlib.metadata
import json
import os
import pathlib
import re
from typing import Any

import jax

TARGETS_DIR = pathlib.Path(__file__).resolve().parent / 'targets'
AOT_INSTALL = 'pip install -e ".[aot]"'
# libtpu reads this when it loads: without it, it asks the (absent) GCE
# metadata server which TPU this VM has, and waits for the answer.
_SKIP_MDS = 'TPU_SKIP_MDS_QUERY'
# libtpu lets one process at a time load it (a lockfile in /tmp) unless told
# otherwise; compiling touches no chip, so parallel compiles are safe.
_MULTI_LOAD = 'ALLOW_MULTIPLE_LIBTPU_LOAD'


class DevicelessError(ValueError):
  """A target, device count or installation the compile cannot use; says why."""


@dataclasses.dataclass(frozen=True)
class Target:
  """One accelerator (GPU model or TPU chip generation) to compile for."""
  name: str
  platform: str  # 'gpu' or 'tpu'
  description: str
  memory_bytes: int
  peak_flops_per_s: dict[str, float]  # by activation dtype
  hbm_bytes_per_s: float
  aliases: tuple[str, ...] = ()
  target_config: str | None = None  # GPU: file in fasjax/targets/
  chip_config_name: str | None = None  # TPU
  # TPU: chips -> (topology name, chips per host bounds).
  topologies: tuple[tuple[int, str, tuple[int, int, int]], ...] = ()

  def device_counts(self) -> tuple[int, ...]:
    """The device counts this target can be compiled for."""
    if self.platform == 'gpu':
      return tuple(range(1, 9))  # one host of up to 8 GPUs
    return tuple(n for n, _, _ in self.topologies)


@functools.cache
def targets() -> dict[str, Target]:
  """The known targets by name, from fasjax/targets/targets.json."""
  table = json.loads((TARGETS_DIR / 'targets.json').read_text())
  out = {}
  for name, t in table.items():
    if name.startswith('_'):
      continue
    topologies = tuple(sorted(
        (int(n), topo, tuple(bounds))
        for n, (topo, bounds) in t.get('topologies', {}).items()))
    out[name] = Target(
        name=name, platform=t['platform'], description=t['description'],
        memory_bytes=int(t['memory_bytes']),
        peak_flops_per_s={k: float(v)
                          for k, v in t['peak_flops_per_s'].items()},
        hbm_bytes_per_s=float(t['hbm_bytes_per_s']),
        aliases=tuple(t.get('aliases', ())),
        target_config=t.get('target_config'),
        chip_config_name=t.get('chip_config_name'), topologies=topologies)
  return out


def get_target(name: str) -> Target:
  """The target called `name` (or one of its aliases, any case)."""
  key = name.strip().lower()
  for t in targets().values():
    if key == t.name or key in t.aliases:
      return t
  raise DevicelessError(
      f'unknown target {name!r}; known targets: '
      + ', '.join(f'{t.name} ({t.platform})' for t in targets().values()))


def gpu_target_config(target: Target) -> str:
  """The text-format GpuTargetConfigProto of a GPU target."""
  if target.platform != 'gpu' or not target.target_config:
    raise DevicelessError(f'{target.name} is not a GPU target')
  return (TARGETS_DIR / target.target_config).read_text()


# ----------------------------------------------------------------------------
# What is installed, and whether it goes with jax.


def _installed(dist: str) -> str | None:
  try:
    return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    return None


def libtpu_requirement(jax_version: str | None = None) -> str:
  """The libtpu version spec jax[tpu] asks for (from jax's own metadata)."""
  for req in importlib.metadata.requires('jax') or ():
    m = re.match(r'\s*libtpu\s*==\s*([^;\s]+)\s*;.*extra\s*==\s*"tpu"', req)
    if m:
      return m.group(1)
  # jax's metadata without a tpu extra: name the rule, not a version.
  return f'the libtpu that jax[tpu]=={jax_version or jax.__version__} installs'


def installed_versions() -> dict[str, str | None]:
  """jax, jaxlib, the CUDA 12 plugin wheels and libtpu, as installed."""
  return {d: _installed(d) for d in ('jax', 'jaxlib', 'jax-cuda12-plugin',
                                     'jax-cuda12-pjrt', 'libtpu')}


def version_problem(platform: str,
                    versions: dict[str, str | None] | None = None
                    ) -> str | None:
  """What is missing or mismatched for compiling for `platform` (None: fine)."""
  v = installed_versions() if versions is None else versions
  jv = v['jax']
  if platform == 'gpu':
    plugin, pjrt = v['jax-cuda12-plugin'], v['jax-cuda12-pjrt']
    if plugin is None or pjrt is None:
      return ('compiling for a GPU needs the CUDA 12 plugin of jax '
              f'{jv}: {AOT_INSTALL} (or pip install --no-deps '
              f'jax-cuda12-plugin=={jv} jax-cuda12-pjrt=={jv}); no GPU, '
              'driver or CUDA wheels are needed')
    if plugin != jv or pjrt != jv:
      return (f'jax-cuda12-plugin {plugin} / jax-cuda12-pjrt {pjrt} do not '
              f'match jax {jv}: the plugin and PJRT wheels must have jax\'s '
              f'version; pip install --no-deps jax-cuda12-plugin=={jv} '
              f'jax-cuda12-pjrt=={jv} (or {AOT_INSTALL})')
    return None
  if platform == 'tpu':
    want = libtpu_requirement(jv)
    have = v['libtpu']
    if have is None:
      return (f'compiling for a TPU needs libtpu {want} (what jax[tpu]=={jv} '
              f'installs): {AOT_INSTALL} or pip install "jax[tpu]=={jv}"')
    if re.match(r'^[0-9.*]+$', want) and not fnmatch.fnmatch(have, want):
      return (f'libtpu {have} does not match jax {jv}, which goes with libtpu '
              f'{want}: pip install "jax[tpu]=={jv}" (or {AOT_INSTALL})')
    return None
  raise DevicelessError(f'unknown platform {platform!r}')


def check_backend(target: Target) -> None:
  """Raises DevicelessError when `target`'s compiler is missing or mismatched."""
  problem = version_problem(target.platform)
  if problem:
    raise DevicelessError(f'{target.name}: {problem}')


def cpu_fallback_warning(backend: str, jax_platforms: str | None,
                         versions: dict[str, str | None] | None = None
                         ) -> str | None:
  """One line when a GPU/TPU plugin is installed but JAX runs on the CPU.

  Silent when the user chose the CPU (JAX_PLATFORMS names only 'cpu'): the
  plugins are then installed for compiling without the hardware (the `aot`
  extra) or on purpose, and the line would be noise.
  """
  if backend != 'cpu':
    return None
  chosen = {p.strip() for p in (jax_platforms or '').split(',') if p.strip()}
  if chosen == {'cpu'}:
    return None
  v = installed_versions() if versions is None else versions
  jv = v['jax']
  found = []
  if v['jax-cuda12-plugin'] or v['jax-cuda12-pjrt']:
    found.append(f"jax-cuda12-plugin {v['jax-cuda12-plugin']} / "
                 f"jax-cuda12-pjrt {v['jax-cuda12-pjrt']}")
  if v['libtpu']:
    found.append(f"libtpu {v['libtpu']}")
  if not found:
    return None
  return (f'WARNING: JAX is running on the CPU although {" and ".join(found)} '
          f'is installed: no GPU/TPU was found or the plugin does not match '
          f'jax {jv} (it goes with jax-cuda12-plugin/pjrt {jv} and libtpu '
          f'{libtpu_requirement(jv)}; pip install -e ".[cuda12]" or '
          '".[tpu]" installs those). Set JAX_PLATFORMS=cpu to run on the CPU '
          'on purpose.')


# ----------------------------------------------------------------------------
# Devices of a target.


def topology_name(target: Target, devices: int) -> str:
  """How the target's `devices`-device topology is named (for reports)."""
  if target.platform == 'gpu':
    return f'1x1x{devices}'
  for n, name, _ in target.topologies:
    if n == devices:
      return name
  raise DevicelessError(
      f'{target.name}: no {devices}-chip topology known; choose --devices '
      f'from {", ".join(map(str, target.device_counts()))}')


@functools.cache
def target_devices(name: str, devices: int) -> tuple[Any, ...]:
  """`devices` devices of target `name` (compile-only; nothing runs on them).

  GPUs: one host with `devices` GPUs (topology '1x1xN'); TPUs: one slice of
  `devices` chips (e.g. v5e:2x2 for 4).
  """
  target = get_target(name)
  if devices not in target.device_counts():
    raise DevicelessError(
        f'{target.name}: --devices={devices} is not available; choose from '
        f'{", ".join(map(str, target.device_counts()))}')
  check_backend(target)
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  if target.platform == 'gpu':
    desc = topologies.get_topology_desc(
        platform='cuda', target_config=gpu_target_config(target),
        topology=topology_name(target, devices))
  else:
    os.environ.setdefault(_SKIP_MDS, '1')
    os.environ.setdefault(_MULTI_LOAD, '1')
    bounds = [b for n, _, b in target.topologies if n == devices][0]
    desc = topologies.get_topology_desc(
        platform='tpu', topology_name=topology_name(target, devices),
        chip_config_name=target.chip_config_name,
        chips_per_host_bounds=bounds, num_slices=1)
  found = tuple(desc.devices)
  if len(found) != devices:
    raise DevicelessError(f'{target.name}: topology '
                          f'{topology_name(target, devices)} has '
                          f'{len(found)} devices, expected {devices}')
  return found
