r"""Why per-device memory does not fall as 1/N: XLA's own buffer assignment.

Compiles the paper step (as benchmarks/compiled_memory.py does) for 1, 2, 4
... devices of one target with XLA's dumps on, then reads the dumped buffer
assignment of the train step and prints, per device count:

- peak: XLA's memory analysis per device (what compiled_memory.py records);
- arena: the one temp allocation XLA packs its intermediate buffers into;
- volume: the sum of the sizes of the buffers packed into that arena (each
  counted once, however long it lives);
- batch-free: the part of that volume in buffers with no dimension that
  scales with the per-device batch (parameter-shaped temporaries, gradient
  sums). Buffers of reshaped activations (e.g. f32[327680,256], which is
  20 x 128 x 128 rows) are counted as batch-free here, an upper bound.

If the volume falls as 1/N but the arena does not, the difference is XLA's
scheduling and packing (how many buffers it keeps alive at once), not data
that every device holds whole.

  python benchmarks/memory_scaling.py --target=h100 --devices=1,2,4
  python benchmarks/memory_scaling.py --target=h100 --devices=1,8 \
      --set=data.per_class_batch=12    # 20 images per domain do not split 8 ways

GPU targets only: libtpu does not write XLA's buffer-assignment dump. Each
compile takes 35-80 s on a 2-core machine.
"""

import argparse
import glob
import os
import re
import sys
import tempfile

import repo_root  # pylint: disable=unused-import  # checkout root on sys.path

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

_ALLOCATION = re.compile(r'allocation (\d+): size (\d+)')
_VALUE = re.compile(r' value: <\d+ \S+ @\d+> \(size=(\d+),offset=\d+\): '
                    r'\w+\[([\d,]*)\]')


def parse_arena(text: str) -> tuple[int, list[tuple[int, tuple[int, ...]]]]:
  """(size, [(bytes, shape), ...]) of the largest allocation in a dump."""
  allocations, current = [], None
  for line in text.splitlines():
    m = _ALLOCATION.match(line)
    if m:
      current = (int(m.group(2)), [])
      allocations.append(current)
      continue
    m = _VALUE.match(line)
    if m and current is not None:
      shape = tuple(int(d) for d in m.group(2).split(',') if d)
      current[1].append((int(m.group(1)), shape))
  if not allocations:
    raise ValueError('no allocation in the buffer-assignment dump')
  return max(allocations, key=lambda a: a[0])


def summarise(text: str, per_device_batch: int) -> dict[str, float]:
  """Arena size, value volume and its batch-free part, in GB."""
  size, values = parse_arena(text)
  free = sum(b for b, shape in values if per_device_batch not in shape)
  return {'arena_gb': size / 1e9,
          'volume_gb': sum(b for b, _ in values) / 1e9,
          'batch_free_gb': free / 1e9, 'buffers': len(values)}


def compile_with_dump(target: str, policy: str, dtype: str, devices: int,
                      dump_dir: str, settings: tuple[str, ...] = ()
                      ) -> dict[str, float]:
  """Compiles in a fresh process (XLA reads its flags once) and summarises."""
  import subprocess  # pylint: disable=g-import-not-at-top
  code = (
      'import json, sys\n'
      f'sys.path.insert(0, {repo_root.ROOT!r})\n'
      'from fasjax import check_target, deviceless\n'
      "_, c = check_target.load_launch_config(['--config=configs/ocm_to_i.py',"
      f" '--config.model.remat={policy}', '--config.model.dtype={dtype}',"
      " '--config.model.conv_impl=xla',"
      f" *{['--config.' + x for x in settings]!r}])\n"
      f'r = check_target.compile_step(c, deviceless.get_target({target!r}),'
      f' {devices})\n'
      "print(json.dumps({'peak_gb': r['peak_bytes'] / 1e9,"
      " 'batch': 2 * c.data.per_class_batch}))\n")
  env = dict(os.environ, XLA_FLAGS=os.environ.get('XLA_FLAGS', '')
             + f' --xla_dump_to={dump_dir}')
  out = subprocess.run([sys.executable, '-c', code], env=env, check=True,
                       cwd=repo_root.ROOT, capture_output=True, text=True)
  import json  # pylint: disable=g-import-not-at-top
  result = json.loads(out.stdout.strip().splitlines()[-1])
  dumps = glob.glob(os.path.join(
      dump_dir, '*jit_train_step*after_optimizations-buffer-assignment.txt'))
  if not dumps:
    raise SystemExit(f'XLA wrote no buffer assignment for {target} '
                     '(libtpu does not; use a GPU target)')
  with open(dumps[0]) as f:
    summary = summarise(f.read(), result['batch'] // devices)
  return {'peak_gb': result['peak_gb'], **summary}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--target', default='h100')
  parser.add_argument('--remat', default='domains')
  parser.add_argument('--dtype', default='float32')
  parser.add_argument('--devices', default='1,2,4')
  parser.add_argument('--set', action='append', default=[],
                      metavar='FIELD=VALUE', help='a config override')
  args = parser.parse_args(argv)
  print(f'{args.target}, remat={args.remat}, {args.dtype}'
        f'{"".join(", " + x for x in args.set)}: GB per device')
  print('devices  peak   arena  volume  batch-free  buffers')
  for n in [int(x) for x in args.devices.split(',')]:
    with tempfile.TemporaryDirectory() as dump_dir:
      s = compile_with_dump(args.target, args.remat, args.dtype, n, dump_dir,
                            tuple(args.set))
    print(f'{n:7d} {s["peak_gb"]:6.2f} {s["arena_gb"]:6.2f} '
          f'{s["volume_gb"]:7.1f} {s["batch_free_gb"]:11.2f} '
          f'{s["buffers"]:8d}', flush=True)


if __name__ == '__main__':
  main()
