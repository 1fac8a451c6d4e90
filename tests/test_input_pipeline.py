"""Tests of fasjax.input_pipeline on small in-memory datasets."""

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from fasjax import input_pipeline

# Left/right parts of the face, written out independently of the module.
_MIRROR = {2: 3, 3: 2, 4: 5, 5: 4, 7: 8, 8: 7}


def _pil_hsv(rgb_uint8: np.ndarray) -> np.ndarray:
  """PIL's HSV bytes of an [H,W,3] uint8 RGB array."""
  return np.asarray(Image.fromarray(rgb_uint8).convert('HSV'))


def _all_colours() -> np.ndarray:
  codes = np.arange(2**24, dtype=np.uint32)
  rgb = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=-1)
  return rgb.astype(np.uint8).reshape(4096, 4096, 3)


def _examples(labels, *, size=32, seed=0, domain='d'):
  """Random raw examples of the builder contract with the given labels."""
  rng = np.random.default_rng(seed)
  labels = np.asarray(labels, np.int64)
  n = len(labels)
  depth = rng.uniform(size=(n, 32, 32)).astype(np.float32)
  depth[labels == 0] = 0.0
  return {
      'image': rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
      'depth': depth,
      'parsing': rng.integers(0, 13, (n, size, size), dtype=np.uint8),
      'label': labels,
      'video_id': np.array([f'{domain}/video{i}' for i in range(n)]),
      'attack_type': np.array(['live' if l else 'print' for l in labels]),
      'subject': np.arange(n, dtype=np.int64),
      'frame_index': np.zeros(n, np.int64),
  }


def _dataset(examples):
  return tf.data.Dataset.from_tensor_slices(examples)


def _first(dataset, n):
  return list(dataset.take(n).as_numpy_iterator())


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


# --- rgb_to_hsv -------------------------------------------------------------


@pytest.fixture(scope='module')
def every_colour():
  """All 2**24 colours as a 4096x4096 image and PIL's HSV of it in [0, 1]."""
  rgb = _all_colours()
  return rgb, _pil_hsv(rgb).astype(np.float32) / np.float32(255.0)


def test_rgb_to_hsv_matches_pil_on_every_colour_in_tf_data(every_colour):
  rgb, expected = every_colour
  # The way the pipeline runs it: inside a tf.data map.
  rows = tf.data.Dataset.from_tensor_slices(rgb.reshape(16, 256, 4096, 3))
  got = np.concatenate(
      list(rows.map(input_pipeline.rgb_to_hsv).as_numpy_iterator())
  ).reshape(expected.shape)
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, expected)


def test_rgb_to_hsv_matches_pil_in_tf_function(every_colour):
  # Grappler rewrites graphs of tf.function (e.g. x / c -> x * (1 / c)); every
  # 4th row still holds all reds and blues with a quarter of the greens.
  rgb, expected = every_colour
  hsv = tf.function(input_pipeline.rgb_to_hsv)
  np.testing.assert_array_equal(
      hsv(tf.constant(rgb[::4])).numpy(), expected[::4]
  )


def test_rgb_to_hsv_eager_edge_cases_and_sample():
  greys = [(v, v, v) for v in (0, 1, 127, 128, 254, 255)]
  primaries = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0),
               (0, 255, 255), (255, 0, 255)]
  # Red maximum with blue just above green: negative hue that wraps to ~255.
  near_wraps = [(255, 0, 1), (255, 10, 11), (200, 100, 101), (2, 0, 1),
                (255, 1, 0), (1, 0, 0), (1, 1, 0), (0, 1, 1)]
  edge = np.array(greys + primaries + near_wraps, np.uint8)[None]
  sample = np.random.default_rng(0).integers(0, 256, (128, 128, 3), np.uint8)
  for rgb in (edge, sample):
    got = input_pipeline.rgb_to_hsv(tf.constant(rgb)).numpy()
    np.testing.assert_array_equal(
        got, _pil_hsv(rgb).astype(np.float32) / np.float32(255.0)
    )
  got_edge = np.round(input_pipeline.rgb_to_hsv(edge).numpy() * 255)
  np.testing.assert_array_equal(got_edge[0, :6, :2], 0)  # Greys: H = S = 0.
  np.testing.assert_array_equal(got_edge[0, :6, 2], [v for v, _, _ in greys])


# --- preprocess -------------------------------------------------------------


