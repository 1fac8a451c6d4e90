"""From a config to the run's data: the source training stream and eval sets.

The built-in `synthetic_fas` benchmark is generated on first use (locally,
procedurally, no network); real datasets that are not prepared stop the run
before anything is written, with one `tfds build` command per missing
dataset (`check_prepared`).

Batch sizes are global. `config.data.per_class_batch` (b) is the number of
live, and of spoof, images of every source domain in one step over all
processes and devices: the global train batch is [D, 2b, ...]. Each of P
processes reads its own 1/P of every source domain with b/P images per class
and step; each of N devices computes 2b/N images per domain. Every process
reads the whole eval sets, in batches of `eval_batch_size` rounded up to a
multiple of N (the padding rows are masked out of the metrics).
"""

import dataclasses
from typing import Callable, Iterator

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import tensorflow as tf

from fasjax import input_pipeline
from fasjax import sharding

Batches = Callable[[], Iterator[dict[str, np.ndarray]]]


@dataclasses.dataclass(frozen=True)
class RunData:
  """The training stream and the eval sets (name -> batch iterator factory)."""
  train: tf.data.Dataset
  target: dict[str, Batches]
  dev: dict[str, Batches]


def depth_size(config: ml_collections.ConfigDict) -> int:
  """Side of the depth map: f's resolution, the input size over 8."""
  return config.model.image_size // 8


def _split_builder(builder: str) -> tuple[str, str | None]:
  name, _, config = builder.partition('/')
  return name, config or None


def _load_or_prepare(name: str, builder_config: str | None,
                     splits: list[str], data_dir: str | None
                     ) -> tf.data.Dataset:
  try:
    return input_pipeline.load_domain(name, builder_config, splits, data_dir)
  except input_pipeline.DatasetNotPreparedError:
    if name != 'synthetic_fas':
      raise
  from fasjax.datasets import prepare_synthetic  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  logging.info('Generating synthetic_fas/%s into %s (first use).',
               builder_config,
               data_dir or f'{tfds.core.constants.DATA_DIR} (the tfds default;'
               ' --config.data.data_dir=DIR puts it elsewhere)')
  prepare_synthetic.prepare([builder_config], data_dir)
  return input_pipeline.load_domain(name, builder_config, splits, data_dir)


def load(config: ml_collections.ConfigDict, domain: str,
         splits: list[str]) -> tf.data.Dataset:
  """Raw examples of one domain's splits, preparing synthetic data if needed.

  With several processes only process 0 generates missing synthetic data;
  the others wait for it at a barrier that every process passes (two
  writers would race for the same tfds directory).
  """
  name, builder_config = _split_builder(config.data.builders[domain])
  data_dir = config.data.data_dir
  if name == 'synthetic_fas' and jax.process_count() > 1:
    if jax.process_index() == 0:
      _load_or_prepare(name, builder_config, splits, data_dir)
    multihost_utils.sync_global_devices(f'synthetic_fas/{builder_config}')
  return _load_or_prepare(name, builder_config, splits, data_dir)


# Where the build commands (docs/datasets.md) expect each release, under RAW/.
_RAW_FOLDERS = {'oulu_npu': 'OULU-NPU', 'casia_fasd': 'CASIA-FASD',
                'replay_attack': 'replayattack', 'msu_mfsd': 'MSU-MFSD'}


def _build_command(name: str, data_dir: str) -> str:
  folder = _RAW_FOLDERS.get(name.split('/')[0], name)
  return (f'tfds build --imports=fasjax.datasets {name} '
          f'--manual_dir=RAW/{folder} --data_dir={data_dir}')


def check_prepared(config: ml_collections.ConfigDict) -> None:
  """Raises DatasetNotPreparedError naming every real dataset not built.

  The run reads the sources, the target and the dev domains; synthetic ones
  are generated on use and never missing. The message lists one build
  command per missing dataset (each needs the licensed raw release unpacked
  under RAW/; docs/design.md §2 describes the releases).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import fasjax.datasets  # pylint: disable=g-import-not-at-top,unused-import  # registers the builders
  data_dir = config.data.data_dir
  shown_dir = data_dir or str(tfds.core.constants.DATA_DIR)
  domains = dict.fromkeys(list(config.data.sources) + [config.data.target]
                          + list(config.data.dev_domains))
  missing = []
  for domain in domains:
    full_name = config.data.builders[domain]
    name, _ = _split_builder(full_name)
    if name == 'synthetic_fas':
      continue
    try:
      prepared = tfds.builder(full_name, data_dir=data_dir,
                              try_gcs=False).is_prepared()
    except tfds.core.registered.DatasetNotFoundError:
      prepared = False
    if not prepared:
      missing.append(full_name)
  if missing:
    commands = '\n'.join(f'  {_build_command(m, shown_dir)}' for m in missing)
    raise input_pipeline.DatasetNotPreparedError(
        f'{len(missing)} of the datasets this protocol reads '
        f'{"is" if len(missing) == 1 else "are"} not prepared in '
        f'data_dir={shown_dir}: {", ".join(missing)}. Build '
        f'{"it" if len(missing) == 1 else "each"} from its licensed raw '
        'release unpacked under RAW/ (docs/datasets.md), or add '
        ':synthetic to --config for the built-in benchmark:\n' + commands)


def eval_batch_size(config: ml_collections.ConfigDict) -> int:
  """config.eval_batch_size rounded up to a multiple of the device count."""
  devices = jax.device_count()
  return -(-config.eval_batch_size // devices) * devices


def process_per_class_batch(config: ml_collections.ConfigDict) -> int:
  """This process's live (and spoof) images per source domain and step."""
  # config_checks.validate ensures the division is exact.
  return config.data.per_class_batch // jax.process_count()


def eval_sets(config: ml_collections.ConfigDict, domains: list[str],
              splits: list[str]) -> dict[str, Batches]:
  """Per domain, a factory of fresh eval batch iterators over `splits`."""
  def factory(dataset: tf.data.Dataset) -> Batches:
    return lambda: input_pipeline.eval_batches(
        dataset, batch_size=eval_batch_size(config),
        image_size=config.model.image_size, depth_size=depth_size(config))
  return {d: factory(load(config, d, splits)) for d in domains}


def make(config: ml_collections.ConfigDict, start_step: int) -> RunData:
  """The training stream from `start_step` on, the target and dev eval sets.

  The stream yields this process's part of each global step batch: its own
  shard of every source domain, `process_per_class_batch` images per class
  (all of `per_class_batch` in a single-process run).
  """
  sources = [sharding.shard_dataset(load(config, d,
                                         list(config.data.train_splits)))
             for d in config.data.sources]
  train = input_pipeline.train_dataset(
      sources, per_class_batch=process_per_class_batch(config),
      image_size=config.model.image_size, depth_size=depth_size(config),
      seed=config.seed, flip=config.data.flip,
      shuffle_buffer=config.data.shuffle_buffer, start_step=start_step)
  return RunData(
      train=train,
      target=eval_sets(config, [config.data.target],
                       list(config.data.target_splits)),
      dev=eval_sets(config, list(config.data.dev_domains),
                    list(config.data.dev_splits)))
