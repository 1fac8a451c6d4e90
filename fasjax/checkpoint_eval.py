"""Evaluation of any saved step, and the last-k average some papers report.

`evaluate_step(config, workdir, step)` restores one kept checkpoint and
recomputes its target (protocol and honest) and source-dev numbers.
`last_k(config, workdir, k)` reports mean ± std of the metrics over the last
k evaluations of a run. Every evaluation is stored in the checkpoints'
history, so the last-k average needs no recomputation and covers evaluated
steps whose checkpoints were pruned.
"""

import os
import statistics
from typing import Any, Sequence

import ml_collections

from fasjax import checkpoint
from fasjax import config_checks
from fasjax import data
from fasjax import evaluate
from fasjax import provenance
from fasjax import train

BLOCKS = ('protocol', 'honest')
METRICS = ('hter', 'auc', 'eer', 'tpr_at_fpr_1pct')


def kept_steps(workdir: str) -> list[int]:
  """The steps whose checkpoints are on disk, ascending."""
  return sorted(checkpoint.manager(workdir).all_steps())


def restore_step(config: ml_collections.ConfigDict, workdir: str, step: int):
  """(nets, state, history) of a kept checkpoint; unknown steps are listed."""
  config_checks.validate(config)
  steps = kept_steps(workdir)
  if step not in steps:
    raise ValueError(f'No checkpoint of step {step} in {workdir}/checkpoints;'
                     f' kept steps: {steps}.')
  nets, _, template = train.build(config)
  state, history = checkpoint.restore(checkpoint.manager(workdir), template,
                                      step)
  return nets, state, history


def evaluate_step(config: ml_collections.ConfigDict, workdir: str, step: int,
                  write: bool = True) -> dict[str, Any]:
  """Re-evaluates one kept step; writes eval_step_<step>.json if `write`."""
  nets, state, _ = restore_step(config, workdir, step)
  # Only the eval sets: building the training stream would cost seconds.
  target = data.eval_sets(config, [config.data.target],
                          list(config.data.target_splits))
  dev = data.eval_sets(config, list(config.data.dev_domains),
                       list(config.data.dev_splits))
  entry = evaluate.evaluate(evaluate.make_predict_fn(nets), state.params,
                            state.batch_stats, step, target, dev)
  result = evaluate.to_json_safe({'target': config.data.target, **entry})
  if write:
    provenance.write_json(os.path.join(workdir, f'eval_step_{step}.json'),
                          result)
  return result


def _mean_std(values: Sequence[float]) -> dict[str, float | None]:
  values = [float(v) for v in values]
  return {'mean': statistics.mean(values),
          'std': statistics.stdev(values) if len(values) > 1 else None}


def last_k_average(history: Sequence[dict[str, Any]], k: int
                   ) -> dict[str, Any]:
  """Mean and sample std of each metric over the last k history entries."""
  if k < 1:
    raise ValueError(f'k must be >= 1, got {k}')
  if not history:
    raise ValueError('no evaluation has been run')
  entries = sorted(history, key=lambda e: e['step'])[-k:]
  result: dict[str, Any] = {'k': len(entries),
                            'steps': [e['step'] for e in entries]}
  for block in BLOCKS:
    result[block] = {m: _mean_std([e[block][m] for e in entries])
                     for m in METRICS}
  if len(entries) < k:
    result['note'] = (f'only {len(entries)} evaluations exist; averaged all '
                      'of them')
  return result


def last_k(config: ml_collections.ConfigDict, workdir: str, k: int,
           write: bool = True) -> dict[str, Any]:
  """The last-k average of a run; writes last_<k>_results.json if `write`."""
  config_checks.validate(config)
  _, _, template = train.build(config)
  restored = checkpoint.restore_latest(checkpoint.manager(workdir), template)
  if restored is None:
    raise FileNotFoundError(f'No checkpoint in {workdir}/checkpoints: train '
                            'first with --mode=train and the same --workdir.')
  result = {'target': config.data.target,
            **last_k_average(restored[1], k)}
  if write:
    provenance.write_json(os.path.join(workdir, f'last_{k}_results.json'),
                          result)
  return result
