"""Training and checkpointed evaluation of one protocol run.

`train_and_evaluate(config, workdir)` trains with the jitted meta step,
evaluates every `eval_every` steps (target + source dev), checkpoints, resumes
from the latest checkpoint in WORKDIR/checkpoints, and writes
WORKDIR/results.json (`fasjax.checkpoint_eval.evaluate_checkpoints`
recomputes them from the kept checkpoints).

Training runs data-parallel over every visible device (`fasjax.sharding`):
the state is replicated, each train batch is split along its per-domain batch
axis (the step runs under `jax.shard_map`) and each eval batch along its
rows. In multi-process runs process 0 holds
the workdir lock and writes the run's records; all processes checkpoint
(orbax coordinates them).
"""

import contextlib
import json
import math
import os
import time
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np

from fasjax import checkpoint
from fasjax import compilation_cache
from fasjax import compile_options
from fasjax import config_checks
from fasjax import data
from fasjax import evaluate
from fasjax import logs
from fasjax import meta
from fasjax import model_setup
from fasjax import provenance
from fasjax import sharding
from fasjax import workdir_lock

# Re-exported: callers build runs through `train` as before.
build = model_setup.build
build_networks = model_setup.build_networks
build_optimizer = model_setup.build_optimizer
jit_init_state = model_setup.jit_init_state


class NonFiniteLossError(RuntimeError):
  """Raised when the training loss stops being finite."""


class DeviceOutOfMemoryError(RuntimeError):
  """Raised when the train step does not fit the device's memory."""


# jax >= 0.4.36 names XLA's runtime error JaxRuntimeError.
_RUNTIME_ERRORS = tuple(getattr(jax.errors, name) for name in
                        ('JaxRuntimeError', 'XlaRuntimeError')
                        if hasattr(jax.errors, name)) or (RuntimeError,)


def is_out_of_memory(error: BaseException) -> bool:
  """Whether an XLA runtime error is a failed device allocation."""
  text = str(error)
  return isinstance(error, _RUNTIME_ERRORS) and (
      'RESOURCE_EXHAUSTED' in text or 'Out of memory' in text)


def out_of_memory_message(peak_bytes: float | None, remat: str,
                          devices: int) -> str:
  """What to do when the step does not fit (docs/accelerators.md)."""
  peak = ('unknown' if peak_bytes is None
          else f'{peak_bytes / 1e9:.1f} GB per device')
  return (f'The train step ran out of device memory (XLA\'s estimate of its '
          f'peak: {peak}; model.remat={remat!r}, {devices} device(s)). '
          'Options: a policy that keeps less, --config.model.remat=domains '
          '(least memory) or conv; more devices (the batch is split '
          'over all visible devices); bfloat16 compute, '
          '--config.model.dtype=bfloat16; or a smaller '
          '--config.data.per_class_batch. docs/accelerators.md#memory lists '
          'the memory of each policy.')


def compile_train_step(train_step: Any, state: meta.TrainState,
                       batch: Any, options: dict[str, Any] | None = None
                       ) -> tuple[Any, float | None]:
  """The compiled step and XLA's estimate of its peak bytes per device.

  `options`: XLA compile options (`compile_options.for_backend`).
  """
  logging.info('Compiling the train step%s...',
               f' (options: {options})' if options else '')
  t0 = time.time()
  lowered = train_step.lower(state, batch)
  t1 = time.time()
  with compilation_cache.watch() as lookups:
    compiled = lowered.compile(compiler_options=options or None)
  done = compilation_cache.outcome(lookups, time.time() - t1)
  peak = None
  memory = compiled.memory_analysis()
  if memory is not None:
    peak = (memory.argument_size_in_bytes + memory.output_size_in_bytes
            + memory.temp_size_in_bytes - memory.alias_size_in_bytes)
  logging.info('Train step traced (%.1f s) and %s; XLA\'s estimate of its '
               'peak memory: %s per device.', t1 - t0, done,
               'unknown' if peak is None else f'{peak / 1e9:.2f} GB')
  return compiled, peak


def _first_non_finite(steps: list[int], losses: list[Any]) -> int | None:
  for step, loss in zip(steps, losses):
    if not math.isfinite(float(loss)):
      return step
  return None


def _is_due(step: int, every: int, last: int) -> bool:
  return step == last or (every > 0 and step % every == 0)


def is_lead() -> bool:
  """Whether this process writes the run's files (the others would race)."""
  return jax.process_index() == 0


def write_record(workdir: str, name: str, value: dict[str, Any],
                 log: bool = True) -> None:
  """Writes WORKDIR/name as JSON from the lead process; logs it everywhere."""
  if is_lead():
    provenance.write_json(os.path.join(workdir, name), value)
  if log:
    logging.info('%s: %s', name, json.dumps(value))


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict[str, Any]:
  """Trains (resuming if possible), evaluates, and writes results.json."""
  config_checks.validate(config)
  if 'compilation_cache_dir' in config:  # Absent from older configs.
    compilation_cache.configure(config.compilation_cache_dir)
  lock = (workdir_lock.hold(workdir) if is_lead()
          else contextlib.nullcontext())
  with lock:
    return _train_and_evaluate(config, workdir)


