"""Using a trained run: fasjax.trained, fasjax.predict and fasjax.export.

One smoke run is trained for the module. Independent references: the run's
own results.json (written by training) for the honest step and threshold,
scikit-image's LBP cascade face detector for the astronaut's face box,
numpy's mean for the video score, and the JAX model for the exported
SavedModel and TFLite files.
"""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest
from skimage import data as skdata
from skimage import feature as skfeature
import tensorflow as tf

from fasjax import evaluate
from fasjax import export
from fasjax import input_pipeline
from fasjax import predict
from fasjax import trained
from fasjax.preprocess import config as preprocess_config
import media
import smoke_run

PARITY_TOLERANCE = 1e-4  # the bound; measured differences are ~1e-7


@pytest.fixture(scope='module')
def run(trained_smoke_run):
  return trained_smoke_run


@pytest.fixture(scope='module')
def model(run):
  return trained.load(run)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  """The astronaut photo, a video of it, and broken or unusable inputs."""
  d = tmp_path_factory.mktemp('inputs')
  photo = skdata.astronaut()
  Image.fromarray(photo).save(d / 'astronaut.png')
  Image.fromarray(np.rot90(photo, 2)).save(d / 'upside_down.png')
  small = Image.fromarray(photo).resize((256, 256))
  media.write_video(d / 'astronaut.avi',
               [np.asarray(small.rotate(0, translate=(2 * i, i)))
                for i in range(7)])
  media.write_video(d / 'no_frames.avi', [])
  (d / 'empty.png').write_bytes(b'')
  (d / 'notes.txt').write_text('not a face\n')
  png = (d / 'astronaut.png').read_bytes()
  (d / 'truncated.png').write_bytes(png[:len(png) // 3])
  # 60 megapixels of one grey: a few hundred kB on disk, 60 MB decoded.
  Image.new('L', (10_000, 6_000), 128).save(d / 'bomb.png')
  noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), np.uint8)
  Image.fromarray(noise).save(d / 'noise.png')
  return d


@pytest.fixture(scope='module')
def predicted(model, files):
  """predict_paths over good and bad inputs, with overlays."""
  names = ['astronaut.png', 'astronaut.avi', 'missing.jpg', 'empty.png',
           'notes.txt', 'truncated.png', 'bomb.png', 'no_frames.avi',
           'noise.png', '.', 'upside_down.png']
  settings = predict.Settings(sampling=preprocess_config.Sampling(every=2))
  overlay = str(files / 'overlay')
  results = list(predict.predict_paths([str(files / n) for n in names], model,
                                       settings, overlay))
  return dict(zip(names, results)), overlay


def _iou(a, b):
  ax, ay, aw, ah = a
  bx, by, bw, bh = b
  w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
  h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
  return w * h / (aw * ah + bw * bh - w * h)


# -----------------------------------------------------------------------------
# fasjax.trained
# -----------------------------------------------------------------------------


def test_model_is_the_runs_honest_checkpoint_and_threshold(run, model):
  with open(os.path.join(run, 'results.json')) as f:
    honest = json.load(f)['honest']
  assert model.step == honest['step']
  assert model.threshold == float(honest['threshold'])
  assert model.image_size == smoke_run.config('unused').model.image_size


def test_workdir_without_a_run_is_a_clear_error(tmp_path):
  with pytest.raises(trained.RunNotUsableError, match='config.json'):
    trained.load(str(tmp_path))
  (tmp_path / 'config.json').write_text(
      smoke_run.config(str(tmp_path)).to_json())
  with pytest.raises(trained.RunNotUsableError, match='No checkpoint'):
    trained.load(str(tmp_path))


# -----------------------------------------------------------------------------
# fasjax.predict
# -----------------------------------------------------------------------------


def test_model_input_is_the_training_conversion(model):
  crop = skdata.astronaut()[0:256, 128:384]
  training = input_pipeline.preprocess(
      {'image': crop, 'depth': np.zeros((32, 32), np.float32),
       'parsing': np.zeros((256, 256), np.uint8), 'label': 1},
      image_size=model.image_size, depth_size=4, flip=False)['image']
  np.testing.assert_array_equal(
      input_pipeline.model_input(crop, model.image_size), training)


def test_astronaut_gets_a_score_a_decision_and_her_face_box(predicted, model):
  result = predicted[0]['astronaut.png']
  assert 0.0 <= result['p_live'] <= 1.0
  assert result['decision'] == ('live' if result['p_live'] >= model.threshold
                                else 'spoof')
  assert result['threshold'] == model.threshold
  frame, = result['frames']
  assert frame['index'] == 0 and frame['detected']
  assert frame['p_live'] == result['p_live']
  cascade = skfeature.Cascade(skdata.lbp_frontal_face_cascade_filename())
  grey = np.asarray(Image.fromarray(skdata.astronaut()).convert('L'))
  faces = cascade.detect_multi_scale(grey, scale_factor=1.2, step_ratio=1,
                                     min_size=(60, 60), max_size=(300, 300))
  assert faces, 'the reference detector found no face'
  best = max(_iou(frame['box'], (f['c'], f['r'], f['width'], f['height']))
             for f in faces)
  assert best > 0.4, (frame['box'], faces)