def _one(examples, i):
  return {k: tf.constant(v[i]) for k, v in examples.items()}


def test_preprocess_shapes_dtypes_ranges():
  examples = _examples([1, 0])
  for i in range(2):
    out = input_pipeline.preprocess(
        _one(examples, i), image_size=16, depth_size=8, flip=True,
        seed=tf.constant([3, i]),
    )
    assert out['image'].shape == (16, 16, 6)
    assert out['image'].dtype == tf.float32
    assert out['depth'].shape == (8, 8) and out['depth'].dtype == tf.float32
    assert out['parsing'].shape == (16, 16)
    assert out['parsing'].dtype == tf.int32
    assert out['label'].dtype == tf.int32 and out['label'].shape == ()
    assert int(out['label']) == examples['label'][i]
    image = out['image'].numpy()
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert set(np.unique(out['parsing'])) <= set(range(13))
  assert not out['depth'].numpy().any()  # The spoof keeps a zero depth map.


def test_preprocess_same_size_keeps_pixels_and_hsv_follows_image():
  examples = _examples([1], size=32)
  out = input_pipeline.preprocess(
      _one(examples, 0), image_size=32, depth_size=32, flip=False
  )
  image = out['image'].numpy()
  raw = examples['image'][0]
  np.testing.assert_array_equal(np.round(image[..., :3] * 255), raw)
  np.testing.assert_array_equal(np.round(image[..., 3:] * 255), _pil_hsv(raw))
  np.testing.assert_array_equal(out['parsing'], examples['parsing'][0])
  np.testing.assert_array_equal(out['depth'], examples['depth'][0])


def test_preprocess_downsized_hsv_is_hsv_of_downsized_rgb():
  examples = _examples([1], size=32)
  out = input_pipeline.preprocess(
      _one(examples, 0), image_size=16, depth_size=8, flip=False
  )
  rgb = np.round(out['image'].numpy()[..., :3] * 255).astype(np.uint8)
  np.testing.assert_array_equal(
      np.round(out['image'].numpy()[..., 3:] * 255), _pil_hsv(rgb)
  )


def test_preprocess_flip_mirrors_everything_and_swaps_sides():
  examples = _examples([1], size=16)
  example = _one(examples, 0)
  plain = input_pipeline.preprocess(
      example, image_size=16, depth_size=32, flip=False
  )
  outcomes = {}
  for s in range(20):
    out = input_pipeline.preprocess(
        example, image_size=16, depth_size=32, flip=True,
        seed=tf.constant([7, s]),
    )
    flipped = not np.array_equal(out['image'], plain['image'])
    outcomes[flipped] = out
  assert set(outcomes) == {False, True}  # 20 fair coins: both sides seen.

  _assert_batches_equal([outcomes[False]], [plain])
  mirrored = outcomes[True]
  np.testing.assert_array_equal(
      mirrored['image'], np.fliplr(plain['image'].numpy())
  )
  np.testing.assert_array_equal(
      mirrored['depth'], np.fliplr(plain['depth'].numpy())
  )
  expected_parsing = np.vectorize(lambda c: _MIRROR.get(c, c))(
      np.fliplr(plain['parsing'].numpy())
  )
  np.testing.assert_array_equal(mirrored['parsing'], expected_parsing)


def test_preprocess_flip_needs_seed():
  with pytest.raises(ValueError, match='seed'):
    input_pipeline.preprocess(
        _one(_examples([1]), 0), image_size=16, depth_size=8, flip=True
    )


@pytest.mark.parametrize('image_size', [12, 20, 48])
def test_preprocess_parsing_resize_never_invents_classes(image_size):
  examples = _examples([1], size=32)
  classes = np.array([0, 4, 9, 12], np.uint8)
  rng = np.random.default_rng(1)
  examples['parsing'] = classes[rng.integers(0, 4, (1, 32, 32))]
  out = input_pipeline.preprocess(
      _one(examples, 0), image_size=image_size, depth_size=8, flip=False
  )
  assert set(np.unique(out['parsing'])) <= set(classes.tolist())


@pytest.mark.parametrize('depth_size', [4, 8, 16])
def test_preprocess_depth_is_block_mean(depth_size):
  examples = _examples([1])
  out = input_pipeline.preprocess(
      _one(examples, 0), image_size=16, depth_size=depth_size, flip=False
  )
  k = 32 // depth_size
  expected = examples['depth'][0].reshape(depth_size, k, depth_size, k)
  np.testing.assert_allclose(out['depth'], expected.mean(axis=(1, 3)),
                             atol=1e-6)


