"""Options for compiling the train step: how hard XLA optimises, per backend.

`config.exec_time_optimization_effort` is JAX's compile option of that name
(XLA's `ExecutableBuildOptions`, range [-1, 1], 0 = the compiler's default):
how much compile time the compiler may spend on making the program run
faster. None (the default) takes `DEFAULT_EFFORT` for the backend:

- TPU: -1. libtpu spends most of its time on the meta step's optimisation
  passes (the step is large: second-order gradients of a conv net), not on
  fitting it in memory; at -1 the paper step (`remat=domains`, one v5e chip)
  compiles in about a tenth of the CPU time (908 -> 84 CPU s here). The cost, from libtpu's own analyses
  of the compiled step, is in docs/compile_time.md; with the persistent
  compilation cache (fasjax/compilation_cache.py) a rerun pays no compile
  at all, so set 0 for a long run whose first compile you do not mind.
- Others: 0 (XLA:CPU and XLA:GPU compile the step in well under a minute).
"""

from typing import Any

import ml_collections

DEFAULT_EFFORT = {'tpu': -1.0}


def exec_time_effort(config: ml_collections.ConfigDict, backend: str) -> float:
  """The run's effort: the config's value, or the backend's default."""
  value = config.get('exec_time_optimization_effort', None)
  return DEFAULT_EFFORT.get(backend, 0.0) if value is None else float(value)


def for_backend(config: ml_collections.ConfigDict,
                backend: str) -> dict[str, Any]:
  """`.compile(compiler_options=...)` for the train step on `backend`."""
  effort = exec_time_effort(config, backend)
  # 0 is the compiler's default: pass nothing (the cache key stays as before).
  return {'exec_time_optimization_effort': effort} if effort else {}


def problem(value: Any) -> str | None:
  """Why `value` cannot be the effort (None if it can)."""
  if value is None:
    return None
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return f'must be a number in [-1, 1] or None (per backend), got {value!r}'
  if not -1.0 <= value <= 1.0:
    return (f'must be in [-1, 1] (-1: compile fastest, 0: XLA\'s default, '
            f'1: optimise hardest), got {value}')
  return None
