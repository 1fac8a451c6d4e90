"""Metric writers, progress with a moving-window ETA, and a quiet log.

`WORKDIR/metrics.jsonl` gets one object per write: {"step": s, "kind":
"scalars", "values": {...}}; it is the machine-readable log that scripts read.

`Progress` replaces clu's ReportProgress, whose ETA divides the remaining
steps by the rate of the last interval only (evaluations inside it make the
ETA swing by a factor of two). `announce_compilation` wraps a jitted step so
that its first call, which compiles, is announced and timed.
`quiet_library_logs` keeps library lines that are not the user's business
out of the run's log.
"""

import collections
import contextlib
import json
import logging
import os
import sys
import time
from typing import Any, Callable, Iterator, Mapping

from absl import logging as absl_logging
from clu import metric_writers
import jax
import numpy as np


class JsonLinesWriter(metric_writers.MetricWriter):
  """Appends scalars (and hparams) as JSON lines; other kinds are ignored."""

  def __init__(self, path: str):
    self._path = path
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)

  def _append(self, record: Mapping[str, Any]) -> None:
    with open(self._path, 'a') as f:
      f.write(json.dumps(record, sort_keys=True) + '\n')

  def write_summaries(self, step, values, metadata=None):
    """Ignored: summaries are TensorBoard-only."""

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Writes one line with all scalars of this step."""
    self._append({'step': int(step), 'kind': 'scalars',
                  'values': {k: float(np.asarray(v)) for k, v in scalars.items()}})

  def write_images(self, step, images):
    """Ignored: images go to TensorBoard only."""

  def write_videos(self, step, videos):
    """Ignored."""

  def write_audios(self, step, audios, *, sample_rate):
    """Ignored."""

  def write_texts(self, step, texts):
    """Ignored."""

  def write_histograms(self, step, arrays, num_buckets=None):
    """Ignored."""

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """Writes the hyper-parameters once, as strings where not JSON-native."""
    self._append({'step': 0, 'kind': 'hparams',
                  'values': {k: v if isinstance(v, (int, float, str, bool))
                             else str(v) for k, v in hparams.items()}})

  def flush(self):
    """Nothing buffered."""

  def close(self):
    """Nothing to close."""


def format_hparams(hparams: Mapping[str, Any]) -> str:
  """One `name = value` line per hyper-parameter, sorted, nested keys dotted."""
  flat: dict[str, Any] = {}

  def walk(prefix: str, node: Mapping[str, Any]) -> None:
    for key, value in node.items():
      name = f'{prefix}{key}'
      if isinstance(value, Mapping) and value:
        walk(name + '.', value)
      else:
        flat[name] = value

  walk('', hparams)
  return '\n'.join(f'{name} = {flat[name]!r}' for name in sorted(flat))


class HparamsBlockLoggingWriter(metric_writers.LoggingWriter):
  """clu's LoggingWriter, but hyper-parameters as a block, one per line.

  clu logs them as one dict on one line (a config is ~60 fields), which
  nobody reads in a log.
  """

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """Logs `Hyper-parameters:` and then the `name = value` lines, indented."""
    block = format_hparams(hparams).replace('\n', '\n  ')
    absl_logging.info('Hyper-parameters:\n  %s', block)


class _DropLibraryInfo(logging.Filter):
  """Drops library records that are not the user's business.

  INFO records of chatty libraries (orbax logs every file it writes, tfds
  every step of a build), and a few messages at any level: tfds warns that a
  dataset it is about to generate has no dataset_info.json yet, and JAX says
  at INFO that it found no TPU on a machine that has none.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    try:
      message = record.getMessage()
    except Exception:  # pylint: disable=broad-except
      message = str(record.msg)
    if any(noise in message for noise in _NOISE):
      return False
    return record.levelno > logging.INFO or not any(
        f'{os.sep}{name}{os.sep}' in record.pathname for name in _CHATTY)


_CHATTY = ('orbax', 'tensorflow_datasets')
_NOISE = ('has no dataset_info.json', 'Unable to initialize backend',
          'Downloading and preparing dataset')
_FILTER = _DropLibraryInfo()


def quiet_library_logs() -> None:
  """Keeps library noise out of the run's log; plain progress off a tty.

  Idempotent. tfds draws progress bars with cursor escapes, which make log
  files unreadable, so they are turned off unless stderr is a terminal.
  """
  for handler in (logging.getLogger().handlers
                  + absl_logging.get_absl_logger().handlers
                  + [absl_logging.get_absl_handler()]):
    if _FILTER not in handler.filters:
      handler.addFilter(_FILTER)
  if not _is_tty(sys.stderr):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    tfds.disable_progress_bar()


def _is_tty(stream) -> bool:
  try:
    return stream.isatty()
  except (AttributeError, ValueError):
    return False


def format_seconds(seconds: float) -> str:
  """'1 h 02 min', '7 min 05 s', '42 s'."""
  seconds = max(0, int(round(seconds)))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f'{hours} h {minutes:02d} min'
  if minutes:
    return f'{minutes} min {secs:02d} s'
  return f'{secs} s'


