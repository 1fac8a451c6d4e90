"""JAX's persistent compilation cache: on by default, so reruns skip compiling.

`config.compilation_cache_dir` names the directory (default: `default_dir()`,
a per-user cache); '' turns the cache off (`--config.compilation_cache_dir=`).
`configure` points JAX at it before the first compile; `watch` tells whether
a compile was answered from the cache. The cache is trusted code: do not
share its directory with users you do not trust (JAX's own warning). It grows
without bound (jax's size limit needs the `filelock` package); delete the
directory to reclaim the space.

JAX is imported inside the functions: configs/common.py reads `default_dir`
before launch.py imports JAX (so --help stays quick).
"""

import contextlib
import dataclasses
import logging
import os
from typing import Iterator

_HIT = '/jax/compilation_cache/cache_hits'
_WRITE = '/jax/compilation_cache/cache_misses'  # Recorded when an entry is written.


def default_dir() -> str:
  """$JAX_COMPILATION_CACHE_DIR if set, else ~/.cache/fasjax/jax_cache."""
  if os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    return os.environ['JAX_COMPILATION_CACHE_DIR']
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'fasjax', 'jax_cache')


def problem(directory: object) -> str | None:
  """Why `directory` cannot hold the cache (None if it can, or is '')."""
  if not isinstance(directory, str):
    return f'must be a directory path or \'\' (off), got {directory!r}'
  if not directory:
    return None
  path = os.path.abspath(os.path.expanduser(directory))
  if os.path.exists(path) and not os.path.isdir(path):
    return (f'{path} is not a directory; name a directory, or turn the '
            'cache off with --config.compilation_cache_dir=')
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    return (f'cannot create {path} ({e.strerror}); name a writable '
            'directory, or turn the cache off with '
            '--config.compilation_cache_dir=')
  if not os.access(path, os.W_OK | os.X_OK):
    return (f'{path} is not writable; name a writable directory, or turn '
            'the cache off with --config.compilation_cache_dir=')
  return None


def configure(directory: str) -> None:
  """Makes JAX cache every compiled program in `directory` ('' = off).

  Call before the first compile of the programs to cache. Every program is
  cached (no minimum compile time or size), so the train step is cached
  even where it compiles in under a second.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jax.experimental.compilation_cache import compilation_cache as cc  # pylint: disable=g-import-not-at-top
  before = (jax.config.jax_enable_compilation_cache,
            jax.config.jax_compilation_cache_dir)
  if directory:
    path = os.path.abspath(os.path.expanduser(directory))
    os.makedirs(path, exist_ok=True)
    jax.config.update('jax_compilation_cache_dir', path)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  jax.config.update('jax_enable_compilation_cache', bool(directory))
  if (jax.config.jax_enable_compilation_cache,
      jax.config.jax_compilation_cache_dir) != before:
    # JAX opens its cache, and decides whether to use one, once per process
    # (at the first compile): a process that has compiled already must
    # start over.
    _reset(cc)


def _reset(cc) -> None:
  """JAX's cache back to unopened, without its INFO line (noise to a user)."""
  jax_log = logging.getLogger('jax._src.compilation_cache')
  level = jax_log.level
  jax_log.setLevel(logging.WARNING)
  try:
    cc.reset_cache()
  finally:
    jax_log.setLevel(level)


def is_enabled() -> bool:
  """Whether JAX will look programs up in a persistent cache."""
  import jax  # pylint: disable=g-import-not-at-top
  return bool(jax.config.jax_enable_compilation_cache
              and jax.config.jax_compilation_cache_dir)


@dataclasses.dataclass
class Lookups:
  """What the compiles inside `watch()` did with the cache."""
  hits: int = 0
  writes: int = 0


@contextlib.contextmanager
def watch() -> Iterator[Lookups]:
  """Counts the cache hits and writes of the compiles inside the block."""
  import jax  # pylint: disable=g-import-not-at-top
  lookups = Lookups()

  def listen(event: str, **unused_kwargs) -> None:
    if event == _HIT:
      lookups.hits += 1
    elif event == _WRITE:
      lookups.writes += 1

  jax.monitoring.register_event_listener(listen)
  try:
    yield lookups
  finally:
    jax.monitoring.unregister_event_listener(listen)


def outcome(lookups: Lookups, seconds: float) -> str:
  """The log's words for one compile: loaded from the cache, or compiled."""
  if lookups.hits:
    return f'loaded from the compilation cache ({seconds:.1f} s)'
  if lookups.writes:
    return f'compiled ({seconds:.1f} s; saved to the compilation cache)'
  if is_enabled():
    return f'compiled ({seconds:.1f} s)'
  return f'compiled ({seconds:.1f} s; compilation cache off)'
