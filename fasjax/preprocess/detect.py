"""Face detection (MTCNN, weights shipped in the `mtcnn` wheel) and cropping."""

import dataclasses
import functools

import numpy as np
from PIL import Image


@dataclasses.dataclass(frozen=True)
class Box:
  """A face box in frame pixels: top-left corner and size."""
  x: float
  y: float
  w: float
  h: float

  def scaled(self, factor: float) -> 'Box':
    """The same box in an image `factor` times larger."""
    return Box(self.x * factor, self.y * factor, self.w * factor,
               self.h * factor)


@functools.cache
def _mtcnn():
  # Imported lazily: it builds TensorFlow graphs, which only detection needs.
  from mtcnn import MTCNN  # pylint: disable=g-import-not-at-top
  return MTCNN(stages='face_detection_only')


class FaceDetector:
  """MTCNN on frames downscaled to at most `detect_size` pixels per side.

  Anti-spoofing videos show one large face, so detection at a reduced size
  loses nothing and saves most of the pyramid. Of several faces, the largest
  confident one is taken (a replay screen's bezel or a poster yields small
  false faces, the subject the largest).
  """

  def __init__(self, detect_size: int = 320, min_confidence: float = 0.9):
    self.detect_size = detect_size
    self.min_confidence = min_confidence

  def detect(self, frames: list[np.ndarray]) -> list[Box | None]:
    """One box per frame (in its own pixels), None where no face is found."""
    return [box for box, _ in self.detect_scored(frames)]

  def detect_scored(self, frames: list[np.ndarray]
                    ) -> list[tuple[Box | None, float]]:
    """Per frame: its box (or None) and MTCNN's best face confidence (0: none).

    The confidence counts faces below `min_confidence` too: it is what
    `upside_down` compares between a frame and the frame turned over.
    """
    factors, small = [], []
    for frame in frames:
      h, w = frame.shape[:2]
      factor = min(1.0, self.detect_size / max(h, w))
      if factor < 1.0:
        frame = np.asarray(Image.fromarray(frame).resize(
            (round(w * factor), round(h * factor)), Image.BILINEAR))
      factors.append(factor)
      small.append(frame)
    boxes = []
    for start, stop in _same_shape_runs(small, _BATCH):
      # Batched, MTCNN's networks run once per pyramid scale for all frames
      # (about 3x faster per frame than one call each).
      for faces, factor in zip(_mtcnn().detect_faces(small[start:stop]),
                               factors[start:stop]):
        boxes.append((self._largest(faces, factor),
                      max((float(f['confidence']) for f in faces),
                          default=0.0)))
    return boxes

  def _largest(self, faces: list[dict], factor: float) -> Box | None:
    faces = [f for f in faces if f['confidence'] >= self.min_confidence]
    if not faces:
      return None
    x, y, w, h = max(faces, key=lambda f: f['box'][2] * f['box'][3])['box']
    return Box(x, y, w, h).scaled(1.0 / factor)


_BATCH = 32  # frames per MTCNN call


def _same_shape_runs(images: list[np.ndarray], limit: int):
  """(start, stop) of runs of equally shaped images, at most `limit` long."""
  start = 0
  for i in range(1, len(images) + 1):
    if (i == len(images) or i - start == limit
        or images[i].shape != images[start].shape):
      yield start, i
      start = i


# Orientation: MTCNN, trained on upright faces, is less confident on a face
# turned over (the astronaut photograph: 0.99 upright, 0.83 upside down), and
# the face mesh returns an upright parsing map whatever the face's
# orientation, so an upside-down video would get labels that disagree with its
# image. A video whose probe frames are clearly more face-like turned by 180
# degrees is turned upright before anything else.
ORIENT_PROBES = 3  # frames per video compared both ways, evenly spaced
ORIENT_MARGIN = 0.05  # mean confidence gain that counts as "clearly"


def upside_down(detector: FaceDetector, frames: list[np.ndarray],
                confidences: list[float]) -> bool:
  """Whether a video's face is upside down (`confidences`: upright frames')."""
  probes = sorted(set(np.linspace(0, len(frames) - 1, ORIENT_PROBES)
                      .round().astype(int).tolist()))
  turned = detector.detect_scored([np.rot90(frames[i], 2) for i in probes])
  gain = (np.mean([c for _, c in turned])
          - np.mean([confidences[i] for i in probes]))
  return bool(gain > ORIENT_MARGIN)


def detect_upright(detector: FaceDetector, frames: list[np.ndarray],
                   auto_orient: bool = True
                   ) -> tuple[list[np.ndarray], list[Box | None], bool]:
  """(frames, box or None per frame, turned): an upside-down video turned.

  With `auto_orient`, a video whose face is upside down (`upside_down`) is
  turned by 180 degrees and detected again; the boxes are in the returned
  frames' pixels.
  """
  scored = detector.detect_scored(frames)
  if auto_orient and upside_down(detector, frames, [c for _, c in scored]):
    frames = [np.rot90(f, 2).copy() for f in frames]
    return frames, detector.detect(frames), True
  return frames, [box for box, _ in scored], False


def fill_missing(boxes: list[Box | None]) -> list[Box] | None:
  """Gives each frame without a box the nearest detected box of its video.

  Returns None when no frame has a box. Ties go to the earlier frame.
  """
  found = [i for i, b in enumerate(boxes) if b is not None]
  if not found:
    return None
  return [b if b is not None else boxes[min(found, key=lambda j: abs(j - i))]
          for i, b in enumerate(boxes)]


def crop(frame: np.ndarray, box: Box, margin: float, size: int) -> np.ndarray:
  """Square crop around the box, enlarged by `margin` of its side per side.

  The square's side is max(w, h) * (1 + 2 * margin); parts outside the frame
  are black. Returns uint8 RGB size x size.
  """
  side = max(box.w, box.h) * (1 + 2 * margin)
  cx, cy = box.x + box.w / 2, box.y + box.h / 2
  left, top = cx - side / 2, cy - side / 2
  # PIL's crop pads outside the frame with black; its resize filters over the
  # whole source support, so large faces are not aliased.
  square = Image.fromarray(frame).crop(
      (round(left), round(top), round(left + side), round(top + side)))
  return np.asarray(square.resize((size, size), Image.BILINEAR))
