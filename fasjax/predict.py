r"""Scores faces in images and videos with a trained run.

  python -m fasjax.predict --workdir=W PATH [PATH...] [--overlay DIR]

Each input goes through the chain the real-data builders use (fasjax.preprocess:
PyAV decoding, every 5th frame up to 25 per video, MTCNN on a frame
downscaled to 320 px, the largest confident face, a square crop enlarged by
25% per side and resized to 256) and then exactly the evaluation input
conversion (antialiased resize to the model's side S, RGB/255 ‖ PIL HSV).
Frames without a face borrow the nearest detected box of their video (marked
`"detected": false`), as in the builders. An upside-down input is turned
upright first, as in the builders (`"turned180": true`; its boxes and
overlays are in the turned frame).

One JSON object per input is printed on stdout, in input order:
`{"input", "p_live", "decision", "threshold", "step", "turned180",
"frames": [{"index",
"p_live", "box": [x, y, w, h], "detected"}]}` where `p_live` is the mean
P(live) of the frames (the video score of docs/design.md §3) and `decision` is
`live` iff p_live >= threshold, the run's honest threshold (fasjax.trained).
An input that cannot be scored gets `{"input", "error"}` with the reason and
the others are still scored. Exit status: 0 if any input was scored, 1 if
every input failed, 2 if the workdir holds no usable run.

The workdir and the inputs' existence are checked before JAX, TensorFlow and
the model are loaded (10-30 s), so a mistyped path answers at once. A model
trained on the synthetic benchmark only says so on stderr: it has never seen
a real face, so its decisions on photographs mean nothing.

Decisions: images larger than --max_pixels (default 50 megapixels) are
refused before decoding (decompression bombs, also PIL's own check); a file
that PIL cannot identify is tried as a video; the model sees faces only, so a
photo without a detectable face is an error, not a spoof.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any, Callable, Sequence, TYPE_CHECKING

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from fasjax import workdir_lock
from fasjax.preprocess import config as preprocess_config
from fasjax.preprocess import detect
from fasjax.preprocess import video

# fasjax.evaluate, .input_pipeline and .trained import JAX and TensorFlow:
# they are imported where needed, after the command line has been checked.
if TYPE_CHECKING:
  from fasjax import trained

DEFAULT_MAX_PIXELS = video.MAX_PIXELS
BATCH = 16  # frames per model call; padded, so one compilation serves all


class InputError(Exception):
  """An input that cannot be scored; the message says why."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """How inputs are read and cropped (the builders' defaults)."""
  sampling: preprocess_config.Sampling = preprocess_config.Sampling()
  chain: preprocess_config.ChainConfig = preprocess_config.ChainConfig()
  max_pixels: int = DEFAULT_MAX_PIXELS


def check_path(path: str) -> None:
  """Raises InputError for a path that cannot be an input (no decoding)."""
  if not os.path.exists(path):
    raise InputError('no such file')
  if os.path.isdir(path):
    raise InputError('is a directory; pass image or video files')
  if os.path.getsize(path) == 0:
    raise InputError('empty file (0 bytes)')


def read_frames(path: str, settings: Settings) -> list[tuple[int, np.ndarray]]:
  """(frame index, uint8 RGB) of an image (index 0) or a video's sampled frames."""
  check_path(path)
  try:
    return [(0, video.read_image(path, settings.max_pixels))]
  except video.NotAnImageError:
    pass  # Perhaps a video.
  except video.VideoError as e:
    raise InputError(str(e).removeprefix(f'{path}: ')) from e
  try:
    frames = video.read_frames(path, settings.sampling)
  except video.VideoError as e:
    reason = str(e).removeprefix(f'{path}: ')
    raise InputError(f'not a readable image, and as a video: {reason}') from e
  height, width = frames[0][1].shape[:2]
  if width * height > settings.max_pixels:
    raise InputError(f'video frames of {width}x{height} pixels exceed '
                     f'--max_pixels={settings.max_pixels}')
  return frames


def find_faces(frames: Sequence[np.ndarray], detector: detect.FaceDetector,
               auto_orient: bool = True
               ) -> tuple[list[np.ndarray], list[detect.Box], list[bool], bool]:
  """(frames, one face box per frame, detected, turned180).

  An upside-down input is turned upright first (detect.detect_upright); the
  boxes are in the returned frames' pixels. A frame without a face borrows
  the nearest frame's box.
  """
  frames, found, turned = detect.detect_upright(detector, list(frames),
                                                auto_orient)
  boxes = detect.fill_missing(found)
  if boxes is None:
    what = 'the image' if len(frames) == 1 else f'any of {len(frames)} frames'
    raise InputError(f'no face detected in {what}')
  return frames, boxes, [b is not None for b in found], turned


def model_inputs(frames: Sequence[np.ndarray], boxes: Sequence[detect.Box],
                 chain: preprocess_config.ChainConfig,
                 image_size: int) -> np.ndarray:
  """float32 [N, S, S, 6] model inputs of the face crops."""
  from fasjax import input_pipeline
  crops = np.stack([detect.crop(f, b, chain.margin, chain.crop_size)
                    for f, b in zip(frames, boxes)])
  return input_pipeline.model_input(crops, image_size).numpy()


def score(predict_fn: Callable[..., Any], model: trained.TrainedModel,
          images_NxSxSx6: np.ndarray, batch: int = BATCH) -> np.ndarray:
  """P(live) [N] of model inputs, in fixed-size (padded) batches."""
  out = []
  for start in range(0, len(images_NxSxSx6), batch):
    chunk = images_NxSxSx6[start:start + batch]
    padded = np.zeros((batch,) + chunk.shape[1:], np.float32)
    padded[:len(chunk)] = chunk
    p_live = predict_fn(model.params, model.batch_stats, padded)['p_live']
    out.append(np.asarray(p_live, np.float64)[:len(chunk)])
  return np.concatenate(out)


def draw_overlay(frame: np.ndarray, box: detect.Box, p_live: float,
                 decision: str) -> Image.Image:
  """The frame with its face box and score drawn in (green live, red spoof)."""
  image = Image.fromarray(frame)
  draw = ImageDraw.Draw(image)
  colour = (0, 200, 0) if decision == 'live' else (230, 0, 0)
  line = max(2, round(max(image.size) / 300))
  draw.rectangle([box.x, box.y, box.x + box.w, box.y + box.h], outline=colour,
                 width=line)
  font = ImageFont.load_default(size=max(12, 6 * line))
  draw.text((box.x, max(0.0, box.y - 8 * line)),
            f'{decision} P(live)={p_live:.3f}', fill=colour, font=font)
  return image


def predict_one(path: str, model: trained.TrainedModel,
                predict_fn: Callable[..., Any], detector: detect.FaceDetector,
                settings: Settings = Settings(),
                overlay_prefix: str | None = None) -> dict[str, Any]:
  """The JSON object of one input (raises InputError if it cannot be scored)."""
  from fasjax import trained
  indexed = read_frames(path, settings)
  frames, boxes, detected, turned = find_faces(
      [f for _, f in indexed], detector, settings.chain.auto_orient)
  p_frames = score(predict_fn, model,
                   model_inputs(frames, boxes, settings.chain,
                                model.image_size))
  p_live = float(np.mean(p_frames))
  decision = trained.decide(p_live, model.threshold)
  if overlay_prefix is not None:
    for (index, _), frame, box, p in zip(indexed, frames, boxes, p_frames):
      draw_overlay(frame, box, float(p), trained.decide(float(p), model.threshold)
                   ).save(f'{overlay_prefix}_f{index:05d}.png')
  return {
      'input': path, 'p_live': p_live, 'decision': decision,
      'threshold': model.threshold, 'step': model.step,
      'turned180': turned,
      'frames': [{'index': int(i), 'p_live': float(p),
                  'box': [round(float(v), 1) for v in (b.x, b.y, b.w, b.h)],
                  'detected': bool(d)}
                 for (i, _), p, b, d in zip(indexed, p_frames, boxes,
                                            detected)],
  }


def predict_paths(paths: Sequence[str], model: trained.TrainedModel,
                  settings: Settings = Settings(),
                  overlay_dir: str | None = None):
  """Yields one JSON object per path; failures carry `error` instead."""
  from fasjax import evaluate
  predict_fn = evaluate.make_predict_fn(model.nets)
  detector = detect.FaceDetector(settings.chain.detect_size)
  if overlay_dir:
    os.makedirs(overlay_dir, exist_ok=True)
  for number, path in enumerate(paths):
    prefix = None
    if overlay_dir:
      stem = os.path.splitext(os.path.basename(path))[0]
      prefix = os.path.join(overlay_dir, f'{number:03d}_{stem}')
    try:
      yield predict_one(path, model, predict_fn, detector, settings, prefix)
    except InputError as e:
      yield {'input': path, 'error': str(e)}
    except Exception as e:  # pylint: disable=broad-except
      # One odd file must not cost the user the other inputs' scores.
      yield {'input': path,
             'error': f'unexpected failure ({type(e).__name__}: {e})'}


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m fasjax.predict',
                              description=__doc__.split('\n')[0])
  p.add_argument('paths', nargs='+', metavar='PATH',
                 help='image or video files')
  p.add_argument('--workdir', required=True, help='the trained run')
  p.add_argument('--overlay', metavar='DIR',
                 help='also write every scored frame with box and score')
  p.add_argument('--every', type=int,
                 default=preprocess_config.Sampling.every,
                 help='video: score every k-th frame')
  p.add_argument('--max_frames', type=int,
                 default=preprocess_config.Sampling.max_frames,
                 help='video: at most this many frames')
  p.add_argument('--max_pixels', type=int, default=DEFAULT_MAX_PIXELS,
                 help='refuse larger images (decompression bombs)')
  return p


