"""3x3 SAME stride-1 convolution with a matmul-based weight gradient.

Why: XLA's CPU backend computes the weight gradient of a convolution
(conv-backprop-filter) an order of magnitude below the machine's matmul rate,
and that gradient is most of a training step's arithmetic (issue 7). The same
quantity is a sum of nine matrix products, one per kernel tap:

  dK[i, j] = sum_{n,h,w} xpad[n, h+i, w+j, :]^T g[n, h, w, :],

which runs at matmul speed. The forward pass and the input gradient stay XLA
convolutions (those are fast on every backend).

`conv3x3` is a `jax.custom_vjp` whose rules are written in plain jax ops, so
it can be differentiated again: the meta step differentiates through an inner
`jax.grad`. Both rules call `conv3x3` itself for their convolutions, so every
convolution that appears at any order of differentiation again gets the fast
weight gradient. Values are the same mathematical quantities as
`lax.conv_general_dilated`'s; only the float summation order differs.

The choice is a model option (`layers.ConvBNReLU.conv_impl`): 'xla' (default,
the plain `flax.linen.Conv`) suits GPUs and TPUs, whose convolution gradients
are fast; 'matmul' is for CPUs.
"""

import functools

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')


def _xla_conv(x_NxHxWxC: jnp.ndarray, kernel_3x3xCxO: jnp.ndarray,
              precision: lax.Precision | None) -> jnp.ndarray:
  return lax.conv_general_dilated(
      x_NxHxWxC, kernel_3x3xCxO, window_strides=(1, 1),
      padding=((1, 1), (1, 1)), dimension_numbers=_DIMENSION_NUMBERS,
      precision=precision)


def _weight_grad(x_NxHxWxC: jnp.ndarray, g_NxHxWxO: jnp.ndarray,
                 precision: lax.Precision | None) -> jnp.ndarray:
  """dK of a 3x3 SAME conv as nine [C, NHW] x [NHW, O] products."""
  n, h, w, c = x_NxHxWxC.shape
  o = g_NxHxWxO.shape[-1]
  x_pad = jnp.pad(x_NxHxWxC, ((0, 0), (1, 1), (1, 1), (0, 0)))
  g_PxO = g_NxHxWxO.reshape(n * h * w, o)

  def tap(offset_2):
    x_PxC = lax.dynamic_slice(x_pad, (0, offset_2[0], offset_2[1], 0),
                              (n, h, w, c)).reshape(n * h * w, c)
    return jnp.matmul(x_PxC.T, g_PxO, precision=precision)

  # A loop over the taps, not nine unrolled products: XLA would otherwise
  # keep all nine shifted copies of the input alive at once (3x the memory
  # of the whole step).
  offsets_9x2 = jnp.stack(jnp.meshgrid(jnp.arange(3), jnp.arange(3),
                                       indexing='ij'), axis=-1).reshape(9, 2)
  return lax.map(tap, offsets_9x2).reshape(3, 3, c, o)


def _transposed_kernel(kernel_3x3xCxO: jnp.ndarray) -> jnp.ndarray:
  """The kernel whose SAME conv is the input gradient: flipped, in<->out."""
  return jnp.flip(kernel_3x3xCxO, axis=(0, 1)).swapaxes(2, 3)


def _varying_like(kernel: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
  """`kernel` typed as varying over every shard_map axis `x` varies over.

  Inside `jax.shard_map` a replicated kernel applied to per-device images
  has a per-device weight gradient; a custom_vjp's backward rule must return
  a cotangent of its input's type, so the kernel enters the rule already
  varying and JAX sums the per-device gradients where it was made so.
  """
  missing = tuple(sorted(_varying_axes(x) - _varying_axes(kernel)))
  if not missing:
    return kernel
  if hasattr(lax, 'pcast'):
    return lax.pcast(kernel, missing, to='varying')
  return lax.pvary(kernel, missing)  # jax < 0.9


def _varying_axes(x: jnp.ndarray) -> frozenset[str]:
  """The shard_map axes `x` varies over (jax 0.10+ and the older `vma`)."""
  aval = jax.typeof(x)
  manual = getattr(aval, 'manual_axis_type', None)
  if manual is not None:
    return frozenset(manual.varying)
  return frozenset(getattr(aval, 'vma', ()))


def conv3x3(x_NxHxWxC: jnp.ndarray, kernel_3x3xCxO: jnp.ndarray,
            precision: lax.Precision | None = None) -> jnp.ndarray:
  """3x3 SAME stride-1 conv (NHWC, HWIO) whose weight gradient is matmuls."""
  return _conv3x3(x_NxHxWxC, _varying_like(kernel_3x3xCxO, x_NxHxWxC),
                  precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv3x3(x_NxHxWxC: jnp.ndarray, kernel_3x3xCxO: jnp.ndarray,
             precision: lax.Precision | None = None) -> jnp.ndarray:
  return _xla_conv(x_NxHxWxC, kernel_3x3xCxO, precision)


def _conv3x3_fwd(x, kernel, precision):
  # Calling conv3x3 (not the XLA conv) keeps the forward pass on the fast
  # gradient path when an outer transformation differentiates it again.
  return conv3x3(x, kernel, precision), (x, kernel)


def _conv3x3_bwd(precision, residuals, g):
  x, kernel = residuals
  g = g.astype(x.dtype)
  dx = conv3x3(g, _transposed_kernel(kernel), precision)
  dkernel = _weight_grad(x, g, precision).astype(kernel.dtype)
  return dx, dkernel


_conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


class Conv3x3(nn.Module):
  """Drop-in for `nn.Conv(features, (3, 3), padding='SAME', use_bias=False)`.

  Same parameter name ('kernel'), shape, initialiser and dtype promotion as
  the Flax layer, so checkpoints move freely between the two.
  """
  features: int
  dtype: jnp.dtype | None = None
  param_dtype: jnp.dtype = jnp.float32
  precision: lax.Precision | None = None
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x_NxHxWxC: jnp.ndarray) -> jnp.ndarray:
    """Applies the conv over the last three axes; leading axes are batch."""
    kernel = self.param('kernel', self.kernel_init,
                        (3, 3, x_NxHxWxC.shape[-1], self.features),
                        self.param_dtype)
    x, kernel = nn.dtypes.promote_dtype(x_NxHxWxC, kernel, dtype=self.dtype)
    batch_shape = x.shape[:-3]
    x = x.reshape((-1,) + x.shape[-3:])
    y = conv3x3(x, kernel, self.precision)
    return y.reshape(batch_shape + y.shape[1:])