def test_an_upside_down_photo_is_turned_and_scored_as_the_upright_one(
    predicted):
  upright, turned = (predicted[0][n] for n in ('astronaut.png',
                                                'upside_down.png'))
  assert turned['turned180'] and not upright['turned180']
  # Turned upright, it is the same image: the same face box and score.
  assert turned['frames'][0]['box'] == upright['frames'][0]['box']
  assert turned['p_live'] == pytest.approx(upright['p_live'], abs=1e-6)


def test_video_score_is_the_mean_of_its_sampled_frames(predicted):
  result = predicted[0]['astronaut.avi']
  frames = result['frames']
  assert [f['index'] for f in frames] == [0, 2, 4, 6]
  assert result['p_live'] == pytest.approx(
      np.mean([f['p_live'] for f in frames]), rel=1e-12)
  assert all(len(f['box']) == 4 and f['box'][2] > 20 for f in frames)


@pytest.mark.parametrize('name,reason', [
    ('missing.jpg', 'no such file'),
    ('empty.png', 'empty file'),
    ('notes.txt', 'not a readable image'),
    ('truncated.png', 'corrupt or truncated image'),
    ('bomb.png', 'exceeds --max_pixels'),
    ('no_frames.avi', 'zero frames'),
    ('noise.png', 'no face detected'),
    ('.', 'is a directory'),
])
def test_bad_input_gets_its_reason_and_no_score(predicted, name, reason):
  result = predicted[0][name]
  assert set(result) == {'input', 'error'}
  assert reason in result['error']


