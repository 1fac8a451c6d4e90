"""Networks, optimizer and initial state from a config (jax/flax/optax only).

Everything between a config and a compiled train step, without TensorFlow,
tfds or clu, so that `fasjax.check_accelerator` and the benchmarks can build
exactly the step `launch.py` runs on a bare accelerator image.

`model.conv_impl='auto'` (the default) is resolved here, per backend
(`resolve_conv_impl`): 'matmul' on CPUs at width >= 0.5, where its
weight-gradient matmuls beat XLA:CPU's convolution gradients
(benchmarks/train_step.py, docs/performance.md), and 'xla' elsewhere: on
GPUs and TPUs the native convolution gradients are the fast path, and at the
synthetic configs' width 0.125 the two paths are within noise on a CPU.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from fasjax import meta
from fasjax import models
from fasjax.models import layers

# Width from which the matmul weight gradient is the faster CPU path.
MATMUL_MIN_WIDTH = 0.5


def resolve_conv_impl(conv_impl: str, width: float,
                      backend: str | None = None) -> tuple[str, str]:
  """('xla' | 'matmul', why) for a config's conv_impl on `backend`."""
  if conv_impl != 'auto':
    return conv_impl, 'set in the config'
  backend = backend or jax.default_backend()
  if backend != 'cpu':
    return 'xla', f'auto: native convolutions on {backend}'
  if width >= MATMUL_MIN_WIDTH:
    return 'matmul', (f'auto: on CPUs at width {width} >= {MATMUL_MIN_WIDTH} '
                      'matmul weight gradients are faster than XLA:CPU\'s')
  return 'xla', (f'auto: on CPUs at width {width} < {MATMUL_MIN_WIDTH} the '
                 'two paths are within noise; XLA convs compile faster')


def build_networks(config: ml_collections.ConfigDict,
                   backend: str | None = None) -> meta.Networks:
  """The Flax modules and the objective's hyper-parameters of a config."""
  dtype = jnp.dtype(config.model.dtype)
  conv_impl, _ = resolve_conv_impl(config.model.conv_impl, config.model.width,
                                   backend)
  use_decoder = config.loss.lambda_seg > 0 or config.model.use_asc
  net = models.MultiTaskNet(width=config.model.width, use_decoder=use_decoder,
                            use_asc=config.model.use_asc, dtype=dtype,
                            conv_impl=conv_impl)
  meta_learner = models.MetaLearner(
      width=config.model.width,
      normalize_embedding=config.model.normalize_embedding, dtype=dtype,
      conv_impl=conv_impl)
  hp = meta.MetaHParams(
      lambda_cls=config.loss.lambda_cls, lambda_dep=config.loss.lambda_dep,
      lambda_seg=config.loss.lambda_seg, lambda_trip=config.loss.lambda_trip,
      lambda_meta_train=config.loss.lambda_meta_train,
      lambda_meta_test=config.loss.lambda_meta_test,
      inner_lr=config.meta.inner_lr,
      inner_trip_weight=config.meta.inner_trip_weight,
      first_order=config.meta.first_order, use_meta=config.meta.enabled,
      one_side_triplet=config.loss.one_side_triplet,
      margin_all=config.loss.margin_all, margin_hard=config.loss.margin_hard,
      hard_mining_step=config.hard_mining_step,
      # Runs recorded before the field existed trained without remat.
      remat=config.model.get('remat', 'none'))
  return meta.Networks(net=net, meta=meta_learner, hp=hp)


def build_optimizer(config: ml_collections.ConfigDict):
  """Adam with coupled weight decay, from the config."""
  o = config.optim
  return meta.make_optimizer(o.lr, o.b1, o.b2, o.eps, o.weight_decay)


def jit_init_state(nets: meta.Networks, tx, image_size: int,
                   seed: int) -> meta.TrainState:
  """`meta.init_state` compiled with XLA-friendly random bits.

  Eager initialisation runs op by op, and under jit the default partitionable
  threefry unrolls into code that takes XLA 10-20 s to compile on a CPU; the
  classic threefry compiles in ~3 s. The initial values differ between the
  two, so this choice is part of what a seed means.
  """
  init = jax.jit(functools.partial(meta.init_state, nets, tx,
                                   image_size=image_size))
  with jax.threefry_partitionable(False):
    return init(jax.random.PRNGKey(seed))


def abstract_state(nets: meta.Networks, tx, image_size: int) -> Any:
  """The train state's shapes and dtypes, without computing it."""
  init = functools.partial(meta.init_state, nets, tx, image_size=image_size)
  with jax.threefry_partitionable(False):
    return jax.eval_shape(init, jax.random.PRNGKey(0))


def initial_state(config: ml_collections.ConfigDict, nets: meta.Networks,
                  tx) -> meta.TrainState:
  """A fresh state from the config's seed."""
  return jit_init_state(nets, tx, config.model.image_size, config.seed)


def build(config: ml_collections.ConfigDict
          ) -> tuple[meta.Networks, Any, meta.TrainState]:
  """Networks, optimizer and a fresh state (also the template for restores)."""
  nets, tx = build_networks(config), build_optimizer(config)
  return nets, tx, initial_state(config, nets, tx)

