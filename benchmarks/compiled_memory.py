r"""Memory of the paper step as the GPU and TPU compilers lay it out.

For each target (GPUs and TPUs through `fasjax.deviceless`, compiled for
without the hardware; 'cpu' is XLA:CPU here), remat policy, dtype and device
count it compiles the step `launch.py` runs for the paper config
(`configs/ocm_to_i.py`: 256x256x6, width 1.0, 3 domains x 20 images; native
convolutions; `sharding.jit_train_step` over a mesh of the target's
devices; `fasjax.check_target.compile_step`) and records XLA's memory
analysis per device. These are compile analyses, not runs: nothing executes,
no autotuning happens (cuDNN workspaces are not counted) and the
allocator's overhead is not in them.

Each cell appends one JSON line to docs/compiled_memory.jsonl (with the
commit, load, date and compiler versions) as soon as it is compiled, so an
interrupted run keeps what it measured; `--table` prints the markdown table
of docs/compiled_memory.md from that file (the latest line per cell; cells
never measured say so, with the command that measures them).

  python benchmarks/compiled_memory.py --targets=h100,a100-40gb,l4
  python benchmarks/compiled_memory.py --targets=v5e --remat=domains,none \
      --dtypes=float32
  python benchmarks/compiled_memory.py --table

Full-size GPU compiles take about 35 s each on a quiet core, TPU compiles
minutes: run one at a time (nice -n 5 on a shared machine).
"""

import argparse
import datetime
import json
import os
import platform
import re
import time
from typing import Any

import repo_root  # pylint: disable=unused-import  # checkout root on sys.path

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

RECORD = os.path.join(repo_root.ROOT, 'docs', 'compiled_memory.jsonl')
TARGETS = ('h100', 'a100-40gb', 'l4', 'v5e', 'v4')
POLICIES = ('none', 'conv', 'blocks', 'domains')
DTYPES = ('float32', 'bfloat16')
DEVICES = (1, 4)


def parse_args(argv=None) -> argparse.Namespace:
  """Command-line options."""
  p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  p.add_argument('--targets', default=','.join(TARGETS),
                 help="comma-separated target names, 'cpu' for XLA:CPU here")
  p.add_argument('--remat', default=','.join(POLICIES))
  p.add_argument('--dtypes', default=','.join(DTYPES))
  p.add_argument('--devices', default=','.join(map(str, DEVICES)))
  p.add_argument('--table', action='store_true',
                 help='print the table from docs/compiled_memory.jsonl only')
  p.add_argument('--no-record', dest='record', action='store_false',
                 help='do not append to docs/compiled_memory.jsonl')
  return p.parse_args(argv)


def _split(text: str) -> list[str]:
  return [t.strip() for t in text.split(',') if t.strip()]


def measure(target: str, policy: str, dtype: str, devices: int
            ) -> dict[str, Any]:
  """One cell: compiles and returns its JSON record."""
  # pylint: disable=g-import-not-at-top
  import jax
  from fasjax import check_target
  from fasjax import deviceless
  from fasjax import provenance
  _, config = check_target.load_launch_config([
      '--config=configs/ocm_to_i.py', f'--config.model.remat={policy}',
      f'--config.model.dtype={dtype}', '--config.model.conv_impl=xla'])
  if target == 'cpu':
    found = jax.devices('cpu')[:devices]
    if len(found) < devices:
      raise SystemExit(f'{devices} CPU devices need XLA_FLAGS='
                       f'--xla_force_host_platform_device_count={devices}')
    r = check_target.compile_on(config, found, 'cpu')
    compiler = f'XLA:CPU (jaxlib {jax.__version__})'
  else:
    t = deviceless.get_target(target)
    v = deviceless.installed_versions()
    compiler = (f"XLA:GPU (jax-cuda12-plugin {v['jax-cuda12-plugin']})"
                if t.platform == 'gpu' else f"libtpu {v['libtpu']}")
    try:
      r = check_target.compile_step(config, t, devices)
    except jax.errors.JaxRuntimeError as e:
      if 'RESOURCE_EXHAUSTED' not in str(e):
        raise
      # libtpu refuses a step that cannot fit its HBM (XLA:GPU does not).
      r = {'does_not_fit': str(e).split('RESOURCE_EXHAUSTED: ')[-1][:300]}
  record = {'target': target, 'devices': devices, 'remat': policy,
            'dtype': dtype}
  if 'does_not_fit' in r:
    record.update(does_not_fit=r['does_not_fit'], peak_gb=None)
  else:
    record.update(
        device_kind=r['device_kind'], conv_impl=r['conv_impl'],
        peak_gb=round(r['peak_bytes'] / 1e9, 4),
        argument_gb=round(r['argument_bytes'] / 1e9, 4),
        output_gb=round(r['output_bytes'] / 1e9, 4),
        temp_gb=round(r['temp_bytes'] / 1e9, 4),
        alias_gb=round(r['alias_bytes'] / 1e9, 4),
        compile_s=round(r['compile_s'], 1))
  return {
      **record, 'compiler': compiler,
      'jax': jax.__version__, 'commit': provenance.git_commit(),
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'load_1min': round(os.getloadavg()[0], 2), 'cpus': os.cpu_count(),
      'host': platform.node()}


