"""Input pipeline: tfds examples -> model-ready, deterministic tf.data streams.

Raw examples follow the builder contract (docs/design.md §2): `image` uint8 [H,W,3]
RGB, `depth` float32 [32,32], `parsing` uint8 [H,W] class ids 0..12, `label`
(1 live, 0 spoof), `video_id`, `attack_type`, `subject`, `frame_index`.

Model input (docs/design.md §1): `image` float32 [S,S,6] = RGB/255 ‖ HSV/255 where
HSV is bit-for-bit PIL's `Image.convert('HSV')` (see `rgb_to_hsv`).

Decisions:
- The image is resized (antialiased bilinear) and rounded back to uint8 before
  HSV, so HSV is computed from exactly the pixels the model sees, as in the
  PIL-based reference loaders.
- A horizontal flip mirrors the face, so the subject's left and right swap:
  parsing classes l_brow/r_brow, l_eye/r_eye and l_ear/r_ear are exchanged.
- All randomness is keyed on `seed`: per-epoch shuffle seeds and per-element
  flip seeds are derived from (seed, domain, class, epoch or element index)
  with stateless ops, so the stream does not depend on thread scheduling, on
  how many iterators were created before, or on TensorFlow's global seed.
- Training streams are infinite: each class stream is reshuffled with a new
  seed every epoch. `start_step` skips whole steps before any preprocessing.
"""

from collections.abc import Iterator, Sequence
import contextlib
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

NUM_PARSING_CLASSES = 13
# Class id after a horizontal flip: the subject's left/right parts swap.
_FLIPPED_PARSING_CLASS = (0, 1, 3, 2, 5, 4, 6, 8, 7, 9, 10, 11, 12)
_LIVE, _SPOOF = 1, 0
_MODEL_KEYS = ('image', 'depth', 'parsing', 'label')
# byte / 255 as numpy computes it. A table, not a division: Grappler rewrites
# `x / 255.0` inside tf.function as `x * (1 / 255)`, which is off by an ulp.
_BYTE_TO_UNIT = np.arange(256, dtype=np.float32) / np.float32(255.0)
# Stream ids mixed into derived seeds so independent uses never share one.
_SHUFFLE_PURPOSE, _FLIP_PURPOSE = 0, 1


class DatasetNotPreparedError(RuntimeError):
  """The requested tfds dataset is not built in the given data_dir."""


def rgb_to_hsv(image_uint8_HxWx3: tf.Tensor) -> tf.Tensor:
  """Returns PIL's `convert('HSV')` of a uint8 RGB image, float32 in [0, 1]."""
  # PIL (libImaging/Convert.c, rgb2hsv_row) follows colorsys with C floats:
  # divisions in float32, the g/b-max hue sums and `fmod(h/6 + 1, 1)` in double
  # and each stored back to float32, then bytes = (int)(x * 255.0) (truncated,
  # in double). Greys get H = S = 0. All 2**24 colours match (see the tests);
  # an all-float32 or all-float64 version differs on ~0.5-1% of hues.
  rgb = tf.cast(image_uint8_HxWx3, tf.int32)
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  maxc = tf.maximum(r, tf.maximum(g, b))
  minc = tf.minimum(r, tf.minimum(g, b))
  grey = tf.equal(maxc, minc)

  f32, f64 = tf.float32, tf.float64
  delta = tf.cast(tf.where(grey, 1, maxc - minc), f32)
  s = tf.cast(maxc - minc, f32) / tf.cast(tf.where(grey, 1, maxc), f32)
  rc = tf.cast(maxc - r, f32) / delta
  gc = tf.cast(maxc - g, f32) / delta
  bc = tf.cast(maxc - b, f32) / delta
  h_r = bc - gc
  h_g = tf.cast(2.0 + tf.cast(rc, f64) - tf.cast(bc, f64), f32)
  h_b = tf.cast(4.0 + tf.cast(gc, f64) - tf.cast(rc, f64), f32)
  h = tf.where(tf.equal(r, maxc), h_r, tf.where(tf.equal(g, maxc), h_g, h_b))
  # h is in [-1, 5]: h/6 + 1 lies in [0, 2), so fmod(., 1) is one subtraction.
  h_wrapped = tf.cast(h, f64) / 6.0 + 1.0
  h_wrapped = tf.where(h_wrapped >= 1.0, h_wrapped - 1.0, h_wrapped)
  h = tf.cast(h_wrapped, f32)

  def to_byte(x_f32):
    x = tf.floor(tf.cast(x_f32, f64) * 255.0)
    return tf.cast(tf.clip_by_value(x, 0.0, 255.0), tf.int32)

  hue = tf.where(grey, 0, to_byte(h))
  sat = tf.where(grey, 0, to_byte(s))
  return _bytes_to_unit(tf.stack([hue, sat, maxc], axis=-1))


