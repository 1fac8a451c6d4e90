"""Runs one protocol: train (resuming from the latest checkpoint) or evaluate.

  python launch.py --config=configs/ocm_to_i.py:synthetic --workdir=workdirs/demo
  python launch.py --config=configs/ocm_to_i.py:synthetic --workdir=workdirs/demo --mode=eval
  python launch.py --config=configs/ocm_to_i.py:synthetic --workdir=workdirs/demo --mode=report

Config fields can be overridden, e.g. --config.num_steps=100. Several
processes without a cluster manager (SLURM, Open MPI and TPU pods are
detected): start one per host with --coordinator_address=HOST0:PORT
--num_processes=N --process_id=I.
"""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags
import tensorflow as tf

from fasjax import checkpoint_eval
from fasjax import logs
from fasjax import sharding
from fasjax import train

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Protocol config file, e.g. configs/ocm_to_i.py:synthetic.',
    lock_config=True)
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
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'Several processes without a cluster '
    'manager: host:port of process 0, the same for all processes.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'With '
                                      '--coordinator_address: how many.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'With '
                                   '--coordinator_address: this one, 0-based.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # jax.distributed must start before anything touches a JAX backend; a
  # no-op unless given a coordinator or a multi-process cluster is detected.
  sharding.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                      _PROCESS_ID.value)
  # TensorFlow only feeds data; keep it off any accelerator JAX uses.
  tf.config.set_visible_devices([], 'GPU')
  logs.quiet_library_logs()
  logging.info('JAX devices: %s', jax.devices())
  if jax.default_backend() == 'cpu' and 'malloc' not in os.environ.get(
      'LD_PRELOAD', ''):
    # glibc returns XLA's large temporaries to the kernel after every step;
    # refaulting them cost ~15% of a CPU step (README, Performance).
    logging.info('On CPUs, training runs ~15%% faster with tcmalloc: '
                 'LD_PRELOAD=libtcmalloc_minimal.so.4 TCMALLOC_RELEASE_RATE=0 '
                 '(Debian package libtcmalloc-minimal4).')
  config, workdir = _CONFIG.value, _WORKDIR.value
  if _MODE.value == 'train':
    train.train_and_evaluate(config, workdir)
  elif _MODE.value == 'eval':
    if _STEP.value is None:
      train.evaluate_checkpoints(config, workdir)
    else:
      checkpoint_eval.evaluate_step(config, workdir, _STEP.value)
    if _LAST_K.value:
      checkpoint_eval.last_k(config, workdir, _LAST_K.value)
  else:
    from fasjax import report  # pylint: disable=g-import-not-at-top  # matplotlib only here.
    report.write_report(config, workdir, _STEP.value)


if __name__ == '__main__':
  app.run(main)
