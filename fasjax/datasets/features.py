"""The feature contract every fasjax builder writes (docs/design.md §2)."""

import numpy as np
import tensorflow_datasets as tfds

DEPTH_SIZE = 32


def contract_features(image_size: int) -> tfds.features.FeaturesDict:
  """Image, depth, parsing, label and video metadata of one frame."""
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(image_size, image_size, 3)),
      'depth': tfds.features.Tensor(shape=(DEPTH_SIZE, DEPTH_SIZE),
                                    dtype=np.float32),
      'parsing': tfds.features.Tensor(shape=(image_size, image_size),
                                      dtype=np.uint8),
      'label': tfds.features.Scalar(dtype=np.int64),
      'video_id': tfds.features.Text(),
      'attack_type': tfds.features.Text(),
      'subject': tfds.features.Scalar(dtype=np.int64),
      'frame_index': tfds.features.Scalar(dtype=np.int64),
  })
