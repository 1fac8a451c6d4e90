"""Evaluation of any saved step, and the last-k average some papers report.

`restore(config, workdir, step=None)` restores a kept step, or the one the
honest rule chose (lowest pooled source-dev EER, `evaluate.select`), reading
the checkpoints' history once; `fasjax.report` and `fasjax.trained` use it.
`evaluate_checkpoints(config, workdir)` re-evaluates every kept, evaluated
checkpoint and writes eval_results.json (the numbers of results.json).
`evaluate_step(config, workdir, step)` restores one kept checkpoint and
recomputes its target (protocol and honest) and source-dev numbers, data-
parallel over every visible device as training evaluates.
`last_k(config, workdir, k)` reports mean ± std of the metrics over the last
k evaluations of a run. Every evaluation is stored in the checkpoints'
history, so the last-k average needs no recomputation and covers evaluated
steps whose checkpoints were pruned.
"""

import dataclasses
import statistics
from typing import Any, Sequence

import jax
import ml_collections

from fasjax import checkpoint
from fasjax import config_checks
from fasjax import data
from fasjax import evaluate
from fasjax import meta
from fasjax import sharding
from fasjax import train

BLOCKS = ('protocol', 'honest')
METRICS = ('hter', 'auc', 'eer', 'tpr_at_fpr_1pct')


class RunNotUsableError(RuntimeError):
  """The workdir holds no checkpoint (or no evaluation) that the call needs."""


@dataclasses.dataclass(frozen=True)
class Restored:
  """A restored checkpoint with the run's evaluation history."""
  nets: meta.Networks
  state: meta.TrainState
  step: int
  history: list[dict[str, Any]]
  honest: dict[str, Any] | None  # evaluate.select's honest block, if chosen.


def _restore_latest(config: ml_collections.ConfigDict, workdir: str,
                    mesh: jax.sharding.Mesh | None):
  """(nets, restore template, manager, latest state, history)."""
  config_checks.validate(config)
  nets, _, template = train.build(config)
  if mesh is not None:
    template = sharding.replicate(template, mesh)
  mngr = checkpoint.manager(workdir)
  restored = checkpoint.restore_latest(mngr, template)
  if restored is None:
    raise RunNotUsableError(
        f'No checkpoint in {mngr.directory}: train first with '
        '`python launch.py --mode=train` and the same --workdir.')
  return (nets, template, mngr, *restored)


def restore(config: ml_collections.ConfigDict, workdir: str,
            step: int | None = None,
            mesh: jax.sharding.Mesh | None = None) -> Restored:
  """A kept step, or the honest rule's when `step` is None.

  Restores the latest checkpoint (whose history lists every evaluation) and
  restores again only if the wanted step is an older one. With `mesh` the
  state is replicated over it (orbax restores into the template's
  sharding); without, it lands on the default device.
  """
  nets, template, mngr, latest, history = _restore_latest(config, workdir,
                                                         mesh)
  honest = None
  if step is None:
    if not history:
      raise RunNotUsableError(
          f'The run in {workdir} has not been evaluated yet, so the honest '
          'rule has chosen nothing: train until the first evaluation '
          '(config.eval_every).')
    honest = evaluate.select(history)['honest']
    step = int(honest['step'])
  kept = sorted(mngr.all_steps())
  if step == int(latest.step):
    state = latest
  elif step in kept:
    state, _ = checkpoint.restore(mngr, template, step)
  else:
    chosen = 'chosen by the honest rule, ' if honest is not None else ''
    raise RunNotUsableError(
        f'No checkpoint of step {step} ({chosen}in {mngr.directory}); kept '
        f'steps: {kept}.')
  return Restored(nets, state, step, history, honest)


def evaluate_checkpoints(config: ml_collections.ConfigDict,
                         workdir: str) -> dict[str, Any]:
  """Re-evaluates the kept, evaluated checkpoints; writes eval_results.json."""
  mesh = train.data_mesh()
  nets, template, mngr, latest_state, history = _restore_latest(
      config, workdir, mesh)
  latest = int(latest_state.step)
  evaluated = {entry['step'] for entry in history}
  steps = [s for s in sorted(mngr.all_steps()) if s in evaluated]
  run_data = data.make(config, start_step=0)
  predict_fn = sharding.make_predict_fn(nets, mesh)
  fresh = []
  for step in steps:
    state = (latest_state if step == latest
             else checkpoint.restore(mngr, template, step)[0])
    fresh.append(evaluate.evaluate(predict_fn, state.params, state.batch_stats,
                                   step, run_data.target, run_data.dev))
  result = evaluate.results(fresh, config.data.target, latest)
  train.write_record(workdir, 'eval_results.json', result)
  return result


def evaluate_step(config: ml_collections.ConfigDict, workdir: str, step: int,
                  write: bool = True) -> dict[str, Any]:
  """Re-evaluates one kept step; writes eval_step_<step>.json if `write`."""
  mesh = sharding.make_mesh()
  run = restore(config, workdir, step, mesh)
  # Only the eval sets: building the training stream would cost seconds.
  target = data.eval_sets(config, [config.data.target],
                          list(config.data.target_splits))
  dev = data.eval_sets(config, list(config.data.dev_domains),
                       list(config.data.dev_splits))
  entry, target_videos = evaluate.evaluate_with_scores(
      sharding.make_predict_fn(run.nets, mesh), run.state.params,
      run.state.batch_stats, step, target, dev)
  result = evaluate.to_json_safe({'target': config.data.target, **entry})
  if write:
    train.write_record(workdir, f'eval_step_{step}.json', result)
    train.write_record(workdir, f'target_scores_step{step}.json',
                       evaluate.video_scores_json(target_videos), log=False)
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
  history = _restore_latest(config, workdir, mesh=None)[-1]
  result = {'target': config.data.target, **last_k_average(history, k)}
  if write:
    train.write_record(workdir, f'last_{k}_results.json', result)
  return result