def announce_compilation(step_fn: Callable[..., Any], name: str = 'train step',
                         log: Callable[..., None] = absl_logging.info
                         ) -> Callable[..., Any]:
  """`step_fn` whose first call is announced and timed.

  The first call of a jitted function compiles it (on a CPU, 10-60 s for the
  meta step), and nothing else is logged meanwhile. The wrapper logs
  'Compiling the train step...' before that call and 'Compiled the train
  step and ran it once in X s.' after its outputs are ready; later calls go
  straight through (no blocking).
  """
  done = False

  def wrapped(*args, **kwargs):
    nonlocal done
    if done:
      return step_fn(*args, **kwargs)
    log('Compiling the %s (first call; on a CPU this takes a while)...', name)
    start = time.monotonic()
    out = jax.block_until_ready(step_fn(*args, **kwargs))
    log('Compiled the %s and ran it once in %.1f s.', name,
        time.monotonic() - start)
    done = True
    return out

  return wrapped


class Progress:
  """Progress lines with an ETA from a moving window of recent steps.

  Call it after every step (`progress(step)`); wrap evaluations and other
  periodic work in `with progress.timed('eval'):`. A line is logged after
  the first step, then every `every_secs` and at the last step:

    step 400/1200 (33%): 1.9 steps/s over the last 50 steps, ETA 7 min 10 s
    (eval: 14% of the time so far)

  The ETA is (remaining steps) x (seconds per step over the last `window`
  steps, timed parts excluded) plus, per timed part, its mean duration times
  how often it has run per step so far times the remaining steps. The last
  step's line says the training steps are done (the final evaluation and
  the results follow), not "100%" with work still to come. If given a
  writer, steps_per_sec is also written as a scalar.
  """

  def __init__(self, num_train_steps: int, writer=None, every_secs: float = 60.0,
               window: int = 50,
               log: Callable[..., None] = absl_logging.info,
               clock: Callable[[], float] = time.monotonic):
    self._total = num_train_steps
    self._writer = writer
    self._every_secs = every_secs
    self._log = log
    self._clock = clock
    self._times = collections.deque(maxlen=window + 1)  # (step, train seconds)
    self._parts: dict[str, list[float]] = collections.defaultdict(list)
    self._timed_total = 0.0
    self._start = None
    self._first_step = None
    self._last_line = None

  def _train_seconds(self, now: float) -> float:
    """Wall seconds since the start minus the time spent in timed parts."""
    return now - self._start - self._timed_total

  def eta_seconds(self, step: int) -> float | None:
    """Seconds left after `step`, or None before two steps were seen."""
    if len(self._times) < 2:
      return None
    (s0, t0), (s1, t1) = self._times[0], self._times[-1]
    if s1 <= s0:
      return None
    per_step = max(t1 - t0, 0.0) / (s1 - s0)
    remaining = self._total - step
    eta = remaining * per_step
    steps_done = max(step - self._first_step + 1, 1)
    for durations in self._parts.values():
      mean = sum(durations) / len(durations)
      eta += mean * len(durations) / steps_done * remaining
    return eta

  def __call__(self, step: int) -> None:
    now = self._clock()
    if self._start is None:
      # The first call follows the first step, compilation included: start
      # the clock here so the window measures steady-state steps.
      self._start, self._first_step = now, step
      self._times.append((step, 0.0))
      self._log('step %d/%d done: the first step (with compilation) is '
                'behind us.', step, self._total)
      self._last_line = now
      return
    self._times.append((step, self._train_seconds(now)))
    due = (now - self._last_line >= self._every_secs or step == self._total)
    if not due:
      return
    self._last_line = now
    (s0, t0), (s1, t1) = self._times[0], self._times[-1]
    rate = (s1 - s0) / (t1 - t0) if t1 > t0 else float('nan')
    if step >= self._total:
      line = (f'step {step}/{self._total}: training steps done '
              f'({rate:.2f} steps/s over the last {s1 - s0} steps); the '
              'final evaluation and the results follow.')
    else:
      eta = self.eta_seconds(step)
      line = (f'step {step}/{self._total} ({100 * step / self._total:.0f}%): '
              f'{rate:.2f} steps/s over the last {s1 - s0} steps, ETA '
              f'{format_seconds(eta) if eta is not None else "unknown"}')
    elapsed = now - self._start
    if self._parts and elapsed > 0:
      line += ' (' + ', '.join(
          f'{name}: {100 * sum(d) / elapsed:.0f}% of the time so far'
          for name, d in sorted(self._parts.items())) + ')'
    self._log('%s', line)
    if self._writer is not None and rate == rate:  # not NaN
      self._writer.write_scalars(step, {'steps_per_sec': rate})

  @contextlib.contextmanager
  def timed(self, name: str) -> Iterator[None]:
    """Times a block (e.g. an evaluation, whose results are host values)."""
    start = self._clock()
    try:
      yield
    finally:
      duration = self._clock() - start
      self._parts[name].append(duration)
      self._timed_total += duration


def create_writer(workdir: str) -> metric_writers.MetricWriter:
  """Logging (hparams as a block), TensorBoard and WORKDIR/metrics.jsonl.

  What clu's default writer does, with `HparamsBlockLoggingWriter` for its
  LoggingWriter. In multi-process runs only process 0 writes files; the
  others only log.
  """
  if jax.process_index() > 0:
    return metric_writers.MultiWriter([HparamsBlockLoggingWriter()])
  return metric_writers.MultiWriter([
      HparamsBlockLoggingWriter(),
      metric_writers.SummaryWriter(workdir),
      JsonLinesWriter(os.path.join(workdir, 'metrics.jsonl')),
  ])
