"""Runs one protocol: train (resuming from the latest checkpoint) or evaluate.

  python launch.py --config=configs/ocm_to_i.py:synthetic --workdir=workdirs/demo
  python launch.py --config=configs/ocm_to_i.py:synthetic --workdir=workdirs/demo --mode=eval
  python launch.py --config=configs/ocm_to_i.py:synthetic --workdir=workdirs/demo --mode=report

Config fields can be overridden, e.g. --config.num_steps=100. Several
processes without a cluster manager (SLURM, Open MPI and TPU pods are
detected): start one per host with --coordinator_address=HOST0:PORT
--num_processes=N --process_id=I.

Mistakes a user can fix (an unknown config argument, datasets not prepared,
a --workdir that is a file or holds no run, ...) end with one line on stderr
that says what to do, and exit status 2; --debug shows the traceback.
JAX, TensorFlow and the training code are imported only after the flags and
the workdir have been checked, so --help and these errors answer at once.
"""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from fasjax import cli  # no JAX or TensorFlow: --help and user errors are quick

ROOT = os.path.dirname(os.path.abspath(__file__))

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Protocol config file and arguments, e.g. '
    'configs/ocm_to_i.py:synthetic.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, '
                               'logs and results.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'report'],
                          'train: train (resume) and evaluate; eval: '
                          're-evaluate the saved checkpoints; report: '
                          'figures and numbers in WORKDIR/report/.')
_STEP = flags.DEFINE_integer('step', None, 'eval/report: this saved step '
                             'instead of the chosen ones.')
_LAST_K = flags.DEFINE_integer('last_k', None, 'eval: also the mean +- std '
                               'over the last K evaluations.')
_DEBUG = flags.DEFINE_bool('debug', False, 'Show the traceback of errors that '
                           'otherwise end in one line.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'Several processes without a cluster '
    'manager: host:port of process 0, the same for all processes.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'With '
                                      '--coordinator_address: how many.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'With '
                                   '--coordinator_address: this one, 0-based.')
flags.mark_flags_as_required(['config', 'workdir'])


def run(config, workdir: str, mode: str) -> None:
  """Imports the heavy modules and runs the mode."""
  import jax
  import tensorflow as tf

  from fasjax import checkpoint_eval
  from fasjax import compilation_cache
  from fasjax import config_checks
  from fasjax import data
  from fasjax import deviceless
  from fasjax import logs
  from fasjax import sharding
  from fasjax import train

  # jax.distributed must start before anything touches a JAX backend; a
  # no-op unless given a coordinator or a multi-process cluster is detected.
  sharding.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                      _PROCESS_ID.value)
  # TensorFlow only feeds data; keep it off any accelerator JAX uses.
  tf.config.set_visible_devices([], 'GPU')
  logs.quiet_library_logs()
  # Before anything is written: the config's values, then every dataset.
  config_checks.validate(config)
  # Before the first compile: a rerun loads its programs from the cache.
  compilation_cache.configure(config.compilation_cache_dir)
  data.check_prepared(config)
  logging.info('JAX devices: %s', jax.devices())
  # A GPU/TPU plugin installed but unused: one loud line (not when the user
  # chose the CPU with JAX_PLATFORMS=cpu; see deviceless.cpu_fallback_warning).
  fallback = deviceless.cpu_fallback_warning(jax.default_backend(),
                                             os.environ.get('JAX_PLATFORMS'))
  if fallback:
    logging.warning(fallback)
  hint = cli.cpu_malloc_hint(mode, jax.default_backend(),
                             os.environ.get('LD_PRELOAD', ''))
  if hint:
    logging.info(hint)
  if mode == 'train':
    train.train_and_evaluate(config, workdir)
  elif mode == 'eval':
    if _STEP.value is None:
      checkpoint_eval.evaluate_checkpoints(config, workdir)
    else:
      checkpoint_eval.evaluate_step(config, workdir, _STEP.value)
    if _LAST_K.value:
      checkpoint_eval.last_k(config, workdir, _LAST_K.value)
  else:
    from fasjax import report  # matplotlib only here.
    report.write_report(config, workdir, _STEP.value)
    if jax.process_index() == 0:
      page = os.path.abspath(os.path.join(workdir, 'report', 'index.html'))
      print(f'Report written to {page}', flush=True)


def main(argv):
  debug = _DEBUG.value
  try:
    cli.check_no_positional(argv)
    config = cli.config_value(_CONFIG, ROOT)
    workdir, mode = _WORKDIR.value, _MODE.value
    cli.check_workdir(workdir, mode)
  except cli.UserError as e:
    if debug:
      raise
    cli.fail(str(e))
  created = not os.path.exists(workdir)
  try:
    run(config, workdir, mode)
  except BaseException as e:  # pylint: disable=broad-except
    cli.end_failed_run(e, workdir, created and mode == 'train', debug)
    raise


if __name__ == '__main__':
  app.run(main, flags_parser=cli.flags_parser(__doc__, ROOT))
