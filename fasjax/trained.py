"""A finished (or running) training run as a model: networks, weights, threshold.

`load(workdir)` needs only the run directory: the config comes from
WORKDIR/config.json (written when the run started), the checkpoint and the
decision threshold from the honest rule (`evaluate.select`): the checkpoint
with the lowest pooled source-dev EER and that dev EER threshold. The target
domain never chooses anything, so the threshold is one a deployment could
have used. `fasjax.predict` and `fasjax.export` are built on it.
"""

import dataclasses
import json
import math
import os
from typing import Any

import ml_collections

from fasjax import checkpoint_eval
from fasjax import compilation_cache
from fasjax import meta

PyTree = Any
# Config fields added after some runs were recorded, with the value those
# runs used.
_LATER_MODEL_FIELDS = {'conv_impl': 'xla', 'dtype': 'float32'}


# The workdir holds no run that can score faces yet.
RunNotUsableError = checkpoint_eval.RunNotUsableError


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  """What scoring needs: networks, weights, input size and the threshold."""
  config: ml_collections.ConfigDict
  nets: meta.Networks
  params: PyTree
  batch_stats: PyTree
  step: int
  threshold: float  # decide live when P(live) >= threshold
  selection: dict[str, Any]  # evaluate.select()'s honest block (metrics)

  @property
  def image_size(self) -> int:
    """Side S of the model input."""
    return int(self.config.model.image_size)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config from WORKDIR/config.json."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise RunNotUsableError(
        f'{path} is missing: --workdir must be the directory of a run '
        'started with `python launch.py --config=... --workdir=...`.')
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  for key, value in _LATER_MODEL_FIELDS.items():
    if key not in config.model:
      config.model[key] = value
  # The training machine's cache directory means nothing here.
  if 'compilation_cache_dir' in config:
    config.compilation_cache_dir = compilation_cache.default_dir()
  return config


def load(workdir: str) -> TrainedModel:
  """Restores the honest rule's checkpoint of a run and its threshold."""
  config = load_config(workdir)
  run = checkpoint_eval.restore(config, workdir)
  return TrainedModel(config=config, nets=run.nets, params=run.state.params,
                      batch_stats=run.state.batch_stats, step=run.step,
                      threshold=float(run.honest['threshold']),
                      selection=run.honest)


def decide(p_live: float, threshold: float) -> str:
  """'live' when P(live) reaches the threshold, else 'spoof'."""
  if math.isnan(p_live):
    raise ValueError('P(live) is NaN')
  return 'live' if p_live >= threshold else 'spoof'
