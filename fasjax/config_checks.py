"""Config validation before anything is compiled: each error names its field."""

import math

import jax
import ml_collections
import tensorflow_datasets as tfds

from fasjax import compilation_cache
from fasjax import compile_options
from fasjax.models import layers


class ConfigError(ValueError):
  """A config value the run cannot use; the message names the field."""


def _require(ok: bool, field: str, message: str) -> None:
  if not ok:
    raise ConfigError(f'config.{field}: {message}')


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for values the model, data or optimizer cannot take."""
  size = config.model.image_size
  # F pools 3 times and M twice more: 32 divides every valid input size.
  _require(isinstance(size, int) and size >= 32 and size % 32 == 0,
           'model.image_size', f'must be a multiple of 32 (>= 32), got {size}')
  _require(config.model.conv_impl in layers.CONV_IMPLS_AND_AUTO,
           'model.conv_impl', f'must be one of {layers.CONV_IMPLS_AND_AUTO}, '
           f'got {config.model.conv_impl!r}')
  remat = config.model.get('remat', 'none')
  _require(remat in layers.REMAT_POLICIES, 'model.remat',
           f'must be one of {layers.REMAT_POLICIES}, got {remat!r}; e.g. '
           "--config.model.remat=domains")
  _require(config.model.dtype in ('float32', 'bfloat16', 'float64'),
           'model.dtype', f'must be float32, bfloat16 or float64, got '
           f'{config.model.dtype!r}')
  _require(config.model.width > 0, 'model.width',
           f'must be positive, got {config.model.width}')
  _require(config.optim.lr > 0, 'optim.lr',
           f'must be positive, got {config.optim.lr}')
  _require(config.optim.weight_decay >= 0, 'optim.weight_decay',
           f'must be >= 0, got {config.optim.weight_decay}')
  _require(config.data.per_class_batch >= 2, 'data.per_class_batch',
           'must be >= 2 (a triplet needs two live samples per domain), got '
           f'{config.data.per_class_batch}')
  _require(config.num_steps >= 1, 'num_steps',
           f'must be >= 1, got {config.num_steps}')
  _require(config.eval_batch_size >= 1, 'eval_batch_size',
           f'must be >= 1, got {config.eval_batch_size}')
  sources, target = list(config.data.sources), config.data.target
  known = set(config.data.builders)
  for field, domains in (('data.sources', sources), ('data.target', [target]),
                         ('data.dev_domains', list(config.data.dev_domains))):
    unknown = [d for d in domains if d not in known]
    _require(not unknown, field, f'unknown domain(s) {unknown}; known: '
             f'{sorted(known)}')
  _require(target not in sources, 'data.target',
           f'{target!r} is also a source domain')
  _require(len(sources) >= (2 if config.meta.enabled else 1), 'data.sources',
           'meta-learning needs at least two source domains (one meta-test)')
  _require(bool(config.data.dev_domains), 'data.dev_domains',
           'the honest threshold needs at least one source with a dev split')
  why = compile_options.problem(
      config.get('exec_time_optimization_effort', None))
  _require(why is None, 'exec_time_optimization_effort', str(why))
  if 'compilation_cache_dir' in config:  # Absent from older configs.
    why = compilation_cache.problem(config.compilation_cache_dir)
    _require(why is None, 'compilation_cache_dir', str(why))
  _check_builders(config, sources + [target] + list(config.data.dev_domains))
  _check_devices(config)


def _check_devices(config: ml_collections.ConfigDict) -> None:
  """The batch splits over the devices and processes; the step partitions."""
  devices, processes = jax.device_count(), jax.process_count()
  per_domain = 2 * config.data.per_class_batch
  _require(per_domain % devices == 0, 'data.per_class_batch',
           f'each domain batch ({per_domain} = 2 x per_class_batch) must '
           f'divide evenly over the {devices} devices; set '
           '--config.data.per_class_batch to a multiple of '
           f'{devices // math.gcd(devices, 2)} or limit the devices JAX sees '
           '(e.g. CUDA_VISIBLE_DEVICES)')
  # Each process reads per_class_batch / processes images of each class.
  _require(config.data.per_class_batch % processes == 0,
           'data.per_class_batch', f'must be a multiple of the {processes} '
           f'processes, got {config.data.per_class_batch}')


def _check_builders(config: ml_collections.ConfigDict,
                    domains: list[str]) -> None:
  """Every dataset named for a used domain is a registered fasjax builder."""
  import fasjax.datasets  # pylint: disable=g-import-not-at-top,unused-import  # Registers.
  registered = set(tfds.list_builders(with_community_datasets=False))
  for domain in sorted(set(domains)):
    builder = config.data.builders[domain]
    name, _, variant = builder.partition('/')
    _require(name in registered, f'data.builders.{domain}',
             f'unknown dataset {builder!r}; fasjax builds synthetic_fas, '
             'oulu_npu, casia_fasd, replay_attack and msu_mfsd')
    if variant:
      names = [c.name for c in tfds.builder_cls(name).BUILDER_CONFIGS]
      _require(variant in names, f'data.builders.{domain}',
               f'{name} has no config {variant!r}; it has {names}')
