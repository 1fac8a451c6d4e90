"""Metric writers: clu's TensorBoard writer plus a JSON-lines file.

`WORKDIR/metrics.jsonl` gets one object per write: {"step": s, "kind":
"scalars", "values": {...}}; it is the machine-readable log that scripts read.
"""

import json
import logging
import os
from typing import Any, Mapping

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


class _DropLibraryInfo(logging.Filter):
  """Drops INFO records of chatty libraries (orbax logs every file it writes)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno > logging.INFO or not any(
        f'{os.sep}{name}{os.sep}' in record.pathname for name in _CHATTY)


_CHATTY = ('orbax', 'tensorflow_datasets')


def quiet_library_logs() -> None:
  """Keeps orbax's and tfds' INFO lines out of the run's log."""
  handler_filter = _DropLibraryInfo()
  for handler in logging.getLogger().handlers + absl_logging.get_absl_logger().handlers:
    handler.addFilter(handler_filter)
  absl_logging.get_absl_handler().addFilter(handler_filter)


def create_writer(workdir: str) -> metric_writers.MetricWriter:
  """TensorBoard + logging (clu default writer) + WORKDIR/metrics.jsonl.

  In multi-process runs only process 0 writes files; the others only log.
  """
  if jax.process_index() > 0:
    return metric_writers.create_default_writer(workdir, just_logging=True)
  return metric_writers.MultiWriter([
      metric_writers.create_default_writer(workdir, asynchronous=False),
      JsonLinesWriter(os.path.join(workdir, 'metrics.jsonl')),
  ])
