"""End to end through launch.py on the `synthetic,smoke` config.

Trains (generating the synthetic miniatures on first use), checks
results.json and the run's records, then checks that `--mode=eval` restores
the checkpoints and reproduces results.json exactly. A fault-injection test
checks that a non-finite loss stops the run with the step named and the last
good checkpoint kept. Resuming after a stop is tested with SIGKILL in
test_reliability.py.

The user-error tests run launch.py as a user would and check the contract of
its mistakes: exit status 2, one `error:` line on stderr naming the fix, no
traceback (unless --debug), nothing created in a workdir that did not exist;
--help exits 0 without importing JAX or TensorFlow.
"""

import json
import math
import os
import subprocess
import sys
import time

import jax.numpy as jnp
import pytest
import smoke_run

from fasjax import train
from fasjax import workdir_lock


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
    metrics['loss'] = metrics['loss'] * jnp.where(state.step >= 4,
                                                  float('nan'), 1.0)
    return new_state, metrics

  monkeypatch.setattr(train.meta, 'train_step', poisoned)
  with pytest.raises(train.NonFiniteLossError, match='at step 5'):
    train.train_and_evaluate(config, str(tmp_path))
  assert smoke_run.checkpoint_steps(str(tmp_path)) == [3]
  assert not (tmp_path / 'results.json').exists()



# -----------------------------------------------------------------------------
# --help and user errors
# -----------------------------------------------------------------------------


def _run_launch(*args, timeout=300):
  start = time.monotonic()
  proc = subprocess.run([sys.executable, 'launch.py', *args],
                        cwd=smoke_run.ROOT, env=smoke_run.env(),
                        capture_output=True, text=True, timeout=timeout)
  return proc, time.monotonic() - start


def test_help_exits_0_lists_protocols_and_arguments_without_jax():
  probe = ('import runpy, sys\n'
           'sys.argv = ["launch.py", "--help"]\n'
           'try:\n'
           '  runpy.run_path("launch.py", run_name="__main__")\n'
           'except SystemExit as e:\n'
           '  code = e.code\n'
           'print("EXIT", code, "jax" in sys.modules, '
           '"tensorflow" in sys.modules, "fasjax.train" in sys.modules)\n')
  proc = subprocess.run([sys.executable, '-c', probe], cwd=smoke_run.ROOT,
                        env=smoke_run.env(), capture_output=True, text=True,
                        timeout=120)
  assert proc.stdout.strip().splitlines()[-1] == 'EXIT 0 False False False'
  for name in ('ocm_to_i', 'oci_to_m', 'omi_to_c', 'icm_to_o', 'mi_to_c',
               'mi_to_o', 'synthetic', 'smoke', 'no_parsing', 'seed=N',
               '--workdir', '--mode', '--debug'):
    assert name in proc.stdout, name
  help_proc, seconds = _run_launch('--help')
  assert help_proc.returncode == 0 and 'Protocols' in help_proc.stdout
  # Measured 0.3 s on the 2-core machine; generous for a loaded CI.
  assert seconds < 10, seconds


def _assert_one_line_error(proc, *fragments):
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
  assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error: ')]
  assert len(errors) == 1, proc.stderr[-2000:]
  for fragment in fragments:
    assert fragment in proc.stderr, (fragment, proc.stderr[-2000:])
  return errors[0]


@pytest.mark.parametrize('config_arg,fragments', [
    ('configs/ocm_to_i.py:synthetc', ("'synthetc'", "did you mean 'synthetic'",
                                      'Valid arguments')),
    ('configs/ocm_to_i.py:smoke,sed=3', ("did you mean 'seed=N'",)),
    ('configs/nope.py:synthetic', ('no file configs/nope.py', 'ocm_to_i')),
])
def test_config_mistakes_are_one_line_with_the_fix(tmp_path, config_arg,
                                                   fragments):
  workdir = tmp_path / 'new'
  proc, _ = _run_launch(f'--config={config_arg}', f'--workdir={workdir}')
  _assert_one_line_error(proc, *fragments)
  assert not workdir.exists()


def test_override_of_a_missing_field_names_the_closest(tmp_path):
  proc, _ = _run_launch(f'--config={smoke_run.CONFIG}',
                        f'--workdir={tmp_path / "w"}', '--config.num_step=3')
  _assert_one_line_error(proc, '--config.num_step', 'did you mean num_steps')