def _bytes_to_unit(bytes_: tf.Tensor) -> tf.Tensor:
  """Integer values 0..255 -> float32 value / 255, exactly."""
  return tf.gather(tf.constant(_BYTE_TO_UNIT), tf.cast(bytes_, tf.int32))


def _resize_image(image_uint8_HxWx3: tf.Tensor, size: int) -> tf.Tensor:
  """Antialiased bilinear resize rounded back to uint8."""
  resized = tf.image.resize(
      image_uint8_HxWx3, [size, size], method='bilinear', antialias=True
  )
  return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def to_model_input(image_uint8: tf.Tensor) -> tf.Tensor:
  """uint8 RGB [..., S, S, 3] at model size -> float32 [..., S, S, 6] RGB ‖ HSV."""
  return tf.concat([_bytes_to_unit(image_uint8), rgb_to_hsv(image_uint8)],
                   axis=-1)


def model_input(image_uint8_HxWx3: Any, image_size: int) -> tf.Tensor:
  """Face crop(s) [..., H, W, 3] of any size -> float32 [..., S, S, 6] inputs.

  Exactly what training and evaluation feed the model (without the flip):
  antialiased bilinear resize to S, rounded to uint8, then RGB/255 ‖ HSV.
  """
  return to_model_input(_resize_image(
      tf.convert_to_tensor(image_uint8_HxWx3, tf.uint8), image_size))


def _flip_parsing_classes(parsing: tf.Tensor) -> tf.Tensor:
  """Maps each class id to its mirror-image class (left <-> right)."""
  table = tf.constant(_FLIPPED_PARSING_CLASS, dtype=parsing.dtype)
  return tf.gather(table, tf.cast(parsing, tf.int32))


def preprocess(
    example: dict[str, Any],
    *,
    image_size: int,
    depth_size: int,
    flip: bool,
    seed: tf.Tensor | None = None,
) -> dict[str, tf.Tensor]:
  """Turns one raw example into model inputs (image, depth, parsing, label).

  Args:
    example: a raw example of the builder contract.
    image_size: side S of the output image and parsing map.
    depth_size: side d of the output depth map.
    flip: whether to flip horizontally with probability 1/2.
    seed: int32/int64 shape-[2] seed of the flip draw (stateless); required
      when `flip` is true.

  Returns:
    `image` float32 [S,S,6] (RGB ‖ HSV in [0,1]), `depth` float32 [d,d],
    `parsing` int32 [S,S], `label` int32 [].
  """
  if flip and seed is None:
    raise ValueError('preprocess(flip=True) needs a stateless `seed`.')
  image = _resize_image(example['image'], image_size)
  parsing = tf.image.resize(
      tf.cast(example['parsing'], tf.int32)[..., None],
      [image_size, image_size],
      method='nearest',
  )[..., 0]
  depth = tf.image.resize(
      tf.cast(example['depth'], tf.float32)[..., None],
      [depth_size, depth_size],
      method='area',
  )[..., 0]

  if flip:
    do_flip = tf.random.stateless_uniform([], seed=seed) < 0.5
    image, depth, parsing = tf.cond(
        do_flip,
        lambda: (
            image[:, ::-1],
            depth[:, ::-1],
            _flip_parsing_classes(parsing[:, ::-1]),
        ),
        lambda: (image, depth, parsing),
    )

  image_SxSx6 = tf.ensure_shape(to_model_input(image),
                                [image_size, image_size, 6])
  depth = tf.ensure_shape(depth, [depth_size, depth_size])
  parsing = tf.ensure_shape(parsing, [image_size, image_size])
  return {
      'image': image_SxSx6,
      'depth': depth,
      'parsing': parsing,
      'label': tf.cast(example['label'], tf.int32),
  }