def data_mesh() -> jax.sharding.Mesh:
  """The mesh over every device, logged."""
  mesh = sharding.make_mesh()
  logging.info('Data-parallel over %d devices (%d processes).',
               mesh.devices.size, jax.process_count())
  return mesh


def _train_and_evaluate(config: ml_collections.ConfigDict,
                        workdir: str) -> dict[str, Any]:
  if is_lead():
    provenance.record(workdir, config)
  mesh = data_mesh()
  nets, tx, state = build(config)
  conv_impl, why = model_setup.resolve_conv_impl(config.model.conv_impl,
                                                 config.model.width)
  logging.info('Convolutions: %s (%s); rematerialisation: %s.', conv_impl,
               why, config.model.get('remat', 'none'))
  # Replicated before the restore too: orbax restores into the template's
  # sharding, which must span every process's devices.
  state = sharding.replicate(state, mesh)
  mngr = checkpoint.manager(workdir)
  history: list[dict[str, Any]] = []
  restored = checkpoint.restore_latest(mngr, state, delete_damaged=True)
  if restored is not None:
    state, history = restored
    state = sharding.replicate(state, mesh)
    logging.info('Resumed from checkpoint at step %d.', int(state.step))
  start = int(state.step)
  run_data = data.make(config, start_step=start)

  writer = logs.create_writer(workdir)
  if start == 0:
    writer.write_hparams(config.to_dict())
  report = logs.Progress(config.num_steps, writer=writer)
  # The old state is never read after a step (checkpoints are saved
  # synchronously), so its buffers are donated to the new one.
  train_step = sharding.jit_train_step(nets, tx, mesh, donate=True)
  predict_fn = sharding.make_predict_fn(nets, mesh)
  pending_steps: list[int] = []
  pending_metrics: list[dict[str, Any]] = []

  def check_and_log(step: int) -> None:
    bad = _first_non_finite(pending_steps,
                            [m['loss'] for m in pending_metrics])
    if bad is not None:
      raise NonFiniteLossError(
          f'The training loss became non-finite at step {bad}; the run '
          f'stopped. The last good checkpoint is kept in {mngr.directory}. '
          'Lower optim.lr or check the data, then rerun to resume.')
    if pending_metrics:
      mean = jax.tree.map(lambda *xs: float(np.mean(xs)), *pending_metrics)
      mean.pop('meta_test_domain', None)
      writer.write_scalars(step, {f'train/{k}': v for k, v in mean.items()})
    pending_steps.clear()
    pending_metrics.clear()

  train_iter = run_data.train.as_numpy_iterator()
  t0 = time.time()
  for step in range(start + 1, config.num_steps + 1):
    with jax.profiler.StepTraceAnnotation('train', step_num=step):
      batch = sharding.global_train_batch(next(train_iter), mesh)
      if step == start + 1:
        train_step, peak = compile_train_step(
            train_step, state, batch,
            compile_options.for_backend(config, jax.default_backend()))
        try:
          state, step_metrics = train_step(state, batch)
        except _RUNTIME_ERRORS as e:
          if not is_out_of_memory(e):
            raise
          raise DeviceOutOfMemoryError(out_of_memory_message(
              peak, config.model.get('remat', 'none'),
              mesh.devices.size)) from e
      else:
        state, step_metrics = train_step(state, batch)
    pending_steps.append(step)
    pending_metrics.append(step_metrics)
    report(step)
    last = config.num_steps
    if _is_due(step, config.log_every, last):
      check_and_log(step)
    evaluate_now = _is_due(step, config.eval_every, last)
    if evaluate_now or _is_due(step, config.checkpoint_every, last):
      check_and_log(step)  # Never save a non-finite state.
      if evaluate_now:
        with report.timed('eval'):
          entry, target_videos = evaluate.evaluate_with_scores(
              predict_fn, state.params, state.batch_stats, step,
              run_data.target, run_data.dev)
        history.append(entry)
        write_record(workdir, f'target_scores_step{step}.json',
                     evaluate.video_scores_json(target_videos), log=False)
        writer.write_scalars(step, {
            'eval/protocol_hter': entry['protocol']['hter'],
            'eval/auc': entry['protocol']['auc'],
            'eval/honest_hter': entry['honest']['hter'],
            'eval/dev_eer': entry['dev']['eer']})
      checkpoint.save(mngr, state, history)
      checkpoint.prune(mngr, history, config.keep_checkpoints)
  writer.flush()
  logging.info('Training took %.1f s.', time.time() - t0)
  result = evaluate.results(history, config.data.target, int(state.step))
  write_record(workdir, 'results.json', result)
  return result
