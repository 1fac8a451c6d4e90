"""Checkpoints under WORKDIR/checkpoints with orbax, saved synchronously.

Each checkpoint holds the whole `TrainState` (step, params, batch stats,
optimizer state, rng) and, as JSON, the evaluation history up to its step, so
a resumed run continues exactly where the checkpoint left it. Which steps stay
on disk: the latest `keep` plus the steps the protocol and honest rules
currently choose, so `--mode=eval` can always re-evaluate the chosen ones.
Nothing is unpickled: orbax stores arrays in tensorstore/OCDBT and JSON.
"""

import os
from typing import Any

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


def save(mngr: ocp.CheckpointManager, state: meta.TrainState,
         history: list[dict[str, Any]]) -> None:
  """Saves state and evaluation history at the state's step."""
  step = int(jax.device_get(state.step))
  mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
      history=ocp.args.JsonSave(evaluate.to_json_safe(history))), force=True)
  mngr.wait_until_finished()


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
