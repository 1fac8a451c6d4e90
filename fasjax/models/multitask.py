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
  """
  width: float = 1.0
  use_decoder: bool = True
  use_asc: bool = True
  dtype: layers.Dtype = jnp.float32
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, images_BxSxSx6: jnp.ndarray,
               train: bool) -> dict[str, jnp.ndarray]:
    """Returns `depth` [B,h,w], `parsing` [B,S,S,13] (if any), `meta_input`."""
    maps = backbone.FeatureExtractor(self.width, self.dtype, self.conv_impl,
                                     name='encoder')(
        images_BxSxSx6.astype(self.dtype), train)
    out = {'depth': backbone.DepthEstimator(
        self.width, self.dtype, self.conv_impl, name='depth')(maps['catfeat'],
                                                               train)}
    meta_input = maps['x4']
    if self.use_decoder:
      logits, last_stage = parsing.ParsingDecoder(
          self.width, self.dtype, self.conv_impl, name='decoder')(maps, train)
      out['parsing'] = logits
      if self.use_asc:
        meta_input = attention.AttentionSkip(self.width, self.dtype,
                                             self.conv_impl,
                                             name='asc')(last_stage,
                                                         maps['x4'], train)
    out['meta_input'] = meta_input
    return out
