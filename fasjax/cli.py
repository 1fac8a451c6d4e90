"""Command-line plumbing shared by launch.py: --help, one-line user errors.

Also the checks that run before the heavy imports (config file, workdir).
Mistakes a user can fix end with one `error: ...` line on stderr and exit
status 2 (`fail`); --debug shows the traceback instead. This module imports
only the standard library, absl, ml_collections, `configs.common` and
`fasjax.workdir_lock`, so --help and these errors answer without JAX or
TensorFlow; the modules that define the known run-time errors are imported
inside `known_errors`, after a run has started.
"""

import difflib
import glob
import os
import re
import sys
from typing import Callable, Optional, Sequence

from absl import flags
from ml_collections import config_flags

from configs import common  # ml_collections only
from fasjax import workdir_lock  # standard library only

USER_ERROR_STATUS = 2
HELP_ARGS = ('-h', '--help', '-?', '--helpshort', '--helpfull')
_DEBUG_ARGS = ('--debug', '--debug=true', '--debug=True', '--debug=1')


class UserError(Exception):
  """A mistake the user can fix; the message says how."""


def fail(message: str) -> None:
  """Ends the program with `error: message` on stderr and status 2."""
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(USER_ERROR_STATUS)


def protocols(root: str) -> list[str]:
  """The protocol names: ROOT/configs/<name>.py, less common.py and _*.py."""
  return sorted(os.path.basename(p)[:-3]
                for p in glob.glob(os.path.join(root, 'configs', '*.py'))
                if not os.path.basename(p).startswith(('_', 'common')))


def arguments_help(common_doc: Optional[str]) -> str:
  """The 'Arguments:' block of configs/common.py's docstring, retitled."""
  doc = common_doc or ''
  start = doc.find('Arguments:')
  if start < 0:
    return ''
  block = doc[start:].split('\n\n')[0]
  return block.replace('Arguments:', 'Config arguments (comma separated '
                       'after the colon, e.g. :synthetic,seed=1):')


def usage(doc: Optional[str], root: str) -> str:
  """The --help text: the launcher's docstring, protocols, config arguments."""
  return (f'{doc}\nProtocols (configs/<name>.py): '
          f'{", ".join(protocols(root))}\n\n{arguments_help(common.__doc__)}\n')


def help_requested(argv: Sequence[str]) -> bool:
  """Whether argv (program name first) asks for --help in any spelling."""
  return any(a in HELP_ARGS for a in argv[1:])


def debug_requested(argv: Sequence[str]) -> bool:
  """Whether argv turns --debug on (read before absl has parsed it)."""
  return any(a in _DEBUG_ARGS for a in argv)


def suggest_config_argument(message: str) -> str:
  """Adds the closest valid name to common.py's unknown-argument error."""
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


def override_error_message(error: Exception, argv: Sequence[str]) -> str:
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


def parse_flags(argv: list[str], doc: Optional[str], root: str,
                flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """absl's parsing with --help exiting 0 and one-line flag errors."""
  if help_requested(argv):
    print(usage(doc, root))
    print(flag_values.get_help() if '--helpfull' in argv[1:] else
          'Flags:\n' + flag_values.main_module_help())
    sys.exit(0)
  try:
    return flag_values(argv)
  except flags.Error as e:
    if debug_requested(argv):
      raise
    fail(f'{flag_error_message(e)} (python launch.py --help lists the '
         'protocols, config arguments and flags)')
  except (AttributeError, KeyError) as e:
    # config_flags: an override of a field the config does not have.
    if debug_requested(argv):
      raise
    fail(override_error_message(e, argv))
  return argv  # not reached


def flags_parser(doc: Optional[str],
                 root: str) -> Callable[[list[str]], list[str]]:
  """`parse_flags` for app.run's flags_parser, with the --help text's inputs."""
  return lambda argv: parse_flags(argv, doc, root)


def check_no_positional(argv: Sequence[str]) -> None:
  """Raises UserError for arguments left after the flags (argv[0] excepted)."""
  if len(argv) > 1:
    raise UserError(f'unexpected arguments {list(argv[1:])}: every option is '
                    'a --flag (python launch.py --help)')


def check_config_file(filename: str, root: str) -> None:
  """Raises UserError when the --config file (before its ':') does not exist."""
  filename = filename.split(':')[0]
  if not os.path.isfile(filename):
    raise UserError(
        f'--config: no file {filename}. Protocols: configs/<name>.py with '
        f'<name> one of {", ".join(protocols(root))} (run from the repository '
        'root, or give the path).')


def config_value(config_flag: flags.FlagHolder, root: str):
  """The parsed --config; a missing config file is a UserError."""
  check_config_file(
      config_flags.get_config_filename(flags.FLAGS[config_flag.name]), root)
  return config_flag.value


def check_workdir(workdir: str, mode: str) -> None:
  """What can be checked before the slow imports; raises UserError."""
  try:
    workdir_lock.check_writable(workdir)
    if mode in ('eval', 'report'):
      workdir_lock.check_run(workdir)
  except (workdir_lock.WorkdirUnusableError, workdir_lock.NoRunError) as e:
    raise UserError(str(e)) from e


def known_errors() -> tuple[type[BaseException], ...]:
  """Exceptions whose message tells the user what to do (imports JAX)."""
  # pylint: disable=g-import-not-at-top
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


def is_lead_process() -> bool:
  """JAX process 0, or True when JAX was never imported or cannot tell."""
  if 'jax' not in sys.modules:
    return True
  import jax  # pylint: disable=g-import-not-at-top
  try:
    return jax.process_index() == 0
  except Exception:  # pylint: disable=broad-except
    return True


def end_failed_run(error: BaseException, workdir: str, created: bool,
                   debug: bool) -> None:
  """After a run raised: removes debris, and fails in one line if known.

  A train run that stopped before its first checkpoint leaves nothing in a
  workdir it created (config.json, provenance.json, checkpoints/, .lock);
  `created` says the workdir was new and the mode was train. Returns (for the
  caller to re-raise) unless the error is a known one and not --debug.
  """
  if created and is_lead_process():
    workdir_lock.remove_debris(workdir)
  if not debug and isinstance(error, Exception):
    try:
      known = known_errors()
    except Exception:  # pylint: disable=broad-except  # an import failed
      known = (UserError,)
    if isinstance(error, known):
      fail(str(error))


def cpu_malloc_hint(mode: str, backend: str, ld_preload: str) -> Optional[str]:
  """The tcmalloc advice for training on CPUs without it, else None."""
  if mode != 'train' or backend != 'cpu' or 'malloc' in ld_preload:
    return None
  # glibc returns XLA's large temporaries to the kernel after every step;
  # refaulting them cost ~15% of a CPU step (docs/performance.md).
  return ('On CPUs, training runs ~15% faster with tcmalloc: '
          'LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4'
          ' TCMALLOC_RELEASE_RATE=0 (Debian package libtcmalloc-minimal4).')
