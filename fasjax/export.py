r"""Exports a trained run's inference path to TensorFlow SavedModel or TFLite.

  python -m fasjax.export --workdir=W --format=saved_model|tflite --out=DIR
      [--input=features|rgb]

The exported function is the eval-mode forward of the honest rule's
checkpoint (fasjax.trained) through jax2tf (StableHLO inside the SavedModel;
the TFLite converter lowers it to TFLite ops). Signature `serving_default`:

- input `images`, one of
  - `features` (default): float32 [B, S, S, 6], RGB/255 ‖ HSV/255 of a face
    crop resized to S (fasjax.input_pipeline.model_input computes it);
  - `rgb` (SavedModel only): uint8 [B, S, S, 3], the face crop already
    resized to S; the RGB ‖ HSV conversion runs inside the model, bit-exact
    with training. TFLite has no float64 kernels, which PIL-exact HSV needs,
    so a TFLite app computes the 6 channels itself.
- outputs `p_live` float32 [B] (P(live); decide live iff p_live >=
  threshold) and `depth` float32 [B, S/8, S/8] (the depth estimator's map).

The batch size B is free (shape-polymorphic). Next to the model, the export
writes model_card.json and MODEL_CARD.md: protocol, metrics, threshold,
input spec, preprocessing, run and export commits.

The command line checks the workdir, --out and the options before JAX and
TensorFlow are imported (10-30 s), so a mistake answers at once.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import Any, Sequence, TYPE_CHECKING

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np

from fasjax import provenance
from fasjax import workdir_lock
from fasjax.preprocess import config as preprocess_config

# JAX, TensorFlow and the modules that import them are imported inside the
# functions that need them, after the command line has been checked.
if TYPE_CHECKING:
  import jax.numpy as jnp
  import tensorflow as tf
  from fasjax import trained

FORMATS = ('saved_model', 'tflite')
INPUTS = ('features', 'rgb')
SAVED_MODEL_DIR = 'saved_model'
TFLITE_FILE = 'model.tflite'
PyTree = Any


class ExportError(RuntimeError):
  """The model could not be converted to the requested format."""


def forward(params: PyTree, batch_stats: PyTree, images_BxSxSx6: jnp.ndarray,
            *, nets) -> dict[str, jnp.ndarray]:
  """The exported outputs: float32 P(live) [B] and depth [B, S/8, S/8]."""
  import jax.numpy as jnp
  from fasjax import evaluate
  out = evaluate.predict_step(params, batch_stats, images_BxSxSx6, nets=nets)
  return {'p_live': out['p_live'].astype(jnp.float32),
          'depth': out['depth'].astype(jnp.float32)}


def _check_input_kind(input_kind: str) -> None:
  if input_kind not in INPUTS:
    raise ValueError(f'--input must be one of {INPUTS}, got {input_kind!r}')


def input_spec(image_size: int, input_kind: str) -> tf.TensorSpec:
  """The signature's input: batch-free features or uint8 RGB crops."""
  import tensorflow as tf
  _check_input_kind(input_kind)
  channels, dtype = {'features': (6, tf.float32),
                     'rgb': (3, tf.uint8)}[input_kind]
  return tf.TensorSpec([None, image_size, image_size, channels], dtype,
                       name='images')


def tf_module(model: trained.TrainedModel, input_kind: str) -> tf.Module:
  """A tf.Module holding the weights as variables and a `serve` function."""
  import jax
  from jax.experimental import jax2tf
  import tensorflow as tf
  from fasjax import input_pipeline
  size = model.image_size
  # Parameters and batch statistics are float32 whatever model.dtype says.
  module = tf.Module()
  module.weights = jax.tree.map(
      lambda a: tf.Variable(np.asarray(a), trainable=False),
      (model.params, model.batch_stats))
  converted = jax2tf.convert(
      lambda w, x: forward(w[0], w[1], x, nets=model.nets),
      polymorphic_shapes=[None, f'(b, {size}, {size}, 6)'],
      with_gradient=False)

  @tf.function(autograph=False,
               input_signature=[input_spec(size, input_kind)])
  def serve(images):
    if input_kind == 'rgb':
      images = input_pipeline.to_model_input(images)
    return converted(module.weights, images)

  module.serve = serve
  return module


