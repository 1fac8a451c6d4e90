"""Fault injection: kills, damaged checkpoints, a held workdir, a full disk.

Each test injects one fault into a `synthetic,smoke` run and checks that no
finished work is lost and that the message says what to do. The reference
for "nothing lost" is an uninterrupted run of the same config: after the
fault and a restart, results.json must equal it exactly.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import errno

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import smoke_run

from fasjax import checkpoint
from fasjax import checkpoint_eval
from fasjax import train
from fasjax import workdir_lock


@pytest.fixture(scope='module')
def reference(trained_smoke_run):
  """An uninterrupted smoke run (tests/conftest.py): its workdir."""
  return trained_smoke_run


def _kill_when(workdir, data_dir, condition, timeout=300):
  """Starts a run and SIGKILLs it as soon as `condition()` holds."""
  proc = subprocess.Popen(smoke_run.command(workdir, data_dir),
                          cwd=smoke_run.ROOT,
                          env=smoke_run.env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + timeout
  try:
    while not condition():
      assert proc.poll() is None, 'the run ended before the fault'
      assert time.time() < deadline, 'the fault point was never reached'
      time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.wait()
  return proc


def _writing_checkpoint(workdir, step):
  def check():
    folder = os.path.join(workdir, 'checkpoints')
    return os.path.isdir(folder) and any(
        name.startswith(f'{step}.') and 'tmp' in name
        for name in os.listdir(folder))
  return check


def _restart(workdir, data_dir):
  return smoke_run.launch(workdir, data_dir)


def test_sigkill_during_checkpoint_write_then_restart(tmp_path, data_dir,
                                                     reference):
  workdir = str(tmp_path / 'run')
  _kill_when(workdir, data_dir, _writing_checkpoint(workdir, 6))
  # Killed while step 6 was being written: only step 3 is complete.
  assert smoke_run.checkpoint_steps(workdir) == [3]
  proc = _restart(workdir, data_dir)
  assert 'Resumed from checkpoint at step 3' in proc.stderr
  # The restart loads its train step from the persistent compilation cache
  # (fasjax/compilation_cache.py) that the killed run, at the latest, wrote;
  # the results below equal the uninterrupted run's.
  assert smoke_run.LOADED_FROM_CACHE in smoke_run.train_step_line(proc.stderr)
  assert (smoke_run.read_json(os.path.join(workdir, 'results.json'))
          == smoke_run.read_json(os.path.join(reference, 'results.json')))


def test_sigkill_between_checkpoints_then_restart(tmp_path, data_dir,
                                                 reference, caplog):
  workdir = str(tmp_path / 'run')
  metrics = os.path.join(workdir, 'metrics.jsonl')

  def after_step_4():
    # Step 4's losses are logged after step 3's checkpoint is complete.
    return os.path.exists(metrics) and '"step": 4,' in open(metrics).read()

  _kill_when(workdir, data_dir, after_step_4)
  assert smoke_run.checkpoint_steps(workdir) == [3]
  # Restarted in this process, which runs what launch.py runs, to spare a
  # launch.py start (the test above restarts through launch.py itself).
  config = smoke_run.config(data_dir)
  # The absl logger's own level: another test may have lowered absl's
  # verbosity in this worker.
  with caplog.at_level('INFO', logger='absl'):
    train.train_and_evaluate(config, workdir)
  assert 'Resumed from checkpoint at step 3' in caplog.text
  assert (smoke_run.read_json(os.path.join(workdir, 'results.json'))
          == smoke_run.read_json(os.path.join(reference, 'results.json')))
  # The final parameters too, bit for bit.
  _, _, template = train.build(config)
  finals = [checkpoint.restore(checkpoint.manager(w), template, 6)[0]
            for w in (workdir, reference)]
  for a, b in zip(jax.tree.leaves(finals[0].params),
                  jax.tree.leaves(finals[1].params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _damage_latest(workdir):
  """Truncates every array file of the latest checkpoint to half its size."""
  latest = os.path.join(workdir, 'checkpoints', str(smoke_run.checkpoint_steps(workdir)[-1]),
                        'state')
  damaged = 0
  for folder, _, files in os.walk(latest):
    for name in files:
      path = os.path.join(folder, name)
      size = os.path.getsize(path)
      if size > 64:
        with open(path, 'r+b') as f:
          f.truncate(size // 2)
        damaged += 1
  assert damaged


@pytest.fixture
def damaged_copy(tmp_path, reference):
  workdir = str(tmp_path / 'damaged')
  shutil.copytree(reference, workdir)
  _damage_latest(workdir)
  return workdir


def test_damaged_latest_checkpoint_eval_falls_back(damaged_copy, data_dir,
                                                   caplog):
  with caplog.at_level(logging.WARNING):
    result = checkpoint_eval.evaluate_checkpoints(smoke_run.config(data_dir),
                                                  damaged_copy)
  assert 'Checkpoint of step 6' in caplog.text and 'cannot be read' in caplog.text
  assert result['step'] == 3


def test_damaged_latest_checkpoint_resume_falls_back(damaged_copy, data_dir,
                                                     reference, caplog):
  with caplog.at_level(logging.WARNING):
    result = train.train_and_evaluate(smoke_run.config(data_dir), damaged_copy)
  assert 'Checkpoint of step 6' in caplog.text
  assert result == smoke_run.read_json(os.path.join(reference, 'results.json'))


def test_workdir_held_by_a_live_run_is_refused(tmp_path, data_dir):
  with workdir_lock.hold(str(tmp_path)):
    with pytest.raises(workdir_lock.WorkdirLockedError,
                       match='Another run .pid .* is training in'):
      train.train_and_evaluate(smoke_run.config(data_dir), str(tmp_path))


def test_stale_lock_of_a_killed_run_does_not_block(tmp_path):
  code = ('import sys, time; sys.path.insert(0, %r); '
          'from fasjax import workdir_lock; '
          'ctx = workdir_lock.hold(%r); ctx.__enter__(); '
          'print("held", flush=True); time.sleep(60)') % (smoke_run.ROOT,
                                                         str(tmp_path))
  proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE,
                          text=True)
  assert proc.stdout.readline().strip() == 'held'
  with pytest.raises(workdir_lock.WorkdirLockedError):
    with workdir_lock.hold(str(tmp_path)):
      pass
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert os.path.exists(tmp_path / '.lock')  # the stale file is still there
  with workdir_lock.hold(str(tmp_path)):
    pass


def test_disk_full_during_save_keeps_previous_checkpoint(tmp_path, data_dir,
                                                         monkeypatch):
  original = ocp.CheckpointManager.save

  def full_disk(self, step, *args, **kwargs):
    if step == 6:
      raise OSError(errno.ENOSPC, 'No space left on device')
    return original(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, 'save', full_disk)
  with pytest.raises(checkpoint.CheckpointWriteError,
                     match='step 6.*disk is full.*previous checkpoints are intact'):
    train.train_and_evaluate(smoke_run.config(data_dir), str(tmp_path))
  assert smoke_run.checkpoint_steps(str(tmp_path)) == [3]
  monkeypatch.undo()
  config = smoke_run.config(data_dir)
  _, _, template = train.build(config)
  state, history = checkpoint.restore(checkpoint.manager(str(tmp_path)),
                                      template, 3)
  assert int(state.step) == 3 and [h['step'] for h in history] == [3]


def test_unwritable_workdir_is_a_clear_error(tmp_path, data_dir):
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  with pytest.raises(workdir_lock.WorkdirUnusableError,
                     match='Cannot write to the workdir .* --workdir'):
    train.train_and_evaluate(smoke_run.config(data_dir),
                             str(blocker / 'workdir'))


@pytest.mark.parametrize('code,hint', [(errno.EACCES, 'not writable'),
                                       (errno.EROFS, 'not writable'),
                                       (errno.ENOSPC, 'disk is full')])
def test_save_errors_say_what_happened(tmp_path, monkeypatch, code, hint):
  config = smoke_run.config(str(tmp_path))
  _, _, state = train.build(config)
  mngr = checkpoint.manager(str(tmp_path))

  def failing(*args, **kwargs):
    raise OSError(code, os.strerror(code))

  monkeypatch.setattr(mngr, 'save', failing)
  with pytest.raises(checkpoint.CheckpointWriteError,
                     match=f'step 0 .*{hint}.*rerun the same command'):
    checkpoint.save(mngr, state, [])


def test_nothing_is_unpickled():
  """Checkpoints are orbax (tensorstore + JSON), data tfds records: no pickle."""
  sources = []
  for folder, _, files in os.walk(os.path.join(smoke_run.ROOT, 'fasjax')):
    sources += [os.path.join(folder, f) for f in files if f.endswith('.py')]
  for path in sources:
    with open(path) as f:
      text = f.read()
    for word in ('import pickle', 'pickle.load', 'allow_pickle=True',
                 'import dill', 'cloudpickle', 'torch.load'):
      assert word not in text, (path, word)