# --- train_dataset ----------------------------------------------------------

_B = 2


def _domains():
  """Three domains; class sizes that do not divide the batch, and skew."""
  return [
      _examples([1, 0, 0, 1, 0, 1, 0, 0, 1], seed=1, size=16, domain='a'),
      _examples([0, 0, 0, 1, 1, 1, 0, 0, 0, 0], seed=2, size=16, domain='b'),
      _examples([1, 1, 0, 1, 0], seed=3, size=16, domain='c'),
  ]


def _train(domains=None, **kwargs):
  args = dict(per_class_batch=_B, image_size=16, depth_size=8, seed=0)
  args.update(kwargs)
  return input_pipeline.train_dataset(
      [_dataset(d) for d in (domains or _domains())], **args
  )


@pytest.fixture(scope='module')
def reference_steps():
  """The first 10 steps of the stream with seed 5, built once."""
  return _first(_train(seed=5), 10)


def test_train_dataset_shapes_and_live_then_spoof(reference_steps):
  for batch in reference_steps:
    assert batch.keys() == {'image', 'depth', 'parsing', 'label'}
    assert batch['image'].shape == (3, 2 * _B, 16, 16, 6)
    assert batch['image'].dtype == np.float32
    assert batch['depth'].shape == (3, 2 * _B, 8, 8)
    assert batch['depth'].dtype == np.float32
    assert batch['parsing'].shape == (3, 2 * _B, 16, 16)
    assert batch['parsing'].dtype == np.int32
    assert batch['label'].dtype == np.int32
    np.testing.assert_array_equal(
        batch['label'], np.tile([1] * _B + [0] * _B, (3, 1))
    )
    assert batch['depth'][:, :_B].any(axis=(2, 3)).all()
    assert not batch['depth'][:, _B:].any()


def test_train_dataset_epochs_are_reshuffled_permutations():
  domains = _domains()
  raw_live = domains[2]['image'][domains[2]['label'] == 1]  # 3 live images.
  batches = _first(_train(domains, flip=False, per_class_batch=3), 3)

  def live_order(batch):
    images = np.round(batch['image'][2, :3, ..., :3] * 255).astype(np.uint8)
    return [
        next(i for i, r in enumerate(raw_live) if np.array_equal(r, im))
        for im in images
    ]

  orders = [live_order(b) for b in batches]
  for order in orders:
    assert sorted(order) == [0, 1, 2]  # Each epoch: every example once.
  assert len({tuple(o) for o in orders}) > 1  # New order across epochs.


def test_train_dataset_is_a_function_of_its_seed_only(reference_steps):
  # pylint: disable-next=g-import-not-at-top
  from tensorflow.python.eager import context

  saved = context.global_seed()
  try:  # An unrelated global seed must not change the stream.
    tf.random.set_seed(1234)
    dataset = _train(seed=5)
  finally:
    context.set_global_seed(saved)
  _assert_batches_equal(_first(dataset, 10), reference_steps)
  # A second iterator over the same object replays the stream.
  _assert_batches_equal(_first(dataset, 4), reference_steps[:4])
  other = _first(_train(seed=6), 4)
  for a, b in zip(other, reference_steps):
    assert not np.array_equal(a['image'], b['image'])
  flips = [
      not np.array_equal(a['image'], b['image'])
      for a, b in zip(_first(_train(seed=5, flip=False), 10), reference_steps)
  ]
  assert any(flips)  # flip=True did flip something in 10 steps.


def test_train_dataset_start_step_resumes_exactly(reference_steps):
  # Step 7 is past several epochs of the smallest class streams.
  resumed = _first(_train(seed=5, start_step=7), 3)
  _assert_batches_equal(resumed, reference_steps[7:])


@pytest.mark.parametrize(
    'labels, missing', [([1, 1, 1], 'spoof'), ([0, 0], 'live')]
)
def test_train_dataset_rejects_domain_without_a_class(labels, missing):
  domains = _domains()[:1] + [_examples(labels, size=16)]
  with pytest.raises(ValueError, match=rf'domain 1 has no {missing}'):
    _train(domains)


# --- eval_batches -----------------------------------------------------------