def export_saved_model(model: trained.TrainedModel, out_dir: str,
                       input_kind: str = 'features') -> str:
  """Writes OUT/saved_model; returns its path."""
  import tensorflow as tf
  path = os.path.join(out_dir, SAVED_MODEL_DIR)
  module = tf_module(model, input_kind)
  tf.saved_model.save(module, path,
                      signatures={'serving_default': module.serve})
  return path


def export_tflite(model: trained.TrainedModel, out_dir: str,
                  input_kind: str = 'features') -> str:
  """Writes OUT/model.tflite (float32, features input); returns its path."""
  import tensorflow as tf
  if input_kind != 'features':
    raise ValueError(
        'TFLite export takes --input=features only: the PIL-exact HSV '
        'conversion needs float64 arithmetic, which TFLite kernels lack. '
        'Compute the 6 input channels in the app (see MODEL_CARD.md), or '
        'export --format=saved_model --input=rgb.')
  module = tf_module(model, input_kind)
  concrete = module.serve.get_concrete_function()
  converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete],
                                                              module)
  try:
    flatbuffer = converter.convert()
  except Exception as e:  # pylint: disable=broad-except
    # The converter raises its own ConverterError with pages of MLIR.
    first_error = next((line for line in str(e).splitlines()
                        if 'error:' in line), str(e)[:300])
    raise ExportError(f'The TFLite converter failed: {first_error.strip()}'
                      ' -- export --format=saved_model instead, and report'
                      ' the op.') from e
  path = os.path.join(out_dir, TFLITE_FILE)
  provenance.write_bytes(path, flatbuffer)
  return path


