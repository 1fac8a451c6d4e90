r"""Speed of the preprocessing chain and projected build time per dataset.

Times the full chain of the real builders (decode with PyAV, MTCNN on the
downscaled frame, crop, face mesh, pseudo depth and parsing) on H.264 videos
of scikit-image's `astronaut` photo at the releases' resolutions, at the
default sampling (every 5th frame, at most 25 per video: 121 frames decoded,
25 processed), in one process, best of three runs. The projection multiplies by each release's
video count (all official splits) at its resolutions; the multi-process
Beam runner divides it by about the number of free cores.

Assumed releases (videos, resolution): OULU-NPU 4950 at 1920x1080;
CASIA-FASD 600, a third at 1280x720 and the rest at 640x480; Replay-Attack
1200 at 320x240; MSU-MFSD 280 at 640x480 (laptop) and 720x480 (android;
timed as 640x480). All are long enough to give 25 sampled frames.

  python benchmarks/preprocess.py  # from the repository root
"""

import argparse
import os
import pathlib
import tempfile
import time

import av
import numpy as np
from PIL import Image
from skimage import data as skdata

import repo_root  # pylint: disable=unused-import  # checkout root on sys.path

from fasjax.preprocess import chain
from fasjax.preprocess import config as config_lib
from fasjax.preprocess import video

COMMAND = 'python benchmarks/preprocess.py'
SAMPLING = config_lib.Sampling()
REPEATS = 3
RESOLUTIONS = ((1920, 1080), (1280, 720), (640, 480), (320, 240))
# Videos per release and the share of them at each resolution.
RELEASES = {
    'oulu_npu': (4950, {(1920, 1080): 1.0}),
    'casia_fasd': (600, {(1280, 720): 1 / 3, (640, 480): 2 / 3}),
    'replay_attack': (1200, {(320, 240): 1.0}),
    'msu_mfsd': (280, {(640, 480): 1.0}),
}


def _frames(width: int, height: int, n: int):
  """The astronaut photo panning and zooming, face about a third of the height."""
  photo = Image.fromarray(skdata.astronaut())
  aspect = height / width
  for i in range(n):
    side = 360 + 0.5 * i
    cx, cy = 215 + 0.3 * i, 175
    box = (cx - side / 2, cy - aspect * side / 2, cx + side / 2,
           cy + aspect * side / 2)
    yield np.asarray(photo.resize((width, height), Image.BILINEAR, box=box))


def write_video(path: pathlib.Path, width: int, height: int, n: int):
  """Encodes n frames as H.264 (the fastest preset: encoding is not timed)."""
  with av.open(str(path), 'w') as container:
    stream = container.add_stream('h264', rate=30,
                                  options={'preset': 'ultrafast'})
    stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
    for frame in _frames(width, height, n):
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, 'rgb24')))
    container.mux(stream.encode())


def time_video(path: pathlib.Path, pre: chain.Preprocessor
               ) -> tuple[float, float, int]:
  """(decode seconds, chain seconds, frames) of one video."""
  start = time.perf_counter()
  frames = video.read_frames(path, SAMPLING)
  decoded = time.perf_counter()
  out = pre.video(frames, live=True)
  assert all(f.detected for f in out), 'the benchmark face was missed'
  return decoded - start, time.perf_counter() - decoded, len(out)


def main():
  """Prints frames per second per resolution and the projected build times."""
  pre = chain.Preprocessor()
  n = (SAMPLING.max_frames - 1) * SAMPLING.every + 1
  per_video = {}
  print(f'Full chain, one process, {SAMPLING.max_frames} of {n} frames per '
        'video (H.264):')
  with tempfile.TemporaryDirectory() as tmp:
    for width, height in RESOLUTIONS:
      path = pathlib.Path(tmp) / f'{width}x{height}.mp4'
      write_video(path, width, height, n)
      time_video(path, pre)  # warm-up: graph tracing, model loading
      # The best of a few runs: the machine is shared, the minimum is the
      # chain's own cost.
      decode, rest, frames = min((time_video(path, pre) for _ in range(REPEATS)),
                                 key=lambda t: t[0] + t[1])
      per_video[(width, height)] = decode + rest
      print(f'  {width}x{height}: {frames / (decode + rest):5.1f} frames/s '
            f'({decode:.2f} s decoding, {rest:.2f} s detect+crop+labels per '
            f'video)')
  print('Projected build time at the default sampling (one process):')
  for name, (videos, mix) in RELEASES.items():
    seconds = videos * sum(share * per_video[r] for r, share in mix.items())
    print(f'  {name:14s} {videos:5d} videos x {SAMPLING.max_frames} frames: '
          f'{seconds / 3600:5.2f} h')
  load = os.getloadavg()[0]
  print(f'({COMMAND}; {os.cpu_count()} cores, load average {load:.1f})')


if __name__ == '__main__':
  # No options; --help describes the benchmark instead of running it.
  argparse.ArgumentParser(
      description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
  main()
