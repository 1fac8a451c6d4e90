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

import difflib
import glob
import os
import re
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from configs import common  # ml_collections only
from fasjax import workdir_lock  # standard library only

ROOT = os.path.dirname(os.path.abspath(__file__))
USER_ERROR_STATUS = 2


def _protocols() -> list[str]:
  return sorted(os.path.basename(p)[:-3]
                for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
                if not os.path.basename(p).startswith(('_', 'common')))


def _arguments_help() -> str:
  """The 'Arguments:' block of configs/common.py's docstring."""
  doc = common.__doc__ or ''
  start = doc.find('Arguments:')
  if start < 0:
    return ''
  block = doc[start:].split('\n\n')[0]
  return block.replace('Arguments:', 'Config arguments (comma separated '
                       'after the colon, e.g. :synthetic,seed=1):')


def usage() -> str:
  """launch.py --help: what the module docstring says, protocols, arguments."""
  return (f'{__doc__}\nProtocols (configs/<name>.py): '
          f'{", ".join(_protocols())}\n\n{_arguments_help()}\n')


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

_HELP_ARGS = ('-h', '--help', '-?', '--helpshort', '--helpfull')


class UserError(Exception):
  """A mistake the user can fix; the message says how."""


def fail(message: str) -> None:
  """Ends the program with `error: message` on stderr and status 2."""
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(USER_ERROR_STATUS)


def _debug_requested(argv) -> bool:
  return any(a in ('--debug', '--debug=true', '--debug=True', '--debug=1')
             for a in argv)


def suggest_config_argument(message: str) -> str:
  """Adds the closest valid name to configs/common.py's unknown-argument error."""
  match = re.search(r"Unknown config argument '([^']*)'", message)
  if not match:
    return message
  name = match.group(1).partition('=')[0]
  valid = list(common.FLAGS) + list(common.VALUED)
  close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
  if not close:
    return message
  suggestion = close[0] + ('=N' if close[0] in common.VALUED else '')
  return message.replace(match.group(0),
                         f'{match.group(0)} (did you mean {suggestion!r}?)', 1)


def flag_error_message(error: Exception) -> str:
  """One line from absl's flag error (which may embed a whole traceback)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  if not lines:
    return str(error)
  last = lines[-1]
  if len(lines) > 1 and 'Traceback' in str(error):
    # config_flags embeds the config file's traceback; its last line is
    # "ValueError: <the config's own message>".
    last = re.sub(r'^[A-Za-z_.]*(Error|Exception): ', '', last)
    return suggest_config_argument(f'--config: {last}')
  return ' '.join(lines)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing with --help exiting 0 and one-line flag errors."""
  if any(a in _HELP_ARGS for a in argv[1:]):
    print(usage())
    full = '--helpfull' in argv[1:]
    print(flags.FLAGS.get_help() if full else
          'Flags:\n' + flags.FLAGS.main_module_help())
    sys.exit(0)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    if _debug_requested(argv):
      raise
    fail(f'{flag_error_message(e)} (python launch.py --help lists the '
         'protocols, config arguments and flags)')
  except (AttributeError, KeyError) as e:
    # config_flags: an override of a field the config does not have.
    if _debug_requested(argv):
      raise
    fail(override_error_message(e, argv))
  return argv  # not reached


def override_error_message(error: Exception, argv: list[str]) -> str:
  """'--config.num_step: no such config field (did you mean num_steps?)'."""
  text = str(error.args[0] if error.args else error)
  close = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', text)
  if close:
    name, hint = close.group(2), f' (did you mean {close.group(1)}?)'
  else:
    found = re.search(r'[A-Za-z_][A-Za-z0-9_]*', text)
    name, hint = (found.group(0) if found else text), ''
  flag = next((a.split('=')[0] for a in argv
               if a.startswith('--config.')
               and a.split('=')[0].endswith(f'.{name}')), f'--config...{name}')
  return (f'{flag}: the config has no field {name!r}{hint}. Fields are '
          'listed in configs/common.py.')


def _config():
  """The parsed config; a missing config file is a UserError."""
  filename = config_flags.get_config_filename(flags.FLAGS['config'])
  filename = filename.split(':')[0]
  if not os.path.isfile(filename):
    raise UserError(
        f'--config: no file {filename}. Protocols: configs/<name>.py with '
        f'<name> one of {", ".join(_protocols())} (run from the repository '
        'root, or give the path).')
  return _CONFIG.value


def check_workdir(workdir: str, mode: str) -> None:
  """What can be checked before the slow imports; raises UserError."""
  try:
    workdir_lock.check_writable(workdir)
    if mode in ('eval', 'report'):
      workdir_lock.check_run(workdir)
  except (workdir_lock.WorkdirUnusableError, workdir_lock.NoRunError) as e:
    raise UserError(str(e)) from e


def _known_errors() -> tuple[type[BaseException], ...]:
  """Exceptions whose message tells the user what to do (imports JAX)."""
  from fasjax import checkpoint
  from fasjax import checkpoint_eval
  from fasjax import config_checks
  from fasjax import input_pipeline
  from fasjax import train
  return (UserError, config_checks.ConfigError,
          input_pipeline.DatasetNotPreparedError,
          workdir_lock.WorkdirLockedError, workdir_lock.WorkdirUnusableError,
          workdir_lock.NoRunError, checkpoint_eval.RunNotUsableError,
          checkpoint.CheckpointWriteError, train.NonFiniteLossError,
          train.DeviceOutOfMemoryError)


def run(config, workdir: str, mode: str) -> None:
  """Imports the heavy modules and runs the mode."""
  import jax
  import tensorflow as tf

  from fasjax import checkpoint_eval
  from fasjax import config_checks
  from fasjax import data
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
  data.check_prepared(config)
  logging.info('JAX devices: %s', jax.devices())
  if mode == 'train' and jax.default_backend() == 'cpu' and (
      'malloc' not in os.environ.get('LD_PRELOAD', '')):
    # glibc returns XLA's large temporaries to the kernel after every step;
    # refaulting them cost ~15% of a CPU step (README, Performance).
    logging.info('On CPUs, training runs ~15% faster with tcmalloc: '
                 'LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4'
                 ' TCMALLOC_RELEASE_RATE=0 (Debian package '
                 'libtcmalloc-minimal4).')
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


def _is_lead_process() -> bool:
  if 'jax' not in sys.modules:
    return True
  import jax
  try:
    return jax.process_index() == 0
  except Exception:  # pylint: disable=broad-except
    return True


def main(argv):
  debug = _DEBUG.value
  try:
    if len(argv) > 1:
      raise UserError(f'unexpected arguments {argv[1:]}: every option is a '
                      '--flag (python launch.py --help)')
    config, workdir, mode = _config(), _WORKDIR.value, _MODE.value
    check_workdir(workdir, mode)
  except UserError as e:
    if debug:
      raise
    fail(str(e))
  created = not os.path.exists(workdir)
  try:
    run(config, workdir, mode)
  except BaseException as e:  # pylint: disable=broad-except
    # A run that stopped before its first checkpoint leaves nothing in a
    # workdir it created (config.json, provenance.json, checkpoints/, .lock).
    if created and mode == 'train' and _is_lead_process():
      workdir_lock.remove_debris(workdir)
    if not debug and isinstance(e, Exception):
      try:
        known = _known_errors()
      except Exception:  # pylint: disable=broad-except  # an import failed
        known = (UserError,)
      if isinstance(e, known):
        fail(str(e))
    raise


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
