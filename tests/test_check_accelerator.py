"""`python -m fasjax.check_accelerator` on the CPU: figures, imports, bad input.

The check runs in subprocesses (forced CPU devices, and to see its import
closure); one module-scoped run on 2 devices compiles the launch path's step
twice (2 devices, 1 device), at the smallest shapes.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import types

import jax
import pytest

from fasjax import check_accelerator
from fasjax.models import layers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ['--size=32', '--width=0.125', '--batch=2', '--steps=2']
BANNED = ('tensorflow', 'tensorflow_datasets', 'clu', 'torch')


def _run(args: list[str], devices: int) -> subprocess.CompletedProcess:
  """Runs check_accelerator.main(args), then prints the banned modules seen."""
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' --xla_force_host_platform'
                      f'_device_count={devices}').strip()
  env['JAX_PLATFORMS'] = 'cpu'
  # As conftest.py sets in the test process: compilation dominates.
  env['JAX_DISABLE_MOST_OPTIMIZATIONS'] = 'true'
  code = ('import json, sys\n'
          'from fasjax import check_accelerator\n'
          f'check_accelerator.main({args!r})\n'
          'print(json.dumps(sorted(m for m in sys.modules '
          f'if m.split(".")[0] in {BANNED!r})))\n')
  return subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900,
                        check=False)


@pytest.fixture(scope='module')
def two_devices():
  """(report, banned modules imported) of the paper config on 2 devices."""
  proc = _run(['--json', '--configs=paper', *SMALL], devices=2)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  return json.loads(lines[-2]), json.loads(lines[-1])


def test_json_line_has_sane_figures(two_devices):
  report, _ = two_devices
  assert report['backend'] == 'cpu'
  assert report['devices'] == 2 and report['device_kind']
  r = report['configs']['paper']
  assert (r['image_size'], r['width'], r['per_class_batch']) == (32, 0.125, 2)
  assert r['remat'] in layers.REMAT_POLICIES
  assert r['conv_impl'] in layers.CONV_IMPLS and r['conv_impl_why']
  assert r['compile_s'] > 0 and r['step_s'] > 0 and r['loss_finite']
  assert r['step_s'] == pytest.approx(statistics.median(r['times_s']),
                                      rel=1e-3)
  # 3 domains x (2 live + 2 spoof) per step.
  assert r['images_per_step'] == 12
  assert r['images_per_s'] == pytest.approx(12 / r['step_s'], rel=1e-3)
  assert r['peak_memory_gb'] > 0  # XLA's analysis: no memory_stats on CPU.
  assert r['peak_memory_source'] == 'XLA memory_analysis'
  one = r['one_device']
  assert one['step_s'] > 0 and one['peak_memory_gb'] > 0
  assert r['scaling'] == pytest.approx(one['step_s'] / r['step_s'], rel=1e-2)


def test_imports_no_tensorflow_tfds_clu_or_torch(two_devices):
  _, banned = two_devices
  assert banned == []


@pytest.mark.parametrize('args,words', [
    (['--batch=3'], ['data.per_class_batch', '4 devices', '--batch=4',
                     '--devices=3']),
    (['--remat=bogus'], ['config.model.remat', "'bogus'", '--remat']),
])
def test_bad_input_is_one_line_before_compiling(args, words):
  proc = _run(['--json', '--configs=paper', *SMALL[:2], *args], devices=4)
  assert proc.returncode == 2
  # The CUDA plugin (the aot extra) logs from C++ when JAX starts, even on
  # the CPU ("I0000 ... Could not find cuda drivers"): not the check's lines.
  err = '\n'.join(line for line in proc.stderr.strip().splitlines()
                  if not re.match(r'(WARNING: All log messages before absl|'
                                  r'[IWE]\d{4} )', line))
  assert len(err.splitlines()) == 1 and 'Traceback' not in err, err
  for word in words:
    assert word in err, err
  assert '"configs"' not in proc.stdout


def test_out_of_memory_is_reported_per_config(monkeypatch, capsys):
  """OOM in the first step: XLA's estimate, remat and options; goes on."""
  # Decimal gigabytes: 2 + 1 + 50 - 1 = 52 GB.
  mem = types.SimpleNamespace(argument_size_in_bytes=2 * 10**9,
                              output_size_in_bytes=10**9,
                              temp_size_in_bytes=50 * 10**9,
                              alias_size_in_bytes=10**9)

  class Compiled:
    def memory_analysis(self):
      return mem

    def __call__(self, *args):
      raise jax.errors.JaxRuntimeError(
          'RESOURCE_EXHAUSTED: Out of memory while trying to allocate 50 GiB')

  class Lowered:
    def compile(self):
      return Compiled()

    def cost_analysis(self):
      return {'flops': 1e9}

  step = types.SimpleNamespace(lower=lambda *args: Lowered())
  monkeypatch.setattr(check_accelerator.sharding, 'jit_train_step',
                      lambda *args, **kwargs: step)
  monkeypatch.setattr(check_accelerator.model_setup, 'jit_init_state',
                      lambda *args, **kwargs: {})
  report = check_accelerator.main(['--json', '--configs=paper,synthetic',
                                   '--remat=none', *SMALL])
  assert json.loads(capsys.readouterr().out) == report
  assert list(report['configs']) == ['paper', 'synthetic']
  for r in report['configs'].values():
    assert r['error'] == 'out_of_memory' and r['stage'] == 'first step'
    assert r['xla_peak_memory_gb'] == pytest.approx(52.0)
    assert 'step_s' not in r
    for word in ('52.0 GB', "remat policy 'none'", '--remat=', 'devices',
                 '--dtype=bfloat16'):
      assert word in r['message'], r['message']
