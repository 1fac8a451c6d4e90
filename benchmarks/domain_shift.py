r"""Checks that `synthetic_fas` has a real, learnable domain shift.

For each leave-one-out protocol (OCI->M, OMI->C, OCM->I, ICM->O) a plain
logistic regression on hand-made frame features (16x16 RGB pixels, colour
statistics, luma and chroma radial spectrum energy) is trained on the three
source domains' `train` frames and scored on the target's `train` + `test` frames
(cross-domain, the video use of the field's tables), next to the same model
trained on the target's own `train` and scored on its `test` (in-domain).
Frame-level AUC and HTER at the target's EER threshold (the protocol numbers
of the field).

A useful benchmark is clearly learnable in-domain, clearly imperfect across
domains (naive colour and layout statistics do not transfer) and still above
chance across domains on average (texture cues do).

  python benchmarks/domain_shift.py  # from the repository root
  python benchmarks/domain_shift.py --large --data_dir=DIR

`--large` measures the `<domain>_large` configs; with `--data_dir` the frames
are read from a built tfds data dir (`python -m
fasjax.datasets.prepare_synthetic --large --data_dir=DIR`) instead of being
rendered again.
"""

import argparse
import sys
import time

import numpy as np
from PIL import Image
from sklearn import linear_model
from sklearn import pipeline
from sklearn import preprocessing

import repo_root  # pylint: disable=unused-import  # checkout root on sys.path

from fasjax import metrics
from fasjax.datasets.synthetic_fas import synthetic_fas

COMMAND = 'python benchmarks/domain_shift.py'
PROTOCOLS = (('oci', 'm'), ('omi', 'c'), ('ocm', 'i'), ('icm', 'o'))

def _radial_energy(channel: np.ndarray, bands: int) -> np.ndarray:
  """Log power of a (n, n) channel in `bands` radial frequency bands."""
  power = np.abs(np.fft.fftshift(np.fft.fft2(channel - channel.mean()))) ** 2
  n = channel.shape[0]
  yy, xx = np.mgrid[0:n, 0:n] - n // 2
  band = np.minimum((np.hypot(yy, xx) / (n / 2) * bands).astype(int), bands)
  return np.log1p(np.bincount(band.ravel(), power.ravel(), bands + 1)[:bands])


def features(image: np.ndarray) -> np.ndarray:
  """Pixels at 16x16, colour statistics, luma and chroma radial spectra."""
  x = image.astype(np.float32) / 255.0
  small = np.asarray(Image.fromarray(image).resize(
      (16, 16), Image.Resampling.BOX), np.float32) / 255.0
  hsv = np.asarray(Image.fromarray(image).convert('HSV'), np.float32) / 255.0
  stats = np.concatenate([x.mean((0, 1)), x.std((0, 1)),
                          hsv.mean((0, 1)), hsv.std((0, 1))])
  # Chroma spectra see colour moire and halftone that cancel out in luma.
  spectra = [_radial_energy(x.mean(-1), 8),
             _radial_energy(x[..., 0] - x[..., 1], 4),
             _radial_energy(x[..., 2] - x[..., :2].mean(-1), 4)]
  return np.concatenate([small.ravel(), stats] + spectra)


def _frames(domain: str, split: str, large: bool, data_dir: str | None):
  """(image, label) of every frame: rendered, or read from a built data dir."""
  if data_dir is None:
    for _, ex in synthetic_fas.generate_examples(domain, split, large=large):
      yield ex['image'], ex['label']
    return
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = synthetic_fas.SyntheticFas(
      config=f'{domain}_large' if large else domain, data_dir=data_dir)
  if not builder.is_prepared():
    raise SystemExit(f'{builder.name}/{builder.builder_config.name} is not '
                     f'built in {data_dir}; run python -m '
                     'fasjax.datasets.prepare_synthetic first.')
  for ex in tfds.as_numpy(builder.as_dataset(split=split)):
    yield ex['image'], ex['label']


def load(domain: str, split: str, large: bool = False,
         data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Features and labels of every frame of one domain's split."""
  xs, ys = [], []
  for image, label in _frames(domain, split, large, data_dir):
    xs.append(features(image))
    ys.append(label)
  return np.stack(xs), np.array(ys)


def _model():
  return pipeline.make_pipeline(
      preprocessing.StandardScaler(),
      linear_model.LogisticRegression(C=0.1, max_iter=2000))


def evaluate(train, test) -> tuple[float, float]:
  """AUC and HTER of a model fit on `train` and scored on `test`."""
  model = _model().fit(*train)
  scores = model.predict_proba(test[0])[:, 1]
  _, threshold = metrics.eer(scores, test[1])
  return (metrics.auc(scores, test[1]),
          metrics.hter(scores, test[1], threshold))


def main() -> None:
  """Prints the cross-domain vs in-domain table."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--large', action='store_true',
                      help='the <domain>_large configs')
  parser.add_argument('--data_dir', default=None,
                      help='read the frames from this built tfds data dir')
  args = parser.parse_args()
  start = time.time()
  data = {(d, s): load(d, s, args.large, args.data_dir)
          for d in 'ocim' for s in ('train', 'test')}
  gen_time = time.time() - start
  print(f'# {COMMAND}' + (' --large' if args.large else ''))
  print(f'# frames: ' + ', '.join(
      f'{d} {len(data[(d, "train")][1])}+{len(data[(d, "test")][1])}'
      for d in 'ocim') + ' (train+test)')
  print('# logistic regression on 16x16 RGB + colour stats + luma/chroma '
        'spectra; frame level; HTER at the target EER threshold')
  print('# cross: sources train -> target train+test; '
        'in: target train -> target test')
  print(f'{"protocol":<10}{"cross AUC":>10}{"cross HTER":>12}'
        f'{"in AUC":>9}{"in HTER":>10}')
  cross = []
  for sources, target in PROTOCOLS:
    train = tuple(np.concatenate(a) for a in zip(
        *[data[(d, 'train')] for d in sources]))
    target_all = tuple(np.concatenate(a) for a in zip(
        data[(target, 'train')], data[(target, 'test')]))
    c_auc, c_hter = evaluate(train, target_all)
    i_auc, i_hter = evaluate(data[(target, 'train')], data[(target, 'test')])
    cross.append(c_auc)
    name = f'{sources.upper()}->{target.upper()}'
    print(f'{name:<10}{c_auc:>10.3f}{c_hter:>12.3f}{i_auc:>9.3f}'
          f'{i_hter:>10.3f}')
  print(f'mean cross-domain AUC {np.mean(cross):.3f}; '
        f'{"loading" if args.data_dir else "generation"} {gen_time:.1f} s')
  sys.stdout.flush()


if __name__ == '__main__':
  main()
