"""Writes the crop, depth and parsing PNGs of an image or video for inspection.

  python -m fasjax.preprocess PATH --out DIR [--spoof] [--every 5]
      [--max-frames 25] [--margin 0.25]

Per frame: `<stem>_f<index>_crop.png` (RGB), `_depth.png` (8-bit grey, 0..1
scaled to 0..255, 32x32) and `_parsing.png` (palette PNG: pixel values are
the class ids 0..12, shown in colour by image viewers).
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image

from fasjax.preprocess import chain
from fasjax.preprocess import config as config_lib
from fasjax.preprocess import video

_IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')
# One colour per parsing class (background black), for viewing only.
_PALETTE = np.array(
    [[0, 0, 0], [204, 160, 130], [140, 70, 0], [200, 110, 20], [0, 60, 255],
     [0, 160, 255], [255, 255, 0], [0, 160, 0], [0, 230, 0], [255, 0, 0],
     [255, 255, 255], [255, 0, 200], [140, 0, 140]], np.uint8)


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m fasjax.preprocess',
                              description=__doc__.split('\n')[0])
  p.add_argument('path', help='an image or a video file')
  p.add_argument('--out', required=True, help='output directory')
  p.add_argument('--spoof', action='store_true',
                 help='treat as a spoof (depth all zeros)')
  p.add_argument('--every', type=int, default=config_lib.Sampling.every)
  p.add_argument('--max-frames', type=int, default=config_lib.Sampling.max_frames)
  p.add_argument('--margin', type=float, default=config_lib.ChainConfig.margin)
  p.add_argument('--rotate180', action='store_true',
                 help='turn an upside-down video upright')
  return p


def write_pngs(frames: list[chain.FrameLabels], out: str, stem: str
               ) -> list[str]:
  """Writes the PNGs of processed frames; returns the written paths."""
  os.makedirs(out, exist_ok=True)
  written = []
  for f in frames:
    base = os.path.join(out, f'{stem}_f{f.frame_index:05d}')
    parsing = Image.fromarray(f.parsing, mode='P')
    parsing.putpalette(_PALETTE.ravel().tolist())
    depth = np.round(f.depth * 255).astype(np.uint8)
    for suffix, image in (('crop', Image.fromarray(f.image)),
                          ('depth', Image.fromarray(depth)),
                          ('parsing', parsing)):
      image.save(f'{base}_{suffix}.png')
      written.append(f'{base}_{suffix}.png')
  return written


def main(argv: list[str] | None = None) -> int:
  """Command-line entry point; returns the exit status."""
  args = _parser().parse_args(argv)
  stem = os.path.splitext(os.path.basename(args.path))[0]
  try:
    if args.path.lower().endswith(_IMAGE_SUFFIXES):
      frames = [(0, video.read_image(args.path))]
    else:
      sampling = config_lib.Sampling(args.every, args.max_frames)
      frames = video.read_frames(args.path, sampling, args.rotate180)
    preprocessor = chain.Preprocessor(
        config_lib.ChainConfig(margin=args.margin))
    processed = preprocessor.video(frames, live=not args.spoof)
  except (video.VideoError, chain.NoFaceError, OSError) as e:
    print(f'error: {args.path}: {e}', file=sys.stderr)
    return 1
  written = write_pngs(processed, args.out, stem)
  missed = sum(not f.detected for f in processed)
  doubtful = sum(f.mesh_score < 0.5 for f in processed)
  print(f'{len(processed)} frames ({missed} without a detected face, cropped '
        f'at the nearest detected box; {doubtful} with a doubtful face mesh) '
        f'-> {len(written)} PNGs in {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
