"""Data-parallel train and eval steps over every visible device (jax.sharding).

`train.train_and_evaluate` and `checkpoint_eval` run through these
helpers: one 1-D mesh, axis 'data', over all devices of all processes.
Parameters, batch statistics and optimizer state are replicated; batches are
split along their per-domain batch axis:

- train batches are [D, B, ...]: the *B* axis is sharded, the domain axis is
  not. The step runs under `jax.shard_map` (`jit_train_step`): each device
  computes its B/n images of every domain, and the step's own collectives
  (BatchNorm moments averaged over the axis, loss means averaged, triplet
  embeddings gathered; see `fasjax.meta`) make each domain normalised by its
  statistics over the whole global batch and every gradient the global one,
  exactly as on one device. Nothing depends on XLA's SPMD partitioner, which
  in jax 0.10 aborted on the 'xla' convolution gradients of this step, so
  both conv paths run on any number of devices. Sharding D instead would
  cap the device count at the number of source domains (3).
- eval batches are [B, ...]: B is sharded (eval-mode BatchNorm uses running
  averages, so there is nothing to reduce). Every process reads the whole
  eval set; `make_predict_fn` hands each process its rows and gathers P(live).

Multi-process (several hosts): `launch.py` calls `initialize()` first; each
process then reads its own 1/process_count of every source domain
(`shard_dataset`) with a per-process batch of B/process_count, and
`global_train_batch` assembles the processes' local arrays into one global
array without moving data. On one device the shard_map step computes the
plain `jax.jit` step's values up to float summation order (measured: equal
to the last bit or two of float64).
"""

import dataclasses
import functools
import os
from typing import Any, Callable

import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax

from fasjax import evaluate
from fasjax import meta

PyTree = Any
DATA_AXIS = 'data'
# Environment variables that mean "this process is one of several".
_CLUSTER_ENV = ('JAX_COORDINATOR_ADDRESS', 'SLURM_NTASKS',
                'OMPI_COMM_WORLD_SIZE', 'TPU_WORKER_HOSTNAMES')


def initialize(coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None) -> bool:
  """Starts jax.distributed when running as one of several processes.

  With no arguments it initialises only if a cluster environment is detected
  (explicit JAX_COORDINATOR_ADDRESS, SLURM, Open MPI or a TPU pod), so
  single-process runs are untouched. Must run before any other JAX call.

  Returns:
    Whether jax.distributed was initialised.
  """
  explicit = coordinator_address is not None or (num_processes or 1) > 1
  if explicit and (coordinator_address is None or num_processes is None
                   or process_id is None):
    raise ValueError(
        'Several processes without a cluster manager need all three of '
        'coordinator_address (host:port of process 0), num_processes and '
        f'process_id; got {coordinator_address!r}, {num_processes!r}, '
        f'{process_id!r}.')
  if explicit and not 0 <= process_id < num_processes:
    raise ValueError(f'process_id must be in [0, {num_processes}), got '
                     f'{process_id}.')
  detected = any(os.environ.get(v) not in (None, '', '1')
                 for v in _CLUSTER_ENV)
  if not (explicit or detected):
    return False
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes,
                             process_id=process_id)
  return True


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh with axis 'data' over `devices` (default: all devices)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array."""
  return NamedSharding(mesh, P())


def train_batch_sharding(mesh: Mesh) -> NamedSharding:
  """[D, B, ...] arrays split along B."""
  return NamedSharding(mesh, P(None, DATA_AXIS))


def eval_batch_sharding(mesh: Mesh) -> NamedSharding:
  """[B, ...] arrays split along B."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_divisible(batch_size: int, mesh: Mesh) -> None:
  """Raises ValueError unless `batch_size` splits evenly over the mesh."""
  n = mesh.shape[DATA_AXIS]
  if batch_size % n:
    raise ValueError(
        f'The per-domain batch ({batch_size}) must be a multiple of the '
        f'number of devices ({n}); change data.per_class_batch or the '
        'devices visible to JAX.')


def _put(batch: dict[str, np.ndarray], sharding: NamedSharding,
         axis: int) -> dict[str, jax.Array]:
  """Places a batch; in multi-process runs `batch` is this process's part."""
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)

  def assemble(local):
    global_shape = list(np.shape(local))
    global_shape[axis] *= jax.process_count()
    return jax.make_array_from_process_local_data(sharding, local,
                                                  tuple(global_shape))
  return jax.tree.map(assemble, batch)


