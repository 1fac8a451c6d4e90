"""Test set-up: JAX on CPU, quiet TensorFlow."""
import os
import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
# Compilation dominates: share compiled programs across tests, xdist workers
# and the launch.py subprocesses (they inherit these variables).
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(),
                                   'fasjax-test-jax-cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

# Compilation, not arithmetic, dominates a JAX test suite on a CPU.
jax.config.update('jax_disable_most_optimizations', True)


import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """A tfds data dir shared by the tests of one worker.

  Synthetic data is built on first use and then only read: one build per
  xdist worker instead of one per module (about 4 s each on 2 cores).
  """
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture(scope='session')
def trained_smoke_run(tmp_path_factory, data_dir):
  """The synthetic smoke run, trained in-process once per worker: its workdir.

  Shared by the modules that only read a finished run (tests/test_inference.py,
  tests/test_reliability.py's reference, tests/test_report.py on a copy):
  training it costs 15-25 s on 2 cores. Do not write into it; copy it.
  """
  import smoke_run  # pylint: disable=g-import-not-at-top
  from fasjax import train  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp('trained_smoke'))
  train.train_and_evaluate(smoke_run.config(data_dir), workdir)
  return workdir
