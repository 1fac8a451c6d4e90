"""Shared by the end-to-end tests: the smoke config and launch.py commands."""

import json
import os
import subprocess
import sys

from configs import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = 'configs/ocm_to_i.py:synthetic,smoke'


def config(data_dir):
  """The O&C&M->I synthetic smoke config reading data from `data_dir`."""
  c = common.protocol_config('ocm', 'i', 'synthetic,smoke')
  c.data.data_dir = data_dir
  return c


def env(**extra):
  """launch.py's environment: the same XLA settings as tests/conftest.py."""
  return dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT,
              JAX_DISABLE_MOST_OPTIMIZATIONS='1', **extra)


def command(workdir, data_dir, *extra):
  """The launch.py command line of the smoke run."""
  return [sys.executable, 'launch.py', f'--config={CONFIG}',
          f'--workdir={workdir}', f'--config.data.data_dir={data_dir}', *extra]


def launch(workdir, data_dir, *extra, extra_env=None):
  """Runs launch.py to completion; fails the test on a non-zero exit."""
  proc = subprocess.run(command(workdir, data_dir, *extra), cwd=ROOT,
                        env=env(**(extra_env or {})), capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def read_json(path):
  """The JSON value in `path`."""
  with open(path) as f:
    return json.load(f)


def checkpoint_steps(workdir):
  """The complete checkpoints' steps in WORKDIR/checkpoints, ascending."""
  folder = os.path.join(workdir, 'checkpoints')
  return sorted(int(s) for s in os.listdir(folder) if s.isdigit())


# What launch.py logs when its train step came from the compilation cache.
LOADED_FROM_CACHE = 'loaded from the compilation cache'


def train_step_line(stderr):
  """launch.py's one 'Train step traced ...' log line."""
  lines = [l for l in stderr.splitlines() if 'Train step traced' in l]
  assert len(lines) == 1, stderr[-3000:]
  return lines[0]
