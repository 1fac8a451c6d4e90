"""Config arguments, validation and the not-prepared message (no compilation)."""

import importlib

import pytest

from configs import common
from fasjax import config_checks
from fasjax import data
from fasjax import input_pipeline
from fasjax import model_setup

PROTOCOLS = ('ocm_to_i', 'oci_to_m', 'omi_to_c', 'icm_to_o', 'mi_to_c',
             'mi_to_o')


@pytest.mark.parametrize('protocol', PROTOCOLS)
def test_every_protocol_config_is_valid(protocol):
  module = importlib.import_module(f'configs.{protocol}')
  sources, target = protocol.split('_to_')
  for arg in (None, 'synthetic', 'synthetic,smoke', 'smoke,no_meta,seed=4'):
    config = module.get_config(arg)
    config_checks.validate(config)
    assert config.data.sources == list(sources)
    assert config.data.target == target


def test_paper_defaults():
  c = common.protocol_config('ocm', 'i', None)
  assert (c.model.image_size, c.model.width, c.data.per_class_batch) == (256, 1.0, 10)
  assert (c.loss.lambda_cls, c.loss.lambda_dep, c.loss.lambda_seg,
          c.loss.lambda_trip) == (1.0, 10.0, 1.0, 0.5)
  assert (c.optim.lr, c.optim.weight_decay, c.meta.inner_lr) == (1e-3, 5e-5, 1e-3)
  assert c.data.builders['i'] == 'replay_attack'
  assert c.data.dev_domains == ['o']  # CASIA and MSU have no dev split.


def test_unknown_argument_lists_the_valid_ones():
  with pytest.raises(ValueError, match='Unknown config argument .nometa.') as e:
    common.protocol_config('ocm', 'i', 'synthetic,nometa')
  for name in common.FLAGS + ('seed=N',):
    assert name in str(e.value)
  with pytest.raises(ValueError, match='not an integer'):
    common.parse_arg('seed=x')


@pytest.mark.parametrize('arg,field,value', [
    ('no_parsing', 'loss.lambda_seg', 0.0),
    ('no_triplet', 'loss.lambda_trip', 0.0),
    ('no_triplet', 'meta.inner_trip_weight', 0.0),
    ('no_asc', 'model.use_asc', False),
    ('no_meta', 'meta.enabled', False),
    ('normal_triplet', 'loss.one_side_triplet', False),
    ('seed=7', 'seed', 7),
])
def test_ablation_switches(arg, field, value):
  c = common.protocol_config('ocm', 'i', f'synthetic,{arg}')
  node = c
  for part in field.split('.'):
    node = node[part]
  assert node == value


@pytest.mark.parametrize('field,value,match', [
    ('model.image_size', 100, 'model.image_size'),
    ('model.image_size', 48, 'multiple of 32'),
    ('optim.lr', -1.0, 'optim.lr'),
    ('optim.lr', float('nan'), 'optim.lr'),
    ('model.width', 0.0, 'model.width'),
    ('data.per_class_batch', 1, 'data.per_class_batch'),
    ('data.target', 'x', 'data.target'),
    ('num_steps', 0, 'num_steps'),
])
def test_invalid_values_name_the_field(field, value, match):
  c = common.protocol_config('ocm', 'i', 'synthetic,smoke')
  *sections, name = field.split('.')
  node = c
  for section in sections:
    node = node[section]
  node[name] = value
  with pytest.raises(config_checks.ConfigError, match=match):
    config_checks.validate(c)


def test_real_data_not_prepared_says_how(tmp_path):
  c = common.protocol_config('ocm', 'i', 'smoke')
  c.data.data_dir = str(tmp_path)
  with pytest.raises(input_pipeline.DatasetNotPreparedError,
                     match='tfds build --imports=fasjax.datasets'):
    data.make(c, start_step=0)


