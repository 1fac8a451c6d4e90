"""The multi-task network: F, D, the parsing U-Net S and the ASC, in one module.

The meta learner M is a separate module (`meta_learner.MetaLearner`) because
the inner meta step adapts its parameters alone; everything here is updated
only by the outer step.
"""

import flax.linen as nn
import jax.numpy as jnp

from fasjax.models import attention
from fasjax.models import backbone
from fasjax.models import layers
from fasjax.models import parsing


class MultiTaskNet(nn.Module):
  """Image -> depth map, parsing logits and the meta learner's input.

  Attributes:
    width: channel multiplier (1.0 = the paper's widths).
    use_decoder: build the parsing U-Net decoder (off only when neither the
      parsing loss nor the ASC needs it).
    use_asc: feed the ASC output to the meta learner beside f.
    conv_impl: 'xla' (plain convs) or 'matmul' (3x3 weight gradients as nine
      matmuls, faster on CPUs; see fast_conv.py). Same math, same parameters.
    bn_axis_name: inside `jax.shard_map`, the mesh axis over which BatchNorm
      averages its batch statistics (None elsewhere).
  """
  width: float = 1.0
  use_decoder: bool = True
  use_asc: bool = True
  dtype: layers.Dtype = jnp.float32
  conv_impl: str = 'xla'
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images_BxSxSx6: jnp.ndarray,
               train: bool) -> dict[str, jnp.ndarray]:
    """Returns `depth` [B,h,w], `parsing` [B,S,S,13] (if any), `meta_input`."""
    common = dict(width=self.width, dtype=self.dtype, conv_impl=self.conv_impl,
                  bn_axis_name=self.bn_axis_name)
    maps = backbone.FeatureExtractor(**common, name='encoder')(
        images_BxSxSx6.astype(self.dtype), train)
    out = {'depth': layers.block_out(backbone.DepthEstimator(
        **common, name='depth')(maps['catfeat'], train))}
    meta_input = maps['x4']
    if self.use_decoder:
      logits, last_stage = parsing.ParsingDecoder(**common, name='decoder')(
          maps, train)
      out['parsing'] = layers.block_out(logits)
      if self.use_asc:
        meta_input = attention.AttentionSkip(**common, name='asc')(
            last_stage, maps['x4'], train)
    out['meta_input'] = layers.block_out(meta_input)
    return out
