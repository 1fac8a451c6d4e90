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

import pytest
import smoke_run

from fasjax import train


@pytest.fixture(scope='module')
def trained(tmp_path_factory, data_dir):
  workdir = str(tmp_path_factory.mktemp('run'))
  smoke_run.launch(workdir, data_dir)
  return workdir


def test_results_json(trained):
  results = smoke_run.read_json(os.path.join(trained, 'results.json'))
  assert results['target'] == 'i'
  assert results['step'] == 6
  for block in ('protocol', 'honest'):
    numbers = results[block]
    for key in ('hter', 'auc', 'eer', 'tpr_at_fpr_1pct'):
      assert 0.0 <= numbers[key] <= 1.0, (block, key, numbers[key])
    assert isinstance(numbers['threshold'], float)
    assert numbers['step'] in (3, 6)  # the evaluated steps of the smoke run


def test_run_records(trained):
  config = smoke_run.read_json(os.path.join(trained, 'config.json'))
  assert config['protocol'] == 'ocm_to_i' and config['num_steps'] == 6
  prov = smoke_run.read_json(os.path.join(trained, 'provenance.json'))
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
  steps = smoke_run.checkpoint_steps(trained)
  assert steps[-1] == 6 and len(steps) >= 2


def test_eval_mode_reproduces_results(trained, data_dir):
  smoke_run.launch(trained, data_dir, '--mode=eval')
  assert (smoke_run.read_json(os.path.join(trained, 'eval_results.json'))
          == smoke_run.read_json(os.path.join(trained, 'results.json')))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(
    tmp_path, data_dir, monkeypatch):
  config = smoke_run.config(data_dir)
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
  assert smoke_run.checkpoint_steps(str(tmp_path)) == [3]
  assert not (tmp_path / 'results.json').exists()