def test_overlay_draws_the_box_on_every_scored_frame(predicted):
  results, overlay = predicted
  written = sorted(os.listdir(overlay))
  assert written == ['000_astronaut_f00000.png'] + [
      f'001_astronaut_f{i:05d}.png' for i in (0, 2, 4, 6)] + [
          '010_upside_down_f00000.png']
  image = np.asarray(Image.open(os.path.join(overlay, written[0])))
  assert image.shape == skdata.astronaut().shape
  x, y, w, h = (round(v) for v in results['astronaut.png']['frames'][0]['box'])
  edge = image[y + h // 2, x - 1:x + 2]  # the box's left edge, mid-height
  colour = ((0, 200, 0) if results['astronaut.png']['decision'] == 'live'
            else (230, 0, 0))
  assert any(tuple(px) == colour for px in edge)
  assert not np.array_equal(image, skdata.astronaut())


def _json_lines(text):
  return [json.loads(line) for line in text.splitlines()]


def test_predict_cli_exit_status(run, files, capsys):
  bad = [str(files / 'empty.png'), str(files / 'notes.txt')]
  assert predict.main([f'--workdir={run}', *bad]) == 1
  captured = capsys.readouterr()
  lines = _json_lines(captured.out)
  assert [line['input'] for line in lines] == bad
  assert all('error' in line for line in lines)
  # notes.txt passed the early checks, so the model was loaded: a model
  # trained on synthetic faces says it has never seen a real one.
  assert predict.SYNTHETIC_WARNING in captured.err
  assert predict.main([f'--workdir={files}', str(files / 'x.png')]) == 2
  assert 'config.json' in capsys.readouterr().err
  # Every input failing the early checks: answered without loading anything.
  missing = [str(files / 'missing.jpg'), str(files / 'empty.png')]
  assert predict.main([f'--workdir={run}', *missing]) == 1
  captured = capsys.readouterr()
  assert [l['error'] for l in _json_lines(captured.out)] == [
      'no such file', 'empty file (0 bytes)']
  assert predict.SYNTHETIC_WARNING not in captured.err


_PROBE = """
import sys
from fasjax import {module}
status = {module}.main({argv!r})
print('STATUS', status, 'jax' in sys.modules, 'tensorflow' in sys.modules)
"""


@pytest.mark.parametrize('module,argv,fragment', [
    ('predict', ['--workdir=/nonexistent/run', 'face.png'], 'does not exist'),
    ('export', ['--workdir=/nonexistent/run', '--format=tflite',
                '--out=/tmp/x'], 'does not exist'),
    ('export', ['--workdir=/nonexistent/run', '--format=tflite',
                '--input=rgb', '--out=/tmp/x'], '--input=features only'),
])
def test_commands_check_arguments_before_importing_jax(module, argv,
                                                       fragment):
  proc = subprocess.run(
      [sys.executable, '-c', _PROBE.format(module=module, argv=argv)],
      cwd=smoke_run.ROOT, env=smoke_run.env(), capture_output=True,
      text=True, timeout=120)
  assert proc.stdout.strip().splitlines()[-1] == 'STATUS 2 False False', (
      proc.stdout, proc.stderr[-2000:])
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error: ')]
  assert len(errors) == 1 and fragment in errors[0], proc.stderr


def test_export_out_that_is_a_file_is_refused_early(run, tmp_path, capsys):
  out = tmp_path / 'a_file'
  out.write_text('')
  assert export.main([f'--workdir={run}', '--format=tflite',
                      f'--out={out}']) == 2
  assert 'is a file' in capsys.readouterr().err


# -----------------------------------------------------------------------------
# fasjax.export
# -----------------------------------------------------------------------------


@pytest.fixture(scope='module')
def batch(model):
  """uint8 crops (noise and flat colours) and their model features."""
  s = model.image_size
  rng = np.random.default_rng(1)
  rgb = np.concatenate([
      rng.integers(0, 256, (3, s, s, 3), np.uint8),
      np.broadcast_to(np.array([[0, 0, 0], [255, 255, 255], [200, 30, 30]],
                               np.uint8)[:, None, None], (3, s, s, 3))])
  return rgb, input_pipeline.to_model_input(rgb).numpy()


@pytest.fixture(scope='module')
def spread_model(model, batch):
  """The run's model with its classifier rescaled, and its outputs on `batch`.

  A 6-step model scores every face near 0.5. Rescaling the final layer so
  the batch's logits have mean 0 and std 3 spreads P(live) over (0, 1), so
  the 1e-4 parity bound is a real constraint.
  """
  predict_fn = evaluate.make_predict_fn(model.nets)
  p = np.asarray(predict_fn(model.params, model.batch_stats, batch[1])
                 ['p_live'], np.float64)
  fc = model.params['meta']['fc']
  projection = np.log(p / (1 - p)) - float(fc['bias'][0])
  scale = 3.0 / np.std(projection)
  params = jax.tree.map(lambda a: a, model.params)
  params['meta']['fc'] = {'kernel': fc['kernel'] * scale,
                          'bias': fc['bias'] * 0 - scale * np.mean(projection)}
  spread = dataclasses.replace(model, params=params)
  reference = predict_fn(spread.params, spread.batch_stats, batch[1])
  reference = {k: np.asarray(reference[k]) for k in ('p_live', 'depth')}
  assert np.ptp(reference['p_live']) > 0.5, reference['p_live']
  return spread, reference


def _assert_parity(outputs, reference):
  for key in ('p_live', 'depth'):
    got = np.asarray(outputs[key])
    assert got.shape == reference[key].shape
    np.testing.assert_allclose(got, reference[key], rtol=0,
                               atol=PARITY_TOLERANCE)


@pytest.mark.parametrize('input_kind', ['features', 'rgb'])
def test_saved_model_scores_like_jax(spread_model, batch, tmp_path,
                                     input_kind):
  (model, reference), (rgb, features) = spread_model, batch
  path = export.export_saved_model(model, str(tmp_path), input_kind)
  serve = tf.saved_model.load(path).signatures['serving_default']
  images = features if input_kind == 'features' else rgb
  _assert_parity(serve(images=tf.constant(images)), reference)
  # The batch size is free.
  one = serve(images=tf.constant(images[:1]))['p_live'].numpy()
  np.testing.assert_allclose(one, reference['p_live'][:1], atol=1e-4)


def test_tflite_scores_like_jax(spread_model, batch, tmp_path):
  (model, reference), (_, features) = spread_model, batch
  path = export.export_tflite(model, str(tmp_path))
  interpreter = tf.lite.Interpreter(model_path=path)
  _assert_parity(
      interpreter.get_signature_runner('serving_default')(images=features),
      reference)


def test_tflite_rgb_input_is_refused_with_the_alternative(model, tmp_path):
  with pytest.raises(ValueError, match='--input=features only'):
    export.export_tflite(model, str(tmp_path), 'rgb')


def test_export_cli_writes_the_model_and_its_card(run, tmp_path, capsys):
  out = tmp_path / 'export'
  assert export.main([f'--workdir={run}', '--format=tflite',
                      f'--out={out}']) == 0
  assert json.loads(capsys.readouterr().out)['model'] == str(
      out / 'model.tflite')
  assert (out / 'model.tflite').stat().st_size > 10_000
  card = json.loads((out / 'model_card.json').read_text())
  with open(os.path.join(run, 'results.json')) as f:
    results = json.load(f)
  assert card['threshold'] == float(results['honest']['threshold'])
  assert card['checkpoint']['step'] == results['honest']['step']
  assert card['metrics_at_threshold']['hter'] == results['honest']['hter']
  assert card['protocol']['name'] == 'ocm_to_i'
  assert card['protocol']['sources'] == ['o', 'c', 'm']
  s = smoke_run.config('unused').model.image_size
  assert card['input']['shape'] == ['batch', s, s, 6]
  assert card['trained_on_synthetic_data'] is True
  assert card['run_commit'] and card['export_commit']
  card_md = (out / 'MODEL_CARD.md').read_text()
  assert '## Threshold' in card_md
  # A yes/no field is one sentence, not a heading followed by "True".
  assert '**Trained on synthetic data:** yes.' in card_md
  assert '\nTrue\n' not in card_md and '## Trained on synthetic' not in card_md
  assert export.main([f'--workdir={tmp_path}', '--format=tflite',
                      f'--out={out}']) == 2
  assert 'config.json' in capsys.readouterr().err
