"""Feature extractor F and depth estimator D (MADDG / RFMetaFAS topology).

F: `inc` conv 6->64, then three blocks of 128 -> 196 -> 128 convs, each closed
by 2x2 max pooling. At a 256x256 input the block outputs are x2 128@128x128,
x3 128@64x64 and x4 128@32x32; f = x4. `catfeat` = avg-pool(x2) || avg-pool(x3)
|| x4 at f's resolution, 384 channels, feeds D. Channel counts scale with
`width` (1.0 = the paper's).
"""

import flax.linen as nn
import jax.numpy as jnp

from fasjax.models import layers

INC_CHANNELS = 64
BLOCK_CHANNELS = (128, 196, 128)
DEPTH_CHANNELS = (128, 64, 1)


class FeatureExtractor(nn.Module):
  """Shared encoder F; also the encoder of the parsing U-Net."""
  width: float = 1.0
  dtype: layers.Dtype = jnp.float32
  conv_impl: str = 'xla'
  bn_axis_name: str | None = None  # See layers.ConvBNReLU.

  @nn.compact
  def __call__(self, images_BxSxSx6: jnp.ndarray,
               train: bool) -> dict[str, jnp.ndarray]:
    """Returns the encoder maps `x1` (full res), `x2`, `x3`, `x4` and `catfeat`."""
    x1 = layers.ConvBNReLU(layers.scaled(INC_CHANNELS, self.width),
                           dtype=self.dtype, conv_impl=self.conv_impl,
                           bn_axis_name=self.bn_axis_name,
                           name='inc')(images_BxSxSx6, train)
    maps = {'x1': layers.block_out(x1)}
    x = x1
    for block in range(3):
      for i, channels in enumerate(BLOCK_CHANNELS):
        x = layers.ConvBNReLU(layers.scaled(channels, self.width),
                              dtype=self.dtype, conv_impl=self.conv_impl,
                              bn_axis_name=self.bn_axis_name,
                              name=f'down{block + 1}_conv{i + 1}')(x, train)
      x = layers.block_out(layers.max_pool2(x))
      maps[f'x{block + 2}'] = x
    size = maps['x4'].shape[1]
    maps['catfeat'] = jnp.concatenate(
        [layers.avg_pool_to(maps['x2'], size),
         layers.avg_pool_to(maps['x3'], size), maps['x4']], axis=-1)
    return maps


class DepthEstimator(nn.Module):
  """D: catfeat -> 128 -> 64 -> 1, conv+BN+ReLU each (non-negative output)."""
  width: float = 1.0
  dtype: layers.Dtype = jnp.float32
  conv_impl: str = 'xla'
  bn_axis_name: str | None = None  # See layers.ConvBNReLU.

  @nn.compact
  def __call__(self, catfeat_BxhxwxC: jnp.ndarray, train: bool) -> jnp.ndarray:
    """Returns the depth map [B, h, w]."""
    x = catfeat_BxhxwxC
    for i, channels in enumerate(DEPTH_CHANNELS):
      # The last layer keeps a single channel whatever the width.
      out = channels if channels == 1 else layers.scaled(channels, self.width)
      x = layers.ConvBNReLU(out, dtype=self.dtype, conv_impl=self.conv_impl,
                            bn_axis_name=self.bn_axis_name,
                            name=f'conv{i + 1}')(x, train)
    # squeeze, not x[..., 0]: an index is a gather, which TFLite cannot
    # convert under a symbolic batch size (fasjax.export).
    return x.squeeze(-1)
