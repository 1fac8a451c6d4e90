"""The persistent compilation cache (fasjax/compilation_cache.py).

In-process: a cold cache writes a program and loads it the second time; ''
turns the cache off; a bad directory is refused with the field named; the
default lies outside the user's home while the tests run. End to end, a
second launch with the same cache directory loads its train step and gives
the same results: tests/test_reliability.py's restarts check that (a killed
smoke run restarted with the suite's shared cache directory, its
results.json equal to an uninterrupted run's), so this module adds no
launch.py runs of its own.
"""

import json
import os

import jax
import jax.numpy as jnp
import pytest
import smoke_run

from fasjax import compilation_cache
from fasjax import config_checks
from fasjax import trained

_LOADED = smoke_run.LOADED_FROM_CACHE


@pytest.fixture
def restore_jax_cache_settings():
  names = ('jax_enable_compilation_cache', 'jax_compilation_cache_dir',
           'jax_persistent_cache_min_compile_time_secs',
           'jax_persistent_cache_min_entry_size_bytes')
  saved = {n: getattr(jax.config, n) for n in names}
  yield
  for name, value in saved.items():
    jax.config.update(name, value)
  from jax.experimental.compilation_cache import compilation_cache as cc  # pylint: disable=g-import-not-at-top
  cc.reset_cache()


def _compile(scale):
  """A program no other test compiles (a fresh closure: no in-memory hit)."""
  return jax.jit(lambda x: jnp.tanh(x) * scale + 0.123456789).lower(
      jnp.zeros((3, 7), jnp.float32)).compile()


def test_cold_cache_writes_then_loads_and_empty_turns_it_off(
    tmp_path, restore_jax_cache_settings):  # pylint: disable=unused-argument
  compilation_cache.configure(str(tmp_path / 'cache'))
  assert compilation_cache.is_enabled()
  with compilation_cache.watch() as cold:
    _compile(2.5)
  assert cold.hits == 0 and cold.writes >= 1
  assert os.listdir(tmp_path / 'cache')
  assert compilation_cache.outcome(cold, 1.0).startswith('compiled (1.0 s')
  with compilation_cache.watch() as warm:
    _compile(2.5)
  assert warm.hits == 1
  assert compilation_cache.outcome(warm, 0.2).startswith(_LOADED)

  compilation_cache.configure('')
  assert not compilation_cache.is_enabled()
  with compilation_cache.watch() as off:
    _compile(3.5)
  assert (off.hits, off.writes) == (0, 0)
  assert 'compilation cache off' in compilation_cache.outcome(off, 1.0)


def test_default_is_outside_home_in_tests_and_per_user_otherwise(
    monkeypatch, tmp_path):
  assert not compilation_cache.default_dir().startswith(
      os.path.expanduser('~') + os.sep)
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR')
  monkeypatch.delenv('XDG_CACHE_HOME', raising=False)
  monkeypatch.setenv('HOME', str(tmp_path))
  assert compilation_cache.default_dir() == str(
      tmp_path / '.cache' / 'fasjax' / 'jax_cache')
  assert smoke_run.config('d').compilation_cache_dir == (
      compilation_cache.default_dir())


@pytest.mark.parametrize('value, match', [
    ('FILE', '.*FILE is not a directory.*--config.compilation_cache_dir='),
    ('FILE/sub', 'cannot create'),
])
def test_bad_directory_names_the_field(tmp_path, value, match):
  (tmp_path / 'FILE').write_text('x')
  config = smoke_run.config(str(tmp_path))
  config.compilation_cache_dir = str(tmp_path / value)
  with pytest.raises(config_checks.ConfigError,
                     match='config.compilation_cache_dir: ' + match):
    config_checks.validate(config)


def test_non_string_is_refused():
  assert "must be a directory path or ''" in compilation_cache.problem(3)


def test_empty_directory_is_valid(tmp_path):
  config = smoke_run.config(str(tmp_path))
  config.compilation_cache_dir = ''
  config_checks.validate(config)


def test_a_runs_recorded_cache_dir_is_not_used_elsewhere(tmp_path):
  config = smoke_run.config(str(tmp_path)).to_dict()
  config['compilation_cache_dir'] = '/home/someone-else/.cache/jax'
  (tmp_path / 'config.json').write_text(json.dumps(config))
  loaded = trained.load_config(str(tmp_path))
  assert loaded.compilation_cache_dir == compilation_cache.default_dir()