def _read_json(path: str) -> dict[str, Any] | None:
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def model_card(model: trained.TrainedModel, workdir: str, fmt: str,
               input_kind: str) -> dict[str, Any]:
  """What a user of the exported file needs to know, as a JSON-able dict."""
  from fasjax import evaluate
  c = model.config
  size = model.image_size
  chain = preprocess_config.ChainConfig()
  builders = dict(c.data.builders)
  synthetic = all(b.startswith('synthetic_fas') for b in builders.values())
  results = _read_json(os.path.join(workdir, 'results.json'))
  run = _read_json(os.path.join(workdir, 'provenance.json')) or {}
  channels = ('R/255, G/255, B/255, H/255, S/255, V/255 (PIL convert("HSV") '
              'bytes of the uint8 crop)')
  return evaluate.to_json_safe({
      'model': 'fasjax multi-task meta-learning face anti-spoofing '
               '(Chuang, Wang, Lai, FG 2023)',
      'format': fmt,
      'protocol': {'name': c.protocol, 'variant': c.variant,
                   'sources': list(c.data.sources), 'target': c.data.target,
                   'builders': builders, 'seed': c.seed},
      'checkpoint': {'step': model.step, 'rule': 'honest: lowest pooled '
                     'source-dev video EER; the target chose nothing'},
      'threshold': model.threshold,
      'decision': 'live iff p_live >= threshold',
      'metrics_at_threshold': {
          'target': c.data.target, 'level': 'video (mean P(live) of frames)',
          **{k: model.selection[k] for k in ('hter', 'auc', 'eer',
                                              'tpr_at_fpr_1pct', 'dev_eer')
             if k in model.selection}},
      'protocol_numbers_optimistic': (results or {}).get('protocol'),
      'input': {
          'name': 'images', 'kind': input_kind,
          'shape': ['batch', size, size, 6 if input_kind == 'features' else 3],
          'dtype': 'float32' if input_kind == 'features' else 'uint8',
          'channels': channels if input_kind == 'features'
                      else 'R, G, B bytes (conversion inside the model)',
          'preprocessing': (
              f'MTCNN face box on the frame downscaled to '
              f'{chain.detect_size} px (largest confident face), square crop '
              f'of side max(w, h) * {1 + 2 * chain.margin:g} centred on the '
              f'box (black outside the frame), bilinear resize to '
              f'{chain.crop_size}, then antialiased bilinear resize to {size} '
              'rounded to uint8. Video score: mean p_live of every 5th frame '
              '(<= 25). `python -m fasjax.predict` does all of this.'),
      },
      'outputs': {'p_live': ['batch'],
                  'depth': ['batch', size // 8, size // 8]},
      'architecture': {'image_size': size, 'width': c.model.width,
                       'use_asc': c.model.use_asc, 'dtype': c.model.dtype},
      'trained_on_synthetic_data': synthetic,
      'limitations': (
          'Trained on the procedural synthetic benchmark: its scores mean '
          'nothing on real faces.' if synthetic else
          'Scores are calibrated on the source domains only; expect the '
          'target-domain error above on unseen cameras and attacks.'),
      'run_commit': run.get('git_commit', 'unknown'),
      'export_commit': provenance.git_commit(),
      'versions': provenance.versions(),
      'exported_utc': datetime.datetime.now(datetime.timezone.utc)
                      .strftime('%Y-%m-%dT%H:%M:%SZ'),
  })


def card_markdown(card: dict[str, Any]) -> str:
  """MODEL_CARD.md: the card's fields as readable sections."""
  lines = [f'# Model card: {card["protocol"]["name"]} '
           f'({card["protocol"]["variant"]}, seed {card["protocol"]["seed"]})',
           '', card['model'], '', f'Format: {card["format"]}.', '']
  for key, value in card.items():
    if key in ('model', 'format'):
      continue
    if isinstance(value, bool):
      # A yes/no field reads as a sentence, not a heading followed by "True".
      heading = key.replace('_', ' ').capitalize()
      lines += [f'**{heading}:** {"yes" if value else "no"}.', '']
      continue
    lines.append(f'## {key.replace("_", " ").capitalize()}')
    lines.append('')
    if isinstance(value, (dict, list)):
      lines += ['```json', json.dumps(value, indent=2), '```', '']
    else:
      lines += [str(value), '']
  return '\n'.join(lines)


def export(workdir: str, fmt: str, out_dir: str,
           input_kind: str = 'features') -> dict[str, str]:
  """Exports the run's model and its card; returns the written paths."""
  check_options(workdir, fmt, out_dir, input_kind)  # before the slow restore
  from fasjax import trained
  model = trained.load(workdir)
  os.makedirs(out_dir, exist_ok=True)
  write = export_saved_model if fmt == 'saved_model' else export_tflite
  model_path = write(model, out_dir, input_kind)
  card = model_card(model, workdir, fmt, input_kind)
  card_json = os.path.join(out_dir, 'model_card.json')
  provenance.write_json(card_json, card)
  card_md = os.path.join(out_dir, 'MODEL_CARD.md')
  with open(card_md, 'w') as f:
    f.write(card_markdown(card))
  return {'model': model_path, 'card': card_json, 'card_md': card_md}


def check_options(workdir: str, fmt: str, out_dir: str,
                  input_kind: str) -> None:
  """Raises ValueError or NoRunError for what can be checked without JAX."""
  if fmt not in FORMATS:
    raise ValueError(f'--format must be one of {FORMATS}, got {fmt!r}')
  _check_input_kind(input_kind)
  if fmt == 'tflite' and input_kind != 'features':
    raise ValueError(
        'TFLite export takes --input=features only: the PIL-exact HSV '
        'conversion needs float64 arithmetic, which TFLite kernels lack. '
        'Compute the 6 input channels in the app (see MODEL_CARD.md), or '
        'export --format=saved_model --input=rgb.')
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ValueError(f'--out={out_dir} is a file; name a directory (it is '
                     'created if missing).')
  workdir_lock.check_run(workdir, need_config=True)


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m fasjax.export',
                              description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True, help='the trained run')
  p.add_argument('--format', required=True, choices=FORMATS)
  p.add_argument('--out', required=True, help='output directory')
  p.add_argument('--input', default='features', choices=INPUTS,
                 help='features: float32 [B,S,S,6]; rgb: uint8 [B,S,S,3]')
  return p


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry point; returns the exit status."""
  args = _parser().parse_args(argv)
  try:
    check_options(args.workdir, args.format, args.out, args.input)
  except (workdir_lock.NoRunError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  from fasjax import trained  # JAX and TensorFlow: seconds.
  try:
    written = export(args.workdir, args.format, args.out, args.input)
  except (trained.RunNotUsableError, ExportError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(json.dumps(written))
  return 0


if __name__ == '__main__':
  sys.exit(main())