def test_workdir_that_is_a_file(tmp_path):
  path = tmp_path / 'a_file'
  path.write_text('not a directory')
  proc, _ = _run_launch(f'--config={smoke_run.CONFIG}', f'--workdir={path}')
  _assert_one_line_error(proc, 'it is a file', 'Choose a new or existing')
  assert path.read_text() == 'not a directory'


@pytest.mark.parametrize('mode', ['report', 'eval'])
def test_report_or_eval_without_a_run_creates_nothing(tmp_path, mode):
  proc, _ = _run_launch(f'--config={smoke_run.CONFIG}',
                        f'--workdir={tmp_path}', f'--mode={mode}')
  _assert_one_line_error(proc, 'No checkpoint', 'train first')
  assert os.listdir(tmp_path) == []
  proc, _ = _run_launch(f'--config={smoke_run.CONFIG}',
                        f'--workdir={tmp_path / "missing"}', f'--mode={mode}')
  _assert_one_line_error(proc, 'does not exist')


def test_debug_shows_the_traceback(tmp_path):
  path = tmp_path / 'a_file'
  path.write_text('')
  proc, _ = _run_launch(f'--config={smoke_run.CONFIG}', f'--workdir={path}',
                        '--debug')
  assert proc.returncode != 0 and 'Traceback' in proc.stderr


def test_missing_real_datasets_are_all_listed_and_nothing_is_written(
    tmp_path):
  workdir, data = tmp_path / 'run', tmp_path / 'empty_tfds'
  data.mkdir()
  proc, _ = _run_launch('--config=configs/ocm_to_i.py', f'--workdir={workdir}',
                        f'--config.data.data_dir={data}')
  _assert_one_line_error(proc, '4 of the datasets')
  commands = [l.strip() for l in proc.stderr.splitlines()
              if l.strip().startswith('tfds build')]
  assert sorted(c.split()[3] for c in commands) == [
      'casia_fasd', 'msu_mfsd', 'oulu_npu', 'replay_attack']
  assert all(f'--data_dir={data}' in c for c in commands)
  assert 'DESIGN.md' not in proc.stderr
  assert not workdir.exists()


def test_a_run_that_stops_before_training_leaves_no_debris(tmp_path):
  # The data dir is a file: generating the synthetic data fails after the
  # run has written its config, provenance, lock and checkpoints folder.
  not_a_dir = tmp_path / 'tfds_is_a_file'
  not_a_dir.write_text('')
  workdir = tmp_path / 'new_run'
  proc, _ = _run_launch(f'--config={smoke_run.CONFIG}', f'--workdir={workdir}',
                        f'--config.data.data_dir={not_a_dir}')
  assert proc.returncode != 0
  assert not workdir.exists(), os.listdir(workdir)


def test_remove_debris_keeps_anything_a_run_wrote_later(tmp_path):
  for name in ('config.json', 'provenance.json', '.lock'):
    (tmp_path / name).write_text('{}')
  (tmp_path / 'checkpoints').mkdir()
  (tmp_path / 'metrics.jsonl').write_text('{}')
  assert not workdir_lock.remove_debris(str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == [
      '.lock', 'checkpoints', 'config.json', 'metrics.jsonl',
      'provenance.json']
  (tmp_path / 'metrics.jsonl').unlink()
  assert workdir_lock.remove_debris(str(tmp_path))
  assert not tmp_path.exists()


def test_target_video_scores_are_saved_per_evaluation(trained):
  # Studies resample target videos from these files: their scores must be
  # the ones results.json's numbers came from (AUC recomputed by sklearn).
  from sklearn import metrics as sk_metrics  # pylint: disable=g-import-not-at-top
  results = smoke_run.read_json(os.path.join(trained, 'results.json'))
  for block in ('protocol', 'honest'):
    step = results[block]['step']
    saved = smoke_run.read_json(
        os.path.join(trained, f'target_scores_step{step}.json'))
    assert len(saved['video_ids']) == len(set(saved['video_ids']))
    assert len(saved['scores']) == len(saved['labels']) > 0
    assert sk_metrics.roc_auc_score(saved['labels'], saved['scores']) == (
        pytest.approx(results[block]['auc'], abs=1e-9))
