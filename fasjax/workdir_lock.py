"""One training run per workdir, enforced with an OS file lock.

The lock is `fcntl.flock` on WORKDIR/.lock: the kernel releases it when the
holding process dies, however it dies (SIGKILL included), so a lock file left
by a killed run never blocks the next one. The file records the holder's pid
and host for the error message.

Also the cheap checks that commands run before their slow imports (no JAX,
TensorFlow or orbax here): whether a --workdir can hold a run
(`check_writable`), whether it holds one (`check_run`), and the removal of
what a run that stopped before training left in a workdir it created
(`remove_debris`).
"""

import contextlib
import fcntl
import os
import shutil
import socket
from typing import Iterator


class WorkdirLockedError(RuntimeError):
  """Another live process is training in this workdir."""


class WorkdirUnusableError(RuntimeError):
  """The workdir cannot be created or written."""


class NoRunError(RuntimeError):
  """The workdir holds no run (no saved checkpoint, or no config.json)."""


def check_writable(workdir: str) -> None:
  """Raises WorkdirUnusableError if `workdir` is a file or under one."""
  path = os.path.abspath(workdir)
  while path and not os.path.exists(path):
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  if os.path.exists(path) and not os.path.isdir(path):
    where = ('it is a file' if path == os.path.abspath(workdir)
             else f'it is under the file {path}')
    raise WorkdirUnusableError(
        f'Cannot write to the workdir {workdir}: {where}, not a directory. '
        'Choose a new or existing directory as --workdir.')


def saved_steps(workdir: str) -> list[int]:
  """The steps of the complete checkpoints in WORKDIR/checkpoints."""
  folder = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(folder):
    return []
  return sorted(int(name) for name in os.listdir(folder) if name.isdigit())


def check_run(workdir: str, need_config: bool = False) -> None:
  """Raises NoRunError unless `workdir` holds a trained run.

  A run is a directory with at least one saved checkpoint (and, with
  `need_config`, the config.json that launch.py writes first). Nothing is
  created: orbax would make an empty checkpoints/ folder.
  """
  train_hint = ('train first: python launch.py --config=configs/'
                '<protocol>.py[:args] --workdir=' + workdir)
  if not os.path.exists(workdir):
    raise NoRunError(f'--workdir={workdir} does not exist; {train_hint}')
  if not os.path.isdir(workdir):
    raise NoRunError(f'--workdir={workdir} is a file, not a run directory; '
                     'pass the --workdir a training run used.')
  if need_config and not os.path.isfile(os.path.join(workdir, 'config.json')):
    raise NoRunError(
        f'{os.path.join(workdir, "config.json")} is missing: --workdir must '
        'be the directory of a run started with `python launch.py '
        '--config=... --workdir=...`.')
  if not saved_steps(workdir):
    raise NoRunError(f'No checkpoint in {os.path.join(workdir, "checkpoints")}'
                     f' (no run has saved one there yet); {train_hint}')


# What launch.py writes into a workdir before the first training step.
_DEBRIS_FILES = ('config.json', 'provenance.json', '.lock', 'config.json.tmp',
                 'provenance.json.tmp')


def remove_debris(workdir: str) -> bool:
  """Removes a workdir a run created and stopped in before training.

  Only the files a run writes before its first step are removed (config,
  provenance, lock, an empty or step-less checkpoints/ folder), and the
  directory only if that leaves it empty; anything else stays. Returns
  whether the directory is gone.
  """
  if not os.path.isdir(workdir) or saved_steps(workdir):
    return False
  if not set(os.listdir(workdir)) <= set(_DEBRIS_FILES) | {'checkpoints'}:
    return False  # The run got further (logs, metrics): keep everything.
  for name in _DEBRIS_FILES:
    try:
      os.remove(os.path.join(workdir, name))
    except FileNotFoundError:
      pass
  checkpoints = os.path.join(workdir, 'checkpoints')
  if os.path.isdir(checkpoints):
    # Orbax's unfinished temporaries only; a step folder would have stopped
    # us above.
    for name in os.listdir(checkpoints):
      if '.orbax-checkpoint-tmp' in name:
        shutil.rmtree(os.path.join(checkpoints, name), ignore_errors=True)
    try:
      os.rmdir(checkpoints)
    except OSError:
      return False
  try:
    os.rmdir(workdir)
  except OSError:
    return False
  return True


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds the workdir's lock for the duration of the block, or raises."""
  path = os.path.join(workdir, '.lock')
  check_writable(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise WorkdirUnusableError(
        f'Cannot write to the workdir {workdir} ({e.strerror}: {e.filename}). '
        'Choose a writable --workdir or fix its permissions.') from e
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 200, 0).decode(errors='replace').strip()
      raise WorkdirLockedError(
          f'Another run ({holder or "unknown process"}) is training in '
          f'{workdir}. Wait for it to finish, stop it, or use another '
          '--workdir.') from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'pid {os.getpid()} on {socket.gethostname()}\n'.encode(), 0)
    yield
  finally:
    os.close(fd)  # Closing releases the lock.
