"""Out of device memory in the first step: one clear error with the options.

No CPU runs out of memory on the smoke model, so the compiled step is
replaced by one that raises what XLA raises on a GPU
(`RESOURCE_EXHAUSTED: Out of memory ...`); everything before it (data,
initialisation, mesh, restore) is the real run.
"""

import os

import jax
import pytest
import smoke_run

from fasjax import train


def _raise_oom(*_):
  raise jax.errors.JaxRuntimeError(
      'RESOURCE_EXHAUSTED: Out of memory while trying to allocate '
      '25769803776 bytes.')


def test_first_step_out_of_memory_is_reported_with_options(
    tmp_path, data_dir, monkeypatch):
  monkeypatch.setattr(train, 'compile_train_step',
                      lambda *_: (_raise_oom, 25.3e9))
  config = smoke_run.config(data_dir)
  with pytest.raises(train.DeviceOutOfMemoryError) as raised:
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  message = str(raised.value)
  assert "peak: 25.3 GB per device; model.remat='none', 1 device(s)" in message
  for option in ('--config.model.remat=domains', 'more devices',
                 '--config.model.dtype=bfloat16',
                 '--config.data.per_class_batch'):
    assert option in message, option
  assert not os.path.exists(tmp_path / 'run' / 'results.json')


def test_other_runtime_errors_pass_through(tmp_path, data_dir, monkeypatch):
  def fail(*_):
    raise jax.errors.JaxRuntimeError('INTERNAL: something else')
  monkeypatch.setattr(train, 'compile_train_step', lambda *_: (fail, None))
  with pytest.raises(jax.errors.JaxRuntimeError, match='INTERNAL'):
    train.train_and_evaluate(smoke_run.config(data_dir),
                             str(tmp_path / 'run'))


def test_is_out_of_memory_reads_xla_wording():
  assert train.is_out_of_memory(jax.errors.JaxRuntimeError(
      'RESOURCE_EXHAUSTED: Out of memory while trying to allocate 8 bytes.'))
  assert not train.is_out_of_memory(jax.errors.JaxRuntimeError('INTERNAL'))
  assert not train.is_out_of_memory(MemoryError('Out of memory'))
