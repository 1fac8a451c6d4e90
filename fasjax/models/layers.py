"""Shared building blocks: the 3x3 conv + BatchNorm + ReLU unit and channel scaling.

Every conv of the MADDG/RFMetaFAS network is 3x3, stride 1, SAME, followed by
BatchNorm and ReLU. The convs carry no bias (as in MADDG): a bias in front of
BatchNorm is cancelled by the mean subtraction, so dropping it changes nothing
but the parameter count. Convs use Glorot-normal initialisation (the reference
code's `xavier_normal_`); BatchNorm starts at scale 1, bias 0 (the reference's
`uniform(0.02, 1)` scale init is a known slip, see third_party/NOTES.md).

`ConvBNReLU.conv_impl` picks how the 3x3 conv is computed: 'xla' (default,
`flax.linen.Conv`) or 'matmul' (`fast_conv.Conv3x3`: the same values and
parameters, with the weight gradient as matmuls, several times faster on
CPUs; see `fast_conv`).

Rematerialisation: every conv output is tagged `CONV_OUT` and every stage
boundary (encoder block outputs, decoder stages, heads) `BLOCK_OUT` with
`jax.ad_checkpoint.checkpoint_name`. The tags cost nothing by themselves;
`remat_policy(name)` turns a policy name of `REMAT_POLICIES` into the
`jax.checkpoint` policy that `fasjax.meta` wraps around the network's
forward pass (see there for what each saves).
"""

from typing import Any

import flax.linen as nn
import jax
from jax import lax
from jax.ad_checkpoint import checkpoint_name
import jax.numpy as jnp

from fasjax.models import fast_conv

Dtype = Any

# Flax momentum is the weight of the *old* running average: 0.9 here is
# PyTorch's default momentum of 0.1.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
CONV_IMPLS = ('xla', 'matmul')
CONV_IMPLS_AND_AUTO = ('auto',) + CONV_IMPLS
CONV_OUT = 'conv_out'
BLOCK_OUT = 'block_out'
# Policy name -> (what the backward pass may read from the forward pass,
# None: everything; whether the domains' forward passes run one after another
# and are recomputed one domain at a time). See fasjax/meta.py.
_POLICIES = {
    'none': (None, False),
    'conv': ((CONV_OUT, BLOCK_OUT), False),
    'blocks': ((BLOCK_OUT,), False),
    'domains': ((CONV_OUT, BLOCK_OUT), True),
}
REMAT_POLICIES = tuple(_POLICIES)


def remat_policy(name: str):
  """The `jax.checkpoint` policy of a `REMAT_POLICIES` name (None: no remat)."""
  if name not in _POLICIES:
    raise ValueError(f'remat policy must be one of {REMAT_POLICIES}, got '
                     f'{name!r}')
  names = _POLICIES[name][0]
  if names is None:
    return None
  return jax.checkpoint_policies.save_only_these_names(*names)


def remat_domains_in_turn(name: str) -> bool:
  """Whether policy `name` recomputes the domains' forward passes one by one."""
  return _POLICIES[name][1]


def block_out(x: jnp.ndarray) -> jnp.ndarray:
  """Tags a stage boundary (kept by every remat policy)."""
  return checkpoint_name(x, BLOCK_OUT)


def scaled(channels: int, width: float) -> int:
  """Channel count `channels` scaled by the width multiplier (at least 4)."""
  return max(4, int(round(channels * width)))


class ConvBNReLU(nn.Module):
  """3x3 conv (stride 1, SAME, no bias), BatchNorm, ReLU."""
  features: int
  kernel_size: int = 3
  dtype: Dtype = jnp.float32
  conv_impl: str = 'xla'
  # Set inside `jax.shard_map`: batch statistics are averaged over this mesh
  # axis, so every device normalises by the statistics of the global batch.
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x_BxHxWxC: jnp.ndarray, train: bool) -> jnp.ndarray:
    """Applies the unit; `train` selects batch statistics."""
    if self.conv_impl not in CONV_IMPLS:
      raise ValueError(f'conv_impl must be one of {CONV_IMPLS}, got '
                       f'{self.conv_impl!r}')
    if self.conv_impl == 'matmul' and self.kernel_size == 3:
      # Named as nn.Conv would be, so both give the same parameter tree.
      x = fast_conv.Conv3x3(self.features, dtype=self.dtype,
                            kernel_init=nn.initializers.glorot_normal(),
                            name='Conv_0')(x_BxHxWxC)
    else:
      x = nn.Conv(self.features, (self.kernel_size, self.kernel_size),
                  padding='SAME', use_bias=False, dtype=self.dtype,
                  kernel_init=nn.initializers.glorot_normal())(x_BxHxWxC)
    x = checkpoint_name(x, CONV_OUT)
    x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                     epsilon=BN_EPSILON, dtype=self.dtype,
                     axis_name=self.bn_axis_name)(x)
    return nn.relu(x)


def max_pool2(x_BxHxWxC: jnp.ndarray) -> jnp.ndarray:
  """2x2 max pooling, stride 2 (an odd last row or column is dropped)."""
  # Elementwise maxima of the four window corners, not lax.reduce_window:
  # XLA:CPU runs reduce_window's first- and second-order gradients several
  # times slower (benchmarks/profile_step.py). Not reshape + max either: the
  # gradient of a max *reduction* divides by the number of inputs equal to
  # the max, which is 0/0 when a differently fused recomputation rounds the
  # max apart from its inputs. Values are identical to reduce_window; only
  # gradients at exact ties differ (split instead of given to one input),
  # and after a ReLU ties are zeros, whose ReLU derivative is zero anyway.
  # lax.slice_in_dim, not x[:, 0::2]: under a symbolic batch size (export)
  # numpy-style strided indexing becomes a gather TFLite cannot convert.
  x = x_BxHxWxC
  h, w = x.shape[1] - x.shape[1] % 2, x.shape[2] - x.shape[2] % 2

  def corner(row, col):
    rows = lax.slice_in_dim(x, row, h, stride=2, axis=1)
    return lax.slice_in_dim(rows, col, w, stride=2, axis=2)

  return jnp.maximum(jnp.maximum(corner(0, 0), corner(0, 1)),
                     jnp.maximum(corner(1, 0), corner(1, 1)))


def avg_pool_to(x_BxHxWxC: jnp.ndarray, size: int) -> jnp.ndarray:
  """Average-pools a square map down to `size` x `size` (integer factor)."""
  factor = x_BxHxWxC.shape[1] // size
  if factor == 1:
    return x_BxHxWxC
  # reshape + mean rather than reduce_window, for speed (see max_pool2); the
  # mean is linear, so its gradient has no tie problem.
  b, _, _, c = x_BxHxWxC.shape
  x = x_BxHxWxC[:, :size * factor, :size * factor]
  return x.reshape(b, size, factor, size, factor, c).mean(axis=(2, 4))


def upsample2(x_BxHxWxC: jnp.ndarray) -> jnp.ndarray:
  """Bilinear 2x up-sampling."""
  b, h, w, c = x_BxHxWxC.shape
  return jax.image.resize(x_BxHxWxC, (b, 2 * h, 2 * w, c), method='bilinear')
