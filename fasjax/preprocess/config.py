"""Settings of the preprocessing chain (light: no model or decoder imports)."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Sampling:
  """Which frames of a video are used.

  The defaults (every 5th frame, at most 25 per video, i.e. 5 s at 25-30 fps)
  follow the field's habit of a few dozen frames per video: neighbouring
  frames are nearly identical, so denser sampling mostly costs build time.
  """
  every: int = 5  # keep frames 0, every, 2*every, ...
  max_frames: int | None = 25  # per video; None keeps all sampled frames

  def __post_init__(self):
    if self.every < 1:
      raise ValueError(f'Sampling.every must be >= 1, got {self.every}')
    if self.max_frames is not None and self.max_frames < 1:
      raise ValueError(
          f'Sampling.max_frames must be >= 1 or None, got {self.max_frames}')


@dataclasses.dataclass(frozen=True)
class ChainConfig:
  """Preprocessing settings; the defaults are the builders'."""
  margin: float = 0.25  # box enlargement per side, as a share of its side
  crop_size: int = 256
  depth_size: int = 32
  detect_size: int = 320  # MTCNN runs on frames downscaled to this side
  # Turn a video whose face is upside down upright first (detect.upside_down);
  # the face mesh would otherwise label it as if it were upright.
  auto_orient: bool = True
