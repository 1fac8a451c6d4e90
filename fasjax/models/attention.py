"""ECA channel attention and the attention-based skip connection (ASC).

ECA (Wang et al., CVPR 2020): global average pool -> 1-D conv across channels
with an adaptive odd kernel k and no bias -> sigmoid -> rescale the input.

ASC (the paper's): takes the parsing decoder's last stage, applies a conv
block and ECA, brings the result to f's resolution by average pooling, and
concatenates it with f; the concatenation is the meta learner's input. The
paper does not publish ASC's width; we use 128 channels (width-scaled), the
same as f, so the meta learner sees f and the attended parsing cue in equal
measure.
"""

import math

import flax.linen as nn
import jax.numpy as jnp

from fasjax.models import layers

ASC_CHANNELS = 128


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
  """ECA's adaptive kernel size: t = int(|(log2(C) + b) / gamma|), made odd."""
  if channels < 1:
    raise ValueError(f'channels must be positive, got {channels}')
  t = int(abs((math.log2(channels) + b) / gamma))
  return t if t % 2 else t + 1


class ECA(nn.Module):
  """Efficient channel attention; the only parameters are k conv weights."""
  gamma: int = 2
  b: int = 1
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC: jnp.ndarray) -> jnp.ndarray:
    """Rescales each channel by its attention weight."""
    channels = x_BxHxWxC.shape[-1]
    k = eca_kernel_size(channels, self.gamma, self.b)
    pooled_BxC = jnp.mean(x_BxHxWxC, axis=(1, 2))
    # The 1-D conv runs along the channel axis: channels become the length.
    weights_BxC = nn.Conv(1, (k,), padding='SAME', use_bias=False,
                          dtype=self.dtype, name='conv')(
                              pooled_BxC[..., None]).squeeze(-1)
    return x_BxHxWxC * nn.sigmoid(weights_BxC)[:, None, None, :]


class AttentionSkip(nn.Module):
  """ASC: conv block + ECA on the decoder's last stage, pooled, || f."""
  width: float = 1.0
  dtype: layers.Dtype = jnp.float32
  conv_impl: str = 'xla'
  bn_axis_name: str | None = None  # See layers.ConvBNReLU.

  @nn.compact
  def __call__(self, decoder_BxSxSxC: jnp.ndarray, f_BxhxwxC: jnp.ndarray,
               train: bool) -> jnp.ndarray:
    """Returns the meta learner's input [B, h, w, C_f + C_asc]."""
    x = layers.ConvBNReLU(layers.scaled(ASC_CHANNELS, self.width),
                          dtype=self.dtype, conv_impl=self.conv_impl,
                          bn_axis_name=self.bn_axis_name,
                          name='conv')(decoder_BxSxSxC, train)
    x = ECA(dtype=self.dtype, name='eca')(x)
    x = layers.avg_pool_to(x, f_BxhxwxC.shape[1])
    return jnp.concatenate([f_BxhxwxC, x], axis=-1)