def global_train_batch(batch: dict[str, np.ndarray],
                       mesh: Mesh) -> dict[str, jax.Array]:
  """A host [D, B_local, ...] train batch as a global array sharded on B."""
  check_divisible(np.shape(batch['label'])[1] * jax.process_count(), mesh)
  return _put(batch, train_batch_sharding(mesh), axis=1)


def global_eval_batch(batch: dict[str, np.ndarray],
                      mesh: Mesh) -> dict[str, jax.Array]:
  """A host [B_local, ...] eval batch (numeric entries only), sharded on B."""
  numeric = {k: v for k, v in batch.items()
             if np.asarray(v).dtype != object}
  check_divisible(np.shape(batch['image'])[0] * jax.process_count(), mesh)
  return _put(numeric, eval_batch_sharding(mesh), axis=0)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
  """Puts a pytree (e.g. the train state) on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def for_data_axis(nets: meta.Networks) -> meta.Networks:
  """`nets` as run inside the shard_map: BatchNorm and losses reduce over 'data'."""
  return meta.Networks(
      net=nets.net.clone(bn_axis_name=DATA_AXIS),
      meta=nets.meta.clone(bn_axis_name=DATA_AXIS),
      hp=dataclasses.replace(nets.hp, data_axis=DATA_AXIS))


def jit_train_step(nets: meta.Networks, tx: optax.GradientTransformation,
                   mesh: Mesh, donate: bool = True
                   ) -> Callable[..., tuple[meta.TrainState, PyTree]]:
  """`meta.train_step` under `jax.shard_map`, for a replicated state and a B-sharded batch.

  Each device runs the step on its B/n images of every domain; the step's
  collectives (`meta.global_mean`, `meta.gather_batch`, BatchNorm's
  `axis_name`) make every loss, gradient and batch statistic the global one,
  so the state stays replicated without XLA partitioning anything.
  """
  rep = replicated(mesh)
  step = jax.shard_map(
      functools.partial(meta.train_step, nets=for_data_axis(nets), tx=tx),
      mesh=mesh, in_specs=(P(), P(None, DATA_AXIS)), out_specs=(P(), P()))
  return jax.jit(step, in_shardings=(rep, train_batch_sharding(mesh)),
                 out_shardings=(rep, rep),
                 donate_argnums=(0,) if donate else ())


def jit_predict_step(nets: meta.Networks,
                     mesh: Mesh) -> Callable[..., dict[str, jax.Array]]:
  """`evaluate.predict_step` jitted with B-sharded images and outputs."""
  rep, data = replicated(mesh), eval_batch_sharding(mesh)
  return jax.jit(functools.partial(evaluate.predict_step, nets=nets),
                 in_shardings=(rep, rep, data), out_shardings=data)


def shard_dataset(dataset: Any) -> Any:
  """This process's 1/process_count of a tf.data dataset (identity if one)."""
  if jax.process_count() == 1:
    return dataset
  return dataset.shard(jax.process_count(), jax.process_index())


def process_rows(rows: np.ndarray) -> np.ndarray:
  """This process's contiguous 1/process_count of a batch every process holds."""
  n = len(rows) // jax.process_count()
  return rows[jax.process_index() * n:(jax.process_index() + 1) * n]


def make_predict_fn(nets: meta.Networks, mesh: Mesh, gather_all: bool = False
                    ) -> Callable[..., dict[str, Any]]:
  """`(params, batch_stats, images) -> outputs` with images split over the mesh.

  Like `evaluate.make_predict_fn`, for replicated parameters and a host batch
  of images that every process holds whole (its size a multiple of the
  device count). In multi-process runs only `p_live` is gathered to every
  process (all that evaluation needs) unless `gather_all`; the other outputs
  stay sharded.
  """
  step = jit_predict_step(nets, mesh)

  def predict(params: PyTree, batch_stats: PyTree,
              images: np.ndarray) -> dict[str, Any]:
    # Checked on the whole batch: slicing an uneven batch would drop rows.
    check_divisible(len(images), mesh)
    local = {'image': process_rows(np.asarray(images))}
    out = step(params, batch_stats, global_eval_batch(local, mesh)['image'])
    if jax.process_count() > 1:
      gathered = out if gather_all else {'p_live': out['p_live']}
      out = {**out, **multihost_utils.process_allgather(gathered, tiled=True)}
    return out
  return predict
