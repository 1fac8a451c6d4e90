"""Shared by the tests that need real video files."""

import pathlib

import av
import numpy as np


def write_video(path: pathlib.Path, frames: list[np.ndarray]) -> None:
  """Encodes RGB frames: MPEG-4 part 2 in .avi/.mov, H.264 in .mp4.

  With no frames the file still gets its header (a 64x64 stream), i.e. a
  valid container that decodes to zero frames.
  """
  codec = 'h264' if path.suffix == '.mp4' else 'mpeg4'
  with av.open(str(path), 'w') as container:
    stream = container.add_stream(codec, rate=25)
    stream.height, stream.width = frames[0].shape[:2] if frames else (64, 64)
    stream.pix_fmt = 'yuv420p'
    if not frames:
      container.start_encoding()  # muxing nothing would write no header
    for frame in frames:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, 'rgb24')))
    container.mux(stream.encode())