@pytest.mark.parametrize('builder,match', [
    ('imagenet_fas', 'unknown dataset'),
    ('synthetic_fas/x', "synthetic_fas has no config 'x'"),
])
def test_unknown_dataset_names_the_field(builder, match):
  c = common.protocol_config('ocm', 'i', 'synthetic,smoke')
  c.data.builders['o'] = builder
  with pytest.raises(config_checks.ConfigError,
                     match=f'config.data.builders.o: {match}'):
    config_checks.validate(c)


def test_batch_must_divide_over_devices(monkeypatch):
  c = common.protocol_config('ocm', 'i', 'synthetic,smoke')
  c.data.per_class_batch = 3  # 6 images per domain
  monkeypatch.setattr(config_checks.jax, 'device_count', lambda: 4)
  with pytest.raises(config_checks.ConfigError,
                     match='config.data.per_class_batch: .* 4 devices; set '
                     '--config.data.per_class_batch to a multiple of 2'):
    config_checks.validate(c)
  c.data.per_class_batch = 2  # 4 images per domain
  config_checks.validate(c)


@pytest.mark.parametrize('conv_impl', ['auto', 'xla', 'matmul'])
def test_every_conv_path_runs_on_several_devices(monkeypatch, conv_impl):
  # The shard_map step needs no partitioning of conv gradients.
  c = common.protocol_config('ocm', 'i', 'synthetic,smoke')
  c.model.conv_impl = conv_impl
  monkeypatch.setattr(config_checks.jax, 'device_count', lambda: 4)
  config_checks.validate(c)


def test_unknown_remat_policy_names_the_field_and_choices():
  c = common.protocol_config('ocm', 'i', 'synthetic,smoke')
  c.model.remat = 'everything'
  with pytest.raises(config_checks.ConfigError,
                     match=r"config.model.remat: must be one of \('none', "
                     r"'conv', 'blocks', 'domains'\), got 'everything'; "
                     r"e.g. --config.model.remat=domains"):
    config_checks.validate(c)


def test_paper_config_defaults_to_remat_and_auto_convs():
  paper = common.protocol_config('ocm', 'i', None)
  assert (paper.model.remat, paper.model.conv_impl) == ('domains', 'auto')
  synthetic = common.protocol_config('ocm', 'i', 'synthetic')
  assert synthetic.model.remat == 'none'


@pytest.mark.parametrize('backend,width,expected', [
    ('gpu', 1.0, 'xla'), ('tpu', 1.0, 'xla'), ('cpu', 1.0, 'matmul'),
    ('cpu', 0.5, 'matmul'), ('cpu', 0.125, 'xla')])
def test_auto_conv_impl_per_backend(backend, width, expected):
  impl, why = model_setup.resolve_conv_impl('auto', width, backend)
  assert impl == expected
  assert why.startswith('auto: ')
  assert (f'on {backend}' if backend != 'cpu' else 'on CPUs') in why
  assert model_setup.resolve_conv_impl('matmul', width, backend) == (
      'matmul', 'set in the config')


def test_class_batch_must_divide_over_processes(monkeypatch):
  c = common.protocol_config('ocm', 'i', 'synthetic,smoke')
  c.data.per_class_batch = 3
  monkeypatch.setattr(config_checks.jax, 'process_count', lambda: 2)
  with pytest.raises(config_checks.ConfigError,
                     match='config.data.per_class_batch: .* 2 processes'):
    config_checks.validate(c)
  c.data.per_class_batch = 4
  config_checks.validate(c)
  monkeypatch.setattr(data.jax, 'process_count', lambda: 2)
  assert data.process_per_class_batch(c) == 2  # Each process reads half.


@pytest.mark.parametrize('devices,requested,expected', [
    (1, 30, 30), (4, 30, 32), (4, 32, 32), (4, 1, 4)])
def test_eval_batch_rounded_up_to_the_devices(monkeypatch, devices, requested,
                                              expected):
  c = common.protocol_config('ocm', 'i', 'synthetic,smoke')
  c.eval_batch_size = requested
  monkeypatch.setattr(data.jax, 'device_count', lambda: devices)
  assert data.eval_batch_size(c) == expected
