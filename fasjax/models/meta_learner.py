"""Meta learner M: conv 128 (pool) -> 256 (pool) -> 512 -> GAP -> embedding -> logit.

The 512-d embedding (L2-normalised by default) carries the one-side triplet
loss; a linear layer maps it to one logit, sigmoid(logit) = P(live).
"""

import flax.linen as nn
import jax.numpy as jnp

from fasjax import losses
from fasjax.models import layers

CHANNELS = (128, 256, 512)


class MetaLearner(nn.Module):
  """Classifier whose parameters the inner meta step adapts."""
  width: float = 1.0
  normalize_embedding: bool = True
  dtype: layers.Dtype = jnp.float32
  conv_impl: str = 'xla'
  bn_axis_name: str | None = None  # See layers.ConvBNReLU.

  @nn.compact
  def __call__(self, x_BxhxwxC: jnp.ndarray,
               train: bool) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Returns (embedding [B, E], logit [B])."""
    x = x_BxhxwxC
    for i, channels in enumerate(CHANNELS):
      x = layers.ConvBNReLU(layers.scaled(channels, self.width),
                            dtype=self.dtype, conv_impl=self.conv_impl,
                            bn_axis_name=self.bn_axis_name,
                            name=f'conv{i + 1}')(x, train)
      if i < 2:
        x = layers.max_pool2(x)
    # Heads run in at least float32 even when the convs run in bfloat16.
    head_dtype = jnp.promote_types(self.dtype, jnp.float32)
    embedding = jnp.mean(x, axis=(1, 2)).astype(head_dtype)
    # The logit reads the raw pooled feature, as the reference classifier does;
    # normalisation shapes only the triplet geometry.
    logit = nn.Dense(1, name='fc', kernel_init=nn.initializers.glorot_normal(),
                     dtype=head_dtype)(embedding).squeeze(-1)
    if self.normalize_embedding:
      embedding = losses.l2_normalize(embedding)
    return embedding, logit
