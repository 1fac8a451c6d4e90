"""The full per-video chain: detect, crop, mesh, pseudo depth and parsing."""

import dataclasses

import numpy as np

from fasjax.preprocess import config as config_lib
from fasjax.preprocess import depth as depth_lib
from fasjax.preprocess import detect
from fasjax.preprocess import mesh
from fasjax.preprocess import parsing as parsing_lib


@dataclasses.dataclass(frozen=True)
class FrameLabels:
  """One preprocessed frame: crop and pseudo labels."""
  frame_index: int
  image: np.ndarray  # crop_size x crop_size x 3 uint8 RGB
  depth: np.ndarray  # depth_size x depth_size float32, zeros for spoofs
  parsing: np.ndarray  # crop_size x crop_size uint8 class ids
  detected: bool  # False: the box was borrowed from the nearest frame
  mesh_score: float  # the mesh's face probability; low: doubtful labels
  turned180: bool = False  # the video was upside down and turned upright


class NoFaceError(Exception):
  """No frame of a video has a detectable face."""


class Preprocessor:
  """Turns the sampled frames of one video into crops and pseudo labels."""

  def __init__(self, config: config_lib.ChainConfig = config_lib.ChainConfig()):
    self.config = config
    self._detector = detect.FaceDetector(config.detect_size)

  def labels(self, crop: np.ndarray, live: bool
             ) -> tuple[np.ndarray, np.ndarray, float]:
    """(depth, parsing, mesh score) of a face crop; spoof depth is zeros."""
    c = self.config
    points, score = mesh.landmarks(crop)
    parsing = parsing_lib.parsing_map(points, c.crop_size, c.crop_size)
    if not live:  # a spoof is flat: the reference works' zero depth
      depth = np.zeros((c.depth_size, c.depth_size), np.float32)
    else:
      depth = depth_lib.depth_map(points, c.crop_size, c.depth_size)
    return depth, parsing, score

  def video(self, frames: list[tuple[int, np.ndarray]], live: bool
            ) -> list[FrameLabels]:
    """Processes (frame index, RGB) frames of one video.

    An upside-down video is turned upright first (ChainConfig.auto_orient).
    Frames without a face take the nearest detected box of the video; a
    video without any face raises NoFaceError.
    """
    images, found, turned = detect.detect_upright(
        self._detector, [f for _, f in frames], self.config.auto_orient)
    boxes = detect.fill_missing(found)
    if boxes is None:
      raise NoFaceError(f'no face detected in any of {len(frames)} frames')
    out = []
    for (index, _), frame, box, hit in zip(frames, images, boxes, found):
      crop = detect.crop(frame, box, self.config.margin, self.config.crop_size)
      depth, parsing, score = self.labels(crop, live)
      out.append(FrameLabels(index, crop, depth, parsing, hit is not None,
                             score, turned))
    return out