def latest(path: str = RECORD) -> dict[tuple, dict[str, Any]]:
  """The newest record per (target, devices, remat, dtype)."""
  out = {}
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        if line.strip():
          r = json.loads(line)
          out[(r['target'], r['devices'], r['remat'], r['dtype'])] = r
  return out


def table(records: dict[tuple, dict[str, Any]],
          targets=('h100', 'a100-40gb', 'l4', 'v5e', 'v4'),
          devices=DEVICES) -> str:
  """Markdown tables, one per device count: rows policy x dtype, columns targets."""
  names = {'h100': 'H100 80 GB', 'a100-40gb': 'A100 40 GB',
           'l4': 'L4 24 GB', 'v5e': 'TPU v5e 16 GiB', 'v4': 'TPU v4 32 GiB',
           'cpu': 'XLA:CPU'}
  blocks, missing = [], 0
  for n in devices:
    head = ['`model.remat`', 'dtype'] + [names.get(t, t) for t in targets]
    lines = [f'**{n} device{"s" if n > 1 else ""}** (GB per device)', '',
             '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for policy in POLICIES:
      for dtype in DTYPES:
        cells = [f'`{policy}`', dtype]
        for t in targets:
          r = records.get((t, n, policy, dtype))
          if r is None:
            cells.append('not measured')
            missing += 1
          elif r.get('does_not_fit'):
            needed = re.search(r'\(([\d.]+G)\) exceeds', r['does_not_fit'])
            cells.append('does not fit' + (f' (needs {needed.group(1)})'
                                           if needed else ''))
          else:
            cells.append(f"{r['peak_gb']:.2f}")
        lines.append('| ' + ' | '.join(cells) + ' |')
    blocks.append('\n'.join(lines))
  text = '\n\n'.join(blocks)
  if missing:
    text += (f'\n\nNot measured ({missing} cells): '
             '`python benchmarks/compiled_memory.py --targets=T --devices=N '
             '--remat=P --dtypes=D` measures a cell.')
  return text


def main(argv=None) -> None:
  """Compiles the chosen cells (or only prints the table)."""
  args = parse_args(argv)
  targets, devices = _split(args.targets), [int(n) for n in
                                            _split(args.devices)]
  if not args.table:
    if 'cpu' in targets and max(devices) > 1:
      # Read when the CPU backend starts: before anything touches JAX.
      os.environ['XLA_FLAGS'] = (
          os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_'
          f'device_count={max(devices)}').strip()
    for target in targets:
      for n in devices:
        for dtype in _split(args.dtypes):
          for policy in _split(args.remat):
            t0 = time.perf_counter()
            r = measure(target, policy, dtype, n)
            if r['peak_gb'] is None:
              print(f'{target} x{n} {policy} {dtype}: does not fit: '
                    f"{r['does_not_fit']}", flush=True)
            else:
              print(f"{target} x{n} {policy} {dtype}: {r['peak_gb']:.2f} GB "
                    f"per device (compile {r['compile_s']} s, wall "
                    f'{time.perf_counter() - t0:.0f} s, load '
                    f"{r['load_1min']})", flush=True)
            if args.record:
              with open(RECORD, 'a') as f:
                f.write(json.dumps(r) + '\n')
  print(table(latest()))


if __name__ == '__main__':
  main()
