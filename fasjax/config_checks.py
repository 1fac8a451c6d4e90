"""Config validation before anything is compiled: each error names its field."""

import ml_collections


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
