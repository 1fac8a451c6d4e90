"""End to end through launch.py on the `synthetic,smoke` config.

Trains (generating the synthetic miniatures on first use), checks
results.json and the run's records, then checks that `--mode=eval` restores
the checkpoints and reproduces results.json exactly. A fault-injection test
checks that a non-finite loss stops the run with the step named and the last
good checkpoint kept. Resuming after a stop is tested with SIGKILL in
test_reliability.py.
"""

import json
import math
import os
import subprocess
import sys

import pytest

from configs import common
from fasjax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = 'configs/ocm_to_i.py:synthetic,smoke'


def _launch(workdir, data_dir, *extra):
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT,
             # The same XLA settings as this process (tests/conftest.py).
             JAX_DISABLE_MOST_OPTIMIZATIONS='1')
  cmd = [sys.executable, 'launch.py', f'--config={CONFIG}',
         f'--workdir={workdir}', f'--config.data.data_dir={data_dir}', *extra]
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture(scope='module')
def trained(tmp_path_factory, data_dir):
  workdir = str(tmp_path_factory.mktemp('run'))
  _launch(workdir, data_dir)
  return workdir


def _read(path):
  with open(path) as f:
    return json.load(f)


def test_results_json(trained):
  results = _read(os.path.join(trained, 'results.json'))
  assert results['target'] == 'i'
  assert results['step'] == 6
  for block in ('protocol', 'honest'):
    numbers = results[block]
    for key in ('hter', 'auc', 'eer', 'tpr_at_fpr_1pct'):
      assert 0.0 <= numbers[key] <= 1.0, (block, key, numbers[key])
    assert isinstance(numbers['threshold'], float)
    assert numbers['step'] in (3, 6)  # the evaluated steps of the smoke run


def test_run_records(trained):
  config = _read(os.path.join(trained, 'config.json'))
  assert config['protocol'] == 'ocm_to_i' and config['num_steps'] == 6
  prov = _read(os.path.join(trained, 'provenance.json'))
  assert {'jax', 'flax', 'optax', 'orbax-checkpoint', 'tensorflow-datasets'
          } <= set(prov['versions'])
  assert prov['git_commit']
  with open(os.path.join(trained, 'metrics.jsonl')) as f:
    lines = [json.loads(line) for line in f]
  losses = [l['values']['train/loss'] for l in lines
            if 'train/loss' in l.get('values', {})]
  assert losses and all(math.isfinite(v) for v in losses)
  assert any('eval/protocol_hter' in l.get('values', {}) for l in lines)
  assert any(name.startswith('events.out.tfevents')
             for name in os.listdir(trained))
  steps = sorted(int(s) for s in os.listdir(os.path.join(trained,
                                                         'checkpoints'))
                 if s.isdigit())
  assert steps[-1] == 6 and len(steps) >= 2


def test_eval_mode_reproduces_results(trained, data_dir):
  _launch(trained, data_dir, '--mode=eval')
  assert (_read(os.path.join(trained, 'eval_results.json'))
          == _read(os.path.join(trained, 'results.json')))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(
    tmp_path, data_dir, monkeypatch):
  config = common.protocol_config('ocm', 'i', 'synthetic,smoke')
  config.data.data_dir = data_dir
  original = train.meta.train_step

  def poisoned(state, batch, **kwargs):
    new_state, metrics = original(state, batch, **kwargs)
    # From step 5 on the loss is NaN, as after a divergence.
    metrics['loss'] = metrics['loss'] * train.jnp.where(state.step >= 4,
                                                        float('nan'), 1.0)
    return new_state, metrics

  monkeypatch.setattr(train.meta, 'train_step', poisoned)
  with pytest.raises(train.NonFiniteLossError, match='at step 5'):
    train.train_and_evaluate(config, str(tmp_path))
  steps = sorted(int(s) for s in os.listdir(tmp_path / 'checkpoints')
                 if s.isdigit())
  assert steps == [3]
  assert not (tmp_path / 'results.json').exists()