def trained_on_synthetic_data(config) -> bool:
  """Whether every domain of the run's config is the synthetic benchmark."""
  return all(str(b).startswith('synthetic_fas')
             for b in dict(config.data.builders).values())


SYNTHETIC_WARNING = (
    'warning: this model was trained on the synthetic benchmark only and has '
    'never seen a real face; its decisions on real photographs and videos '
    'mean nothing (train on the real datasets for that).')


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry point; returns the exit status."""
  args = _parser().parse_args(argv)
  # Everything that needs no model is checked before the slow imports.
  try:
    settings = Settings(
        sampling=preprocess_config.Sampling(args.every, args.max_frames),
        max_pixels=args.max_pixels)
    workdir_lock.check_run(args.workdir, need_config=True)
    if args.overlay and os.path.isfile(args.overlay):
      raise ValueError(f'--overlay={args.overlay} is a file; name a '
                       'directory (it is created if missing).')
  except (workdir_lock.NoRunError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  early: dict[int, dict[str, Any]] = {}
  for number, path in enumerate(args.paths):
    try:
      check_path(path)
    except InputError as e:
      early[number] = {'input': path, 'error': str(e)}
  if len(early) == len(args.paths):
    for number in range(len(args.paths)):
      print(json.dumps(early[number]), flush=True)
    return 1
  from fasjax import trained  # JAX and TensorFlow: seconds.
  try:
    model = trained.load(args.workdir)
  except trained.RunNotUsableError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if trained_on_synthetic_data(model.config):
    print(SYNTHETIC_WARNING, file=sys.stderr, flush=True)
  scored = 0
  for result in predict_paths(args.paths, model, settings, args.overlay):
    scored += 'error' not in result
    print(json.dumps(result), flush=True)
  return 0 if scored else 1


if __name__ == '__main__':
  sys.exit(main())
