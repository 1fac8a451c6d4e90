"""The accelerator extras resolve to the tested jax and matching plugins.

`pip install -e ".[cuda12]"` (or `.[tpu]`, `.[aot]`) must never leave a CUDA
plugin or libtpu that does not match jax. pip's resolver answers that
without installing anything: each extra's requirements, together with
fasjax's own bound on jax, go through `pip install --dry-run
--ignore-installed --report`, and the report must hold jax 0.10.2 with
plugins of the same version and the libtpu jax[tpu] asks for. (The whole
package is not resolved: TensorFlow and Beam would make it minutes, and they
do not touch jax's version.) Skipped where no package index answers.
"""

import configparser
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
JAX = '0.10.2'


def _setup() -> configparser.ConfigParser:
  setup = configparser.ConfigParser()
  setup.read(ROOT / 'setup.cfg')
  return setup


def _lines(text: str) -> list[str]:
  return [line.strip() for line in text.splitlines()
          if line.strip() and not line.strip().startswith('#')]


def _jax_bound() -> str:
  reqs = _lines(_setup()['options']['install_requires'])
  return next(r for r in reqs if r.replace(' ', '').startswith('jax>'))


@pytest.fixture(scope='module')
def resolved(tmp_path_factory):
  """{extra: {package: version}} as pip's resolver would install them."""
  extras = _setup()['options.extras_require']
  procs = {}
  for extra in ('cuda12', 'tpu', 'aot'):
    report = tmp_path_factory.mktemp(extra) / 'report.json'
    cmd = [sys.executable, '-m', 'pip', 'install', '--dry-run', '--quiet',
           '--ignore-installed', '--disable-pip-version-check',
           '--report', str(report), _jax_bound(), *_lines(extras[extra])]
    env = {**os.environ, 'PIP_NO_INPUT': '1'}
    procs[extra] = (report, subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env))
  out = {}
  for extra, (report, proc) in procs.items():
    try:
      _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
      proc.kill()
      pytest.skip('pip could not resolve within 5 minutes (slow index)')
    if proc.returncode:
      offline = ('NewConnectionError', 'Could not fetch', 'Max retries',
                 'No matching distribution', 'Temporary failure')
      if any(w in err for w in offline):
        pytest.skip(f'no package index reachable: {err.strip()[-300:]}')
      pytest.fail(f'pip could not resolve .[{extra}]: {err[-2000:]}')
    items = json.loads(report.read_text())['install']
    out[extra] = {i['metadata']['name'].lower().replace('_', '-'):
                  i['metadata']['version'] for i in items}
  return out


def test_cuda12_installs_jax_and_its_cuda_plugin(resolved):
  got = resolved['cuda12']
  assert got['jax'] == got['jaxlib'] == JAX
  assert got['jax-cuda12-plugin'] == got['jax-cuda12-pjrt'] == JAX
  assert any(p.startswith('nvidia-cudnn') for p in got), got


def test_tpu_installs_jax_and_its_libtpu(resolved):
  got = resolved['tpu']
  assert got['jax'] == got['jaxlib'] == JAX
  assert got['libtpu'].startswith('0.0.42.'), got['libtpu']


def test_aot_installs_both_compilers_without_cuda(resolved):
  got = resolved['aot']
  assert got['jax'] == JAX
  assert got['jax-cuda12-plugin'] == got['jax-cuda12-pjrt'] == JAX
  assert got['libtpu'].startswith('0.0.42.')
  # Compiling needs no CUDA libraries: none of the large nvidia wheels.
  assert not [p for p in got if p.startswith('nvidia-')]


def test_aot_libtpu_is_the_one_jax_tpu_asks_for():
  from fasjax import deviceless  # pylint: disable=g-import-not-at-top
  pins = _lines(_setup()['options.extras_require']['aot'])
  libtpu = next(p for p in pins if p.startswith('libtpu=='))
  want = deviceless.libtpu_requirement(JAX)
  import fnmatch  # pylint: disable=g-import-not-at-top
  assert fnmatch.fnmatch(libtpu.split('==')[1], want), (libtpu, want)