def _derive_seed(*keys: int) -> int:
  """A 31-bit seed that is a platform-independent hash of integer keys."""
  return int(np.random.SeedSequence(list(keys)).generate_state(1)[0] >> 1)


@contextlib.contextmanager
def _ignore_global_tf_seed() -> Iterator[None]:
  """Builds datasets as if `tf.random.set_seed` had never been called."""
  # tf.data ops combine their op seed with the global seed when one is set, so
  # an unrelated `tf.random.set_seed` elsewhere would change the stream.
  # TensorFlow has no public switch for this; the global seed is a plain
  # attribute of the eager context, read when ops and functions are built.
  # pylint: disable-next=g-import-not-at-top
  from tensorflow.python.eager import context

  ctx = context.context()
  if not hasattr(ctx, '_seed'):
    yield
    return
  saved = ctx._seed  # pylint: disable=protected-access
  ctx._seed = None  # pylint: disable=protected-access
  try:
    yield
  finally:
    ctx._seed = saved  # pylint: disable=protected-access


def _deterministic_options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  return options


def _check_both_classes(dataset: tf.data.Dataset, domain: int) -> None:
  """Raises ValueError unless the domain has live and spoof examples."""
  # Stops at the first example of the class that appears second; empty
  # classes would otherwise make the infinite stream spin without output.
  missing = {_LIVE, _SPOOF}
  labels = dataset.map(lambda e: e['label']).with_options(
      _deterministic_options()
  )
  for label in labels.as_numpy_iterator():
    missing.discard(int(label))
    if not missing:
      return
  names = ' and '.join(
      n for c, n in ((_LIVE, 'live'), (_SPOOF, 'spoof')) if c in missing
  )
  raise ValueError(
      f'Source domain {domain} has no {names} examples (label '
      f'{"/".join(str(c) for c in sorted(missing, reverse=True))}); every '
      'training domain needs both classes.'
  )


def _class_stream(
    dataset: tf.data.Dataset,
    *,
    label: int,
    shuffle_seed: int,
    shuffle_buffer: int,
) -> tf.data.Dataset:
  """Infinite stream of one class, reshuffled with a new seed every epoch."""
  examples = dataset.filter(lambda e: tf.equal(e['label'], label))

  def epoch(epoch_index: tf.Tensor) -> tf.data.Dataset:
    seed = tf.random.stateless_uniform(
        [],
        seed=tf.stack([tf.constant(shuffle_seed, tf.int64), epoch_index]),
        minval=0,
        maxval=2**31 - 1,
        dtype=tf.int64,
    )
    return examples.shuffle(
        shuffle_buffer, seed=seed, reshuffle_each_iteration=False
    )

  return tf.data.Dataset.counter().flat_map(epoch)