def test_eval_batches_cover_every_example_once_with_padding():
  examples = _examples([1, 0, 0, 1, 0, 1, 1], size=32)
  batches = list(
      input_pipeline.eval_batches(
          _dataset(examples), batch_size=3, image_size=16, depth_size=8
      )
  )
  assert len(batches) == 3
  for batch in batches:
    assert batch['image'].shape == (3, 16, 16, 6)
    assert batch['depth'].shape == (3, 8, 8)
    assert batch['parsing'].shape == (3, 16, 16)
    assert batch['label'].shape == (3,)
    assert batch['mask'].dtype == np.bool_
    assert all(isinstance(v, str) for v in batch['video_id'])
    assert all(isinstance(v, str) for v in batch['attack_type'])
  mask = np.concatenate([b['mask'] for b in batches])
  np.testing.assert_array_equal(mask, [True] * 7 + [False] * 2)
  video_ids = np.concatenate([b['video_id'] for b in batches])
  assert list(video_ids[:7]) == list(examples['video_id'])
  labels = np.concatenate([b['label'] for b in batches])
  np.testing.assert_array_equal(labels[:7], examples['label'])
  for i in range(7):  # Same values as preprocess without a flip.
    expected = input_pipeline.preprocess(
        _one(examples, i), image_size=16, depth_size=8, flip=False
    )
    np.testing.assert_array_equal(batches[i // 3]['image'][i % 3],
                                  expected['image'])
  assert not batches[-1]['image'][1:].any()


def test_eval_batches_exact_multiple_has_no_padding():
  examples = _examples([1, 0, 1, 0], size=16)
  batches = list(
      input_pipeline.eval_batches(
          _dataset(examples), batch_size=2, image_size=16, depth_size=8
      )
  )
  assert len(batches) == 2 and all(b['mask'].all() for b in batches)


# --- load_domain ------------------------------------------------------------


class FasjaxInputPipelineTestDataset(tfds.core.GeneratorBasedBuilder):
  """Two-split stand-in for a fasjax builder."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(16, 16, 3)),
            'label': tf.int64,
            'video_id': tfds.features.Text(),
        }),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {
        'train': self._generate_examples(0, 5),
        'test': self._generate_examples(5, 8),
    }

  def _generate_examples(self, start, stop):
    for i in range(start, stop):
      image = np.full((16, 16, 3), i, np.uint8)
      yield i, {'image': image, 'label': i % 2, 'video_id': f'v{i}'}


def test_load_domain_concatenates_splits_in_order(tmp_path):
  builder = FasjaxInputPipelineTestDataset(data_dir=str(tmp_path))
  builder.download_and_prepare()
  dataset = input_pipeline.load_domain(
      'fasjax_input_pipeline_test_dataset', None, ['test', 'train'],
      str(tmp_path),
  )
  ids = [e['video_id'].decode() for e in dataset.as_numpy_iterator()]
  assert sorted(ids[:3]) == ['v5', 'v6', 'v7']
  assert sorted(ids[3:]) == [f'v{i}' for i in range(5)]
  first = next(dataset.as_numpy_iterator())
  assert first['image'].shape == (16, 16, 3)  # Decoded, not bytes.


def test_load_domain_unknown_dataset(tmp_path):
  with pytest.raises(input_pipeline.DatasetNotPreparedError) as e:
    input_pipeline.load_domain('casia_fasd', None, ['train'], str(tmp_path))
  message = str(e.value)
  assert 'casia_fasd' in message and str(tmp_path) in message
  assert 'tfds build --imports=fasjax.datasets casia_fasd' in message
  assert f'--data_dir={tmp_path}' in message


def test_load_domain_synthetic_not_prepared(tmp_path):
  with pytest.raises(input_pipeline.DatasetNotPreparedError) as e:
    input_pipeline.load_domain('synthetic_fas', 'c', ['train'], str(tmp_path))
  message = str(e.value)
  assert 'synthetic_fas/c' in message
  assert (
      f'python -m fasjax.datasets.prepare_synthetic --data_dir={tmp_path}'
      in message
  )


def test_load_domain_registered_but_unprepared(tmp_path):
  with pytest.raises(input_pipeline.DatasetNotPreparedError, match='not built'):
    input_pipeline.load_domain(
        'fasjax_input_pipeline_test_dataset', '', ['train'], str(tmp_path)
    )
  assert issubclass(input_pipeline.DatasetNotPreparedError, RuntimeError)
