"""One training run per workdir, enforced with an OS file lock.

The lock is `fcntl.flock` on WORKDIR/.lock: the kernel releases it when the
holding process dies, however it dies (SIGKILL included), so a lock file left
by a killed run never blocks the next one. The file records the holder's pid
and host for the error message.
"""

import contextlib
import fcntl
import os
import socket
from typing import Iterator


class WorkdirLockedError(RuntimeError):
  """Another live process is training in this workdir."""


class WorkdirUnusableError(RuntimeError):
  """The workdir cannot be created or written."""


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds the workdir's lock for the duration of the block, or raises."""
  path = os.path.join(workdir, '.lock')
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
