"""The train step's compile options (fasjax/compile_options.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import smoke_run

from fasjax import compile_options
from fasjax import config_checks
from fasjax import train


def test_per_backend_default_and_override():
  config = smoke_run.config('d')
  assert config.exec_time_optimization_effort is None
  assert compile_options.for_backend(config, 'tpu') == {
      'exec_time_optimization_effort': -1.0}
  assert compile_options.for_backend(config, 'cpu') == {}
  assert compile_options.for_backend(config, 'gpu') == {}
  config.exec_time_optimization_effort = 0.0
  assert compile_options.for_backend(config, 'tpu') == {}
  config.exec_time_optimization_effort = 0.5
  assert compile_options.for_backend(config, 'cpu') == {
      'exec_time_optimization_effort': 0.5}


def test_older_configs_without_the_field_take_the_default():
  config = smoke_run.config('d')
  del config['exec_time_optimization_effort']
  assert compile_options.exec_time_effort(config, 'tpu') == -1.0


@pytest.mark.parametrize('value, match', [
    (1.5, r'must be in \[-1, 1\]'), (-2.0, r'must be in \[-1, 1\]')])
def test_out_of_range_names_the_field(tmp_path, value, match):
  config = smoke_run.config(str(tmp_path))
  config.exec_time_optimization_effort = value
  with pytest.raises(config_checks.ConfigError,
                     match='config.exec_time_optimization_effort: ' + match):
    config_checks.validate(config)


def test_problem():
  assert compile_options.problem(None) is None
  assert compile_options.problem(-1) is None
  assert 'a number' in compile_options.problem('fast')
  assert 'a number' in compile_options.problem(True)


def test_compile_train_step_passes_the_options():
  step = jax.jit(lambda s, b: (s + 1.0, {'loss': jnp.sum(b)}))
  x = jnp.ones((4,), jnp.float32)
  compiled, peak = train.compile_train_step(
      step, x, x, {'exec_time_optimization_effort': -1.0})
  state, metrics = compiled(x, x)
  np.testing.assert_allclose(state, 2.0)
  assert float(metrics['loss']) == 4.0
  assert peak is None or peak > 0
  # An option the compiler does not know is an error: it was passed on.
  with pytest.raises(Exception, match='no_such_option'):
    train.compile_train_step(jax.jit(lambda s, b: (s - 1.0, b)), x, x,
                             {'no_such_option': 1})
