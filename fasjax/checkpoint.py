"""Checkpoints under WORKDIR/checkpoints with orbax, saved synchronously.

Each checkpoint holds the whole `TrainState` (step, params, batch stats,
optimizer state, rng) and, as JSON, the evaluation history up to its step, so
a resumed run continues exactly where the checkpoint left it. Which steps stay
on disk: the latest `keep` plus the steps the protocol and honest rules
currently choose, so `--mode=eval` can always re-evaluate the chosen ones.
Nothing is unpickled: orbax stores arrays in tensorstore/OCDBT and JSON.
"""

import errno
import os
from typing import Any

from absl import logging
import flax
import jax
import orbax.checkpoint as ocp

from fasjax import evaluate
from fasjax import meta


def manager(workdir: str) -> ocp.CheckpointManager:
  """The run's checkpoint manager (we prune ourselves, see `prune`)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir),
                                            'checkpoints'), options=options)


class CheckpointWriteError(RuntimeError):
  """A checkpoint could not be written; earlier checkpoints are intact."""


def save(mngr: ocp.CheckpointManager, state: meta.TrainState,
         history: list[dict[str, Any]]) -> None:
  """Saves state and evaluation history at the state's step.

  Orbax writes into a temporary directory and renames it when complete, so a
  crash or a failed write never leaves a half checkpoint under a step name.
  """
  step = int(jax.device_get(state.step))
  try:
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
        history=ocp.args.JsonSave(evaluate.to_json_safe(history))),
              force=True)
    mngr.wait_until_finished()
  except OSError as e:
    hint = ('the disk is full' if e.errno == errno.ENOSPC else
            'the directory is not writable' if e.errno in (errno.EACCES,
                                                           errno.EROFS,
                                                           errno.EPERM)
            else 'the write failed')
    raise CheckpointWriteError(
        f'Could not save the checkpoint of step {step} in {mngr.directory}: '
        f'{hint} ({e}). The previous checkpoints are intact; free space or '
        'fix the permissions, then rerun the same command to resume.') from e


def restore(mngr: ocp.CheckpointManager, template: meta.TrainState,
            step: int) -> tuple[meta.TrainState, list[dict[str, Any]]]:
  """Restores (state, history) of `step` into the structure of `template`."""
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                        flax.serialization.to_state_dict(template))
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(target),
      history=ocp.args.JsonRestore()))
  state = flax.serialization.from_state_dict(template, restored['state'])
  return state, list(restored['history'] or [])


def restore_latest(mngr: ocp.CheckpointManager, template: meta.TrainState,
                   delete_damaged: bool = False
                   ) -> tuple[meta.TrainState, list[dict[str, Any]]] | None:
  """Restores the newest readable checkpoint, skipping damaged ones.

  A checkpoint that fails to restore (truncated or corrupted files) is
  skipped with a warning naming its step, and the previous one is tried;
  with `delete_damaged` (training, which will write those steps again) the
  skipped ones are deleted. Returns None when there is no checkpoint at all;
  raises when there are checkpoints but none can be read.
  """
  steps = sorted(mngr.all_steps(), reverse=True)
  for step in steps:
    try:
      restored = restore(mngr, template, step)
    except Exception as e:  # pylint: disable=broad-except
      # Orbax and tensorstore raise many types for damaged files.
      logging.warning('Checkpoint of step %d in %s cannot be read (%s: %s); '
                      'skipping it and falling back to an earlier one.', step,
                      mngr.directory, type(e).__name__, str(e)[:300])
      continue
    if delete_damaged:
      for newer in (s for s in steps if s > step):
        mngr.delete(newer)
    return restored
  if steps:
    raise RuntimeError(f'None of the checkpoints {sorted(steps)} in '
                       f'{mngr.directory} can be read; delete the directory '
                       'to start over.')
  return None


def prune(mngr: ocp.CheckpointManager, history: list[dict[str, Any]],
          keep: int) -> None:
  """Deletes checkpoints that are neither among the latest `keep` nor chosen."""
  steps = sorted(mngr.all_steps())
  protected = set(steps[-keep:]) if keep > 0 else set()
  if history:
    chosen = evaluate.select(history)
    protected |= {chosen['protocol']['step'], chosen['honest']['step']}
  for step in steps:
    if step not in protected:
      mngr.delete(step)
