"""Video decoding (PyAV, FFmpeg's bindings), frame sampling, checked image reads."""

import os
import warnings

import av
import numpy as np
from PIL import Image

from fasjax.preprocess import config as config_lib


# Larger images are refused before decoding (decompression bombs, or photos
# far above the 256-pixel crops the models see).
MAX_PIXELS = 50_000_000


class VideoError(Exception):
  """A video file that cannot be used (missing, empty, corrupt, no frames)."""


class NotAnImageError(VideoError):
  """PIL does not recognise the file as an image (it may be a video)."""


def read_frames(path: str | os.PathLike,
                sampling: config_lib.Sampling = config_lib.Sampling(),
                rotate180: bool = False) -> list[tuple[int, np.ndarray]]:
  """Decodes the sampled frames of a video as (frame index, uint8 RGB HxWx3).

  Raises VideoError, naming the file, for missing, zero-byte, undecodable,
  truncated (when the cut is reached) or frameless files, so that every
  kept video has the sampling it claims. `rotate180` turns upside-down
  recordings upright.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise VideoError(f'{path}: no such file')
  if os.path.getsize(path) == 0:
    raise VideoError(f'{path}: zero-byte file')
  frames = []
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise VideoError(f'{path}: no video stream')
      stream = container.streams.video[0]
      # Every frame is decoded (inter-coded video), so let FFmpeg use threads.
      stream.thread_type = 'AUTO'
      decoded = 0
      for index, frame in enumerate(container.decode(stream)):
        decoded = index + 1
        if index % sampling.every:
          continue
        rgb = frame.to_ndarray(format='rgb24')
        frames.append((index, np.rot90(rgb, 2).copy() if rotate180 else rgb))
        if sampling.max_frames and len(frames) >= sampling.max_frames:
          break
      else:
        _check_complete(path, decoded, stream.frames)
  except (av.FFmpegError, OSError, ValueError) as e:
    # Some damaged files only fail half way: the whole video is skipped.
    raise VideoError(f'{path}: undecodable ({type(e).__name__}: {e})') from e
  if not frames:
    raise VideoError(f'{path}: decodes to zero frames')
  return frames


def _check_complete(path: str, decoded: int, declared: int):
  """Raises VideoError when a file decodes to fewer frames than it declares.

  A truncated AVI decodes without an error up to the cut; its header still
  counts all frames. A small slack allows for headers that are off by a
  frame or two; files that declare nothing (0) are not checked.
  """
  if declared and decoded < declared - max(2, declared // 50):
    raise VideoError(f'{path}: truncated: decodes to {decoded} of the '
                     f'{declared} frames its header declares')


def read_image(path: str | os.PathLike,
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
  """Reads an image file as uint8 RGB HxWx3, checking its size first.

  Raises NotAnImageError if PIL does not recognise the file, and VideoError
  (naming the file) for a corrupt or truncated image or one larger than
  `max_pixels` (read from the header, before decoding).
  """
  with warnings.catch_warnings():
    # The size check below is the limit; PIL's warning would only repeat it
    # (its hard DecompressionBombError above ~179 MP still applies).
    warnings.simplefilter('ignore', Image.DecompressionBombWarning)
    try:
      with Image.open(path) as image:
        width, height = image.size
        if width * height > max_pixels:
          raise VideoError(
              f'{path}: image of {width}x{height} pixels exceeds --max_pixels='
              f'{max_pixels} (a decompression bomb or a huge photo): '
              'downscale it, or raise --max_pixels if you trust the file')
        return np.asarray(image.convert('RGB'))
    except Image.UnidentifiedImageError as e:
      raise NotAnImageError(f'{path}: not an image PIL can read') from e
    except Image.DecompressionBombError as e:
      raise VideoError(f'{path}: refused as a decompression bomb: {e}') from e
    except (OSError, SyntaxError, ValueError) as e:
      raise VideoError(f'{path}: corrupt or truncated image ({e})') from e