def train_dataset(
    domain_datasets: Sequence[tf.data.Dataset],
    *,
    per_class_batch: int,
    image_size: int,
    depth_size: int,
    seed: int,
    flip: bool = True,
    shuffle_buffer: int = 1024,
    start_step: int = 0,
) -> tf.data.Dataset:
  """Infinite training stream, one element per step, stacked over domains.

  Each element holds, for every source domain D, `per_class_batch` (b) live
  examples followed by b spoof examples: `image` [D,2b,S,S,6] float32,
  `depth` [D,2b,d,d] float32, `parsing` [D,2b,S,S] int32, `label` [D,2b]
  int32. The stream is a pure function of the arguments; `start_step=k`
  yields element k onwards of the stream with `start_step=0` (the skipped
  raw examples are still read and decoded, but not preprocessed).

  Construction reads each domain until it has seen both classes, to fail
  early (an empty class would make the infinite stream spin). Memory: each
  (domain, class) stream buffers up to `shuffle_buffer` raw examples.

  Args:
    domain_datasets: raw examples of each source domain (finite).
    per_class_batch: b, live (and spoof) examples per domain and step.
    image_size: side S of image and parsing.
    depth_size: side d of depth.
    seed: seeds shuffling and flips.
    flip: random horizontal flips (see `preprocess`).
    shuffle_buffer: shuffle buffer of each (domain, class) stream, in raw
      examples.
    start_step: number of steps to skip, for resuming.

  Returns:
    The tf.data.Dataset of step batches, prefetched.
  """
  if not domain_datasets:
    raise ValueError('train_dataset needs at least one domain dataset.')
  if per_class_batch < 1 or start_step < 0:
    raise ValueError(
        f'Need per_class_batch >= 1 and start_step >= 0, got '
        f'{per_class_batch} and {start_step}.'
    )
  for domain, dataset in enumerate(domain_datasets):
    _check_both_classes(dataset, domain)

  def stream(domain: int, dataset: tf.data.Dataset, label: int):
    flip_seed = _derive_seed(seed, domain, label, _FLIP_PURPOSE)

    def prepare(index, example):
      element_seed = tf.stack([tf.constant(flip_seed, tf.int64), index])
      return preprocess(
          example,
          image_size=image_size,
          depth_size=depth_size,
          flip=flip,
          seed=element_seed,
      )

    examples = _class_stream(
        dataset,
        label=label,
        shuffle_seed=_derive_seed(seed, domain, label, _SHUFFLE_PURPOSE),
        shuffle_buffer=shuffle_buffer,
    )
    # Index before skipping so element i keeps its flip seed when resuming;
    # skipping raw examples avoids preprocessing what is thrown away.
    examples = examples.enumerate().skip(start_step * per_class_batch)
    examples = examples.map(
        prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return examples.batch(per_class_batch, drop_remainder=True)

  def join_classes(live, spoof):
    return {k: tf.concat([live[k], spoof[k]], axis=0) for k in _MODEL_KEYS}

  def stack_domains(*domains):
    return {k: tf.stack([d[k] for d in domains], axis=0) for k in _MODEL_KEYS}

  with _ignore_global_tf_seed():
    per_domain = [
        tf.data.Dataset.zip(
            stream(domain, dataset, _LIVE), stream(domain, dataset, _SPOOF)
        ).map(join_classes)
        for domain, dataset in enumerate(domain_datasets)
    ]
    steps = tf.data.Dataset.zip(*per_domain).map(stack_domains)
    steps = steps.prefetch(tf.data.AUTOTUNE)
  return steps.with_options(_deterministic_options())


def _pad_batch(
    batch: dict[str, np.ndarray], size: int
) -> dict[str, np.ndarray]:
  """Pads every array to `size` rows (zeros, '' for strings, mask false)."""
  n = len(batch['mask'])
  if n == size:
    return batch
  padded = {}
  for key, value in batch.items():
    pad = np.zeros((size - n,) + value.shape[1:], dtype=value.dtype)
    if value.dtype == object:
      pad[...] = ''
    padded[key] = np.concatenate([value, pad], axis=0)
  return padded


def eval_batches(
    dataset: tf.data.Dataset,
    *,
    batch_size: int,
    image_size: int,
    depth_size: int,
) -> Iterator[dict[str, np.ndarray]]:
  """Yields every example once, in order, in fixed-shape numpy batches.

  No augmentation. The last batch is padded to `batch_size`; `mask` (bool
  [B]) is false on padding rows, which are zeros ('' for strings).
  Besides the model inputs of `preprocess`, batches carry `video_id` and
  `attack_type` as numpy arrays of Python str.

  Args:
    dataset: raw examples of the builder contract (finite).
    batch_size: B, rows of every batch.
    image_size: side S of image and parsing.
    depth_size: side d of depth.

  Yields:
    Dicts of numpy arrays with leading dimension B.
  """

  def prepare(example):
    out = preprocess(
        example, image_size=image_size, depth_size=depth_size, flip=False
    )
    out['mask'] = tf.constant(True)
    out['video_id'] = example['video_id']
    out['attack_type'] = example['attack_type']
    return out

  batches = (
      dataset.map(
          prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
      )
      .batch(batch_size)
      .prefetch(tf.data.AUTOTUNE)
      .with_options(_deterministic_options())
  )
  for batch in batches.as_numpy_iterator():
    for key in ('video_id', 'attack_type'):
      batch[key] = np.array([s.decode('utf-8') for s in batch[key]], object)
    yield _pad_batch(batch, batch_size)


def _prepare_instructions(name: str, data_dir: str) -> str:
  """The command that builds dataset `name` into `data_dir`."""
  if name.split('/')[0] == 'synthetic_fas':
    return (
        f'python -m fasjax.datasets.prepare_synthetic --data_dir={data_dir}'
    )
  return (
      f'tfds build --imports=fasjax.datasets {name} --manual_dir=RAW '
      f'--data_dir={data_dir}   (RAW: the licensed raw release, docs/design.md §2)'
  )


def load_domain(
    name: str,
    config: str | None,
    splits: Sequence[str],
    data_dir: str | None,
) -> tf.data.Dataset:
  """Reads splits of a prepared fasjax tfds dataset, concatenated in order.

  Never downloads or builds anything.

  Args:
    name: tfds name, e.g. 'synthetic_fas' or 'casia_fasd'.
    config: builder config, e.g. 'c'; None or '' for the default.
    splits: split names, read in this order, e.g. ('train', 'test').
    data_dir: tfds data directory; None for the tfds default.

  Returns:
    Decoded examples of the builder contract, in file order.

  Raises:
    DatasetNotPreparedError: the dataset is unknown or not built in data_dir.
  """
  # Importing the package registers the fasjax builders with tfds.
  import fasjax.datasets  # pylint: disable=g-import-not-at-top,unused-import

  if not splits:
    raise ValueError(f'load_domain({name!r}) needs at least one split.')
  full_name = f'{name}/{config}' if config else name
  shown_dir = data_dir or str(tfds.core.constants.DATA_DIR)

  def not_prepared(reason: str) -> DatasetNotPreparedError:
    return DatasetNotPreparedError(
        f'Dataset {full_name!r} is not prepared in data_dir={shown_dir!r} '
        f'({reason}). Prepare it with:\n  '
        f'{_prepare_instructions(full_name, shown_dir)}'
    )

  try:
    builder = tfds.builder(full_name, data_dir=data_dir, try_gcs=False)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise not_prepared('unknown dataset or no built files') from e
  if not builder.is_prepared():
    raise not_prepared('builder registered but not built')

  read_config = tfds.ReadConfig(
      interleave_cycle_length=1,  # Files in order, so examples in order.
      options=_deterministic_options(),
  )
  datasets = [
      builder.as_dataset(
          split=split,
          shuffle_files=False,
          read_config=read_config,
          decoders=None,
      )
      for split in splits
  ]
  dataset = datasets[0]
  for other in datasets[1:]:
    dataset = dataset.concatenate(other)
  return dataset
