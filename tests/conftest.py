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


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """A tfds data dir for one test module (synthetic data is built on use)."""
  return str(tmp_path_factory.mktemp('tfds'))


# The slowest modules first (measured with --durations): with
# --dist=loadfile each module runs whole on one worker, so a long module
# collected last (test_study_exec sorts late) leaves the other worker idle
# at the end. Longest first is the classic remedy for that tail.
SLOW_MODULES_FIRST = (
    'test_sharding.py', 'test_study_exec.py', 'test_meta.py',
    'test_reliability.py', 'test_deviceless.py', 'test_check_accelerator.py',
    'test_study.py', 'test_compilation_cache.py', 'test_report.py',
    'test_fast_conv.py', 'test_launch.py', 'test_inference.py',
)


def pytest_collection_modifyitems(items):
  """Runs the slowest modules first; the rest keep their order."""
  rank = {name: i for i, name in enumerate(SLOW_MODULES_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
