"""Decoder of the face-parsing U-Net S; its encoder *is* F (shared weights).

Three up-sampling stages (f's resolution x2, x4, x8 = the input size): each
doubles the resolution bilinearly, concatenates the encoder map of that
resolution (x3, x2, then F's full-resolution `inc` output x1), and applies a
conv block of two conv+BN+ReLU units. A 1x1 conv gives the 13 class logits.
Stage widths 128, 64, 64 (width-scaled) follow the encoder maps they join.
"""

import flax.linen as nn
import jax.numpy as jnp

from fasjax.models import layers

NUM_CLASSES = 13
STAGE_CHANNELS = (128, 64, 64)


class ParsingDecoder(nn.Module):
  """U-Net decoder over F's maps; returns logits and its last stage."""
  width: float = 1.0
  dtype: layers.Dtype = jnp.float32
  conv_impl: str = 'xla'
  bn_axis_name: str | None = None  # See layers.ConvBNReLU.

  @nn.compact
  def __call__(self, maps: dict[str, jnp.ndarray],
               train: bool) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Returns (logits [B, S, S, 13], last stage [B, S, S, C])."""
    x = maps['x4']
    for stage, (skip, channels) in enumerate(zip(('x3', 'x2', 'x1'),
                                                 STAGE_CHANNELS)):
      x = jnp.concatenate([layers.upsample2(x).astype(maps[skip].dtype),
                           maps[skip]], axis=-1)
      for i in range(2):
        x = layers.ConvBNReLU(layers.scaled(channels, self.width),
                              dtype=self.dtype, conv_impl=self.conv_impl,
                              bn_axis_name=self.bn_axis_name,
                              name=f'up{stage + 1}_conv{i + 1}')(x, train)
      x = layers.block_out(x)
    logits = nn.Conv(NUM_CLASSES, (1, 1), dtype=self.dtype, name='classifier')(x)
    return logits, x
