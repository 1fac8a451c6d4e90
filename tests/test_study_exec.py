"""Study executors: sequential, local (parallel) and slurm.

Unit tests run trivial commands in place of training. The smoke tests train
two smoke cells three ways and compare the study.json rows, which must be
equal (training is deterministic and resumes bit for bit): sequential,
SIGKILLed once its first cell finished and rerun (its aggregates checked
against the cells with the statistics module); local with both cells at
once, SIGKILLed mid-way and rerun; and slurm on a real
one-node cluster on this host (tests/slurm_cluster.py), one job cancelled
with scancel and the study rerun. Where the SLURM daemons cannot start, the
slurm test skips with the reason, and submitit's local executor still runs
the job function (test_job_function_on_submitit_local).
"""

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time

import pytest
import smoke_run

from fasjax import study_exec
from fasjax import workdir_lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import slurm_cluster  # pylint: disable=g-import-not-at-top,wrong-import-position

try:
  import submitit
except ImportError:
  submitit = None


def _task(tmp_path, name, code):
  cell_dir = str(tmp_path / name)
  return study_exec.CellTask(name, cell_dir,
                             (sys.executable, '-c', code, cell_dir))


_WRITE = ('import json, os, sys, time; time.sleep({sleep}); '
          'json.dump(sorted(os.sched_getaffinity(0)), '
          'open(os.path.join(sys.argv[1], "results.json"), "w"))')

# ------------------------------------------------------------ unit tests


def test_gpu_and_tpu_slots():
  gpus = [str(i) for i in range(8)]
  slots = study_exec.make_slots('gpu', gpus, 0, 0)
  assert [s.env['CUDA_VISIBLE_DEVICES'] for s in slots] == gpus
  slots = study_exec.make_slots('gpu', gpus, 0, 2)
  assert [s.env['CUDA_VISIBLE_DEVICES'] for s in slots] == [
      '0,1', '2,3', '4,5', '6,7']
  assert len(study_exec.make_slots('gpu', gpus, 3, 2)) == 3
  with pytest.raises(ValueError, match='only 8'):
    study_exec.make_slots('gpu', gpus, 0, 16)
  tpu = study_exec.make_slots('tpu', ['0', '1', '2', '3'], 0, 2)
  assert [s.env['TPU_VISIBLE_CHIPS'] for s in tpu] == ['0,1', '2,3']
  assert tpu[0].env['TPU_CHIPS_PER_PROCESS_BOUNDS'] == '1,2,1'
  assert tpu[0].env['TPU_PROCESS_PORT'] != tpu[1].env['TPU_PROCESS_PORT']


def test_cpu_slots_split_the_cores():
  slots = study_exec.make_slots('cpu', ['0', '1', '2', '3'], 2, 2)
  assert [s.cpus for s in slots] == [(0, 1), (2, 3)]
  # Unpinned unless asked: pinning changes XLA's thread count and results.
  assert [s.cpus for s in study_exec.make_slots('cpu', ['0', '1'], 2, 0)] == [
      ()] * 2
  assert [s.cpus for s in study_exec.make_slots('cpu', ['0', '1'], 4, 0)] == [
      ()] * 4  # More cells than cores: shared, unpinned.
  assert len(study_exec.make_slots('cpu', [str(i) for i in range(8)], 0,
                                   0)) == 2


def test_flag_parsing():
  assert study_exec.parse_slurm_time('90') == 90
  assert study_exec.parse_slurm_time('4:00:00') == 240
  assert study_exec.parse_slurm_time('1-02:00:00') == 26 * 60
  with pytest.raises(ValueError, match='slurm_time'):
    study_exec.parse_slurm_time('4h')
  assert study_exec.parse_additional(['account=x', '--qos=high']) == {
      'account': 'x', 'qos': 'high'}
  with pytest.raises(ValueError, match='key=value'):
    study_exec.parse_additional(['exclusive'])


def test_eta_divides_by_the_cells_running_at_once():
  p = study_exec.Progress(total=10, done=2, parallel=4)
  p.finished(100.0)
  p.finished(100.0)
  assert p.eta() == pytest.approx(100 * 6 / 4)
  p.running = 4
  assert p.line() == 'study: 4/10 cells done, 4 running, ETA 2m30s'
  one = study_exec.Progress(total=3, done=0)
  one.finished(60.0)
  assert one.line() == 'study: 1/3 cells done, ETA 2m00s'


def test_local_executor_runs_cells_at_once_pinned(tmp_path):
  tasks = [_task(tmp_path, f'c{i}', _WRITE.format(sleep=2)) for i in range(2)]
  cpus = sorted(os.sched_getaffinity(0))
  slots = study_exec.make_slots('cpu', [str(c) for c in cpus], 2,
                                1 if len(cpus) >= 2 else 0)
  progress = study_exec.Progress(2, 0, 2)
  t0 = time.time()
  failures = study_exec.LocalExecutor(slots, poll_s=0.1).run(tasks, progress)
  assert failures == []
  assert time.time() - t0 < 3.9  # At once, not one after the other.
  assert progress.done == 2
  seen = [json.load(open(os.path.join(t.cell_dir, 'results.json')))
          for t in tasks]
  if len(cpus) >= 2:
    assert seen == [list(s.cpus) for s in slots]


def test_local_executor_names_the_failed_cell(tmp_path):
  bad = _task(tmp_path, 'bad', 'import sys; print("boom"); sys.exit(3)')
  later = _task(tmp_path, 'later', _WRITE.format(sleep=0))
  failures = study_exec.LocalExecutor([study_exec.Slot('s')], poll_s=0.1).run(
      [bad, later], study_exec.Progress(2, 0))
  assert failures[0] == f'Cell bad failed (exit 3); see {bad.log}.'
  assert 'boom' in open(bad.log).read()
  assert 'not started' in failures[1] and 'later' in failures[1]


def test_slurm_missing_says_what_and_how(monkeypatch, tmp_path):
  monkeypatch.setattr(study_exec, 'submitit', None)
  monkeypatch.setenv('PATH', str(tmp_path))
  msg = study_exec.slurm_missing()
  assert 'pip install submitit' in msg and 'sbatch is not on the PATH' in msg
  # The command line: one message, exit 2, before any training.
  proc = subprocess.run(
      [sys.executable, '-m', 'fasjax.study', '--protocols=ocm_to_i',
       '--synthetic', '--config_args=smoke', '--executor=slurm',
       f'--workdir={tmp_path / "w"}'], cwd=ROOT,
      env=smoke_run.env(PATH=str(tmp_path)), capture_output=True, text=True,
      timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'sbatch is not on the PATH' in proc.stderr


def test_second_study_in_the_same_workdir_is_refused(tmp_path):
  workdir = str(tmp_path / 'w')
  with workdir_lock.hold(workdir):
    proc = subprocess.run(
        [sys.executable, '-m', 'fasjax.study', '--protocols=ocm_to_i',
         '--synthetic', '--config_args=smoke', '--executor=local',
         f'--workdir={workdir}'], cwd=ROOT, env=smoke_run.env(),
        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'Refusing to start a second study' in proc.stderr
  assert not os.path.exists(os.path.join(workdir, 'ocm_to_i'))


@pytest.mark.skipif(submitit is None, reason='submitit is not installed')
def test_job_function_on_submitit_local(tmp_path):
  """The slurm executor's code path and job function, on submitit's local
  executor: results, a failure named with its log, requeue on checkpoint."""
  ok = _task(tmp_path, 'ok', _WRITE.format(sleep=0))
  bad = _task(tmp_path, 'bad', 'import sys; sys.exit(5)')
  executor = study_exec.SlurmExecutor(str(tmp_path), cluster='local',
                                      poll_s=0.2)
  progress = study_exec.Progress(2, 0, 2)
  failures = executor.run([ok, bad], progress)
  assert os.path.exists(os.path.join(ok.cell_dir, 'results.json'))
  assert progress.done == 1
  assert len(failures) == 1 and 'Cell bad failed' in failures[0]
  assert bad.log in failures[0] and 'exit 5' in failures[0]
  job = study_exec.SlurmCellJob(ok)
  assert job.checkpoint().function is job  # Requeued as is, resumes.
  # The job links its submitit logs into the cell's sub-workdir.
  assert os.path.islink(os.path.join(ok.cell_dir, 'slurm_job.err'))


# ------------------------------------------------------------ smoke studies


def _study_cmd(workdir, data_dir, *extra):
  return [sys.executable, '-m', 'fasjax.study', '--protocols=ocm_to_i',
          '--variants=full', '--seeds=0,1', '--synthetic',
          '--config_args=smoke', f'--workdir={workdir}',
          f'--override=config.data.data_dir={data_dir}',
          '--override=config.num_steps=3'] + list(extra)


def _results(workdir, seed):
  return os.path.join(workdir, 'ocm_to_i', 'full', f'seed{seed}',
                      'results.json')


def _rows(workdir):
  return smoke_run.read_json(os.path.join(workdir, 'study.json'))['rows']


def _assert_same_rows(workdir, reference):
  """study.json rows equal, field by field (no timing fields in rows)."""
  rows = _rows(workdir)
  assert len(rows) == len(reference)
  for row, ref in zip(rows, reference):
    diff = {k: (row.get(k), ref.get(k)) for k in set(row) | set(ref)
            if row.get(k) != ref.get(k)}
    assert not diff, diff


@pytest.fixture(scope='module')
def resumed_study(tmp_path_factory, data_dir):
  """A sequential study killed once its first cell finished, then rerun.

  The worker's smoke data (tests/conftest.py) is built on first use by this
  study's first cell, or earlier; the parallel studies below build what is
  missing before their cells start (study.prepare_synthetic_data).
  Returns (workdir, the first cell's results.json mtime, the rerun's log).
  """
  workdir = str(tmp_path_factory.mktemp('sequential'))
  proc = subprocess.Popen(_study_cmd(workdir, data_dir), cwd=ROOT,
                          env=smoke_run.env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
  deadline = time.time() + 300
  try:
    while not os.path.exists(_results(workdir, 0)):
      assert proc.poll() is None, 'the study ended before its first cell'
      assert time.time() < deadline, 'the first cell did not finish'
      time.sleep(0.2)
  finally:
    # The whole session: the study and the launch.py of its second cell.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
  assert not os.path.exists(os.path.join(workdir, 'study.json'))
  first_mtime = os.path.getmtime(_results(workdir, 0))
  rerun = subprocess.run(_study_cmd(workdir, data_dir), cwd=ROOT,
                         env=smoke_run.env(), capture_output=True, text=True,
                         timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  return workdir, first_mtime, rerun.stderr


def test_resume_skips_the_finished_cell(resumed_study):
  workdir, first_mtime, log = resumed_study
  assert os.path.getmtime(_results(workdir, 0)) == first_mtime
  assert 'Skipping 1 finished cell' in log
  assert '2/2 cells done' in log
  assert os.path.exists(_results(workdir, 1))


def test_aggregates_match_the_cells(resumed_study):
  workdir = resumed_study[0]
  cells = [smoke_run.read_json(_results(workdir, s)) for s in (0, 1)]
  rows = _rows(workdir)
  assert len(rows) == 1
  row = rows[0]
  assert (row['protocol'], row['variant'], row['n_seeds']) == (
      'ocm_to_i', 'full', 2)
  for block in ('protocol', 'honest'):
    for metric in ('hter', 'auc', 'tpr_at_fpr_1pct'):
      values = [c[block][metric] for c in cells]
      key = f'{block}_{metric}'
      assert row[f'{key}_mean'] == pytest.approx(statistics.mean(values),
                                                 abs=1e-12)
      assert row[f'{key}_std'] == pytest.approx(statistics.stdev(values),
                                                abs=1e-12)
  # Synthetic rows carry no paper numbers, and say why.
  assert row['paper_hter'] is None and 'synthetic' in row['paper_note']
  with open(os.path.join(workdir, 'study.csv')) as f:
    csv_rows = list(csv.DictReader(f))
  assert float(csv_rows[0]['honest_hter_mean']) == pytest.approx(
      row['honest_hter_mean'])
  with open(os.path.join(workdir, 'study.md')) as f:
    md = f.read()
  hter = [c['protocol']['hter'] for c in cells]
  expected = (f'{100 * statistics.mean(hter):.2f} ± '
              f'{100 * statistics.stdev(hter):.2f}')
  assert expected in md and 'honest HTER %' in md


@pytest.fixture(scope='module')
def sequential_rows(resumed_study):
  """The sequential study's study.json rows: the executors' reference.

  Killed and resumed, it equals an uninterrupted sequential study, as
  training resumes bit for bit (tests/test_reliability.py).
  """
  return _rows(resumed_study[0])


def test_killed_local_study_resumes_to_the_sequential_result(
    tmp_path_factory, data_dir, sequential_rows):
  workdir = str(tmp_path_factory.mktemp('local'))
  cmd = _study_cmd(workdir, data_dir, '--executor=local', '--max_parallel=2')
  proc = subprocess.Popen(cmd, cwd=ROOT, env=smoke_run.env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          start_new_session=True)
  # Kill mid-way: once both cells train (each holds its workdir lock), a few
  # seconds into them, before either has finished.
  cell_dirs = [os.path.dirname(_results(workdir, s)) for s in (0, 1)]
  deadline = time.time() + 300
  try:
    while not all(os.path.exists(os.path.join(d, '.lock')) for d in cell_dirs):
      assert proc.poll() is None, proc.stderr.read()[-3000:]
      assert time.time() < deadline, 'the cells did not start'
      time.sleep(0.2)
    time.sleep(3)
    assert not any(os.path.exists(_results(workdir, s)) for s in (0, 1))
  finally:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
  assert not os.path.exists(os.path.join(workdir, 'study.json'))
  rerun = subprocess.run(cmd, cwd=ROOT, env=smoke_run.env(),
                         capture_output=True, text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert '2/2 cells done' in rerun.stderr
  _assert_same_rows(workdir, sequential_rows)


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
  if submitit is None:
    pytest.skip('submitit is not installed (pip install submitit)')
  try:
    c = slurm_cluster.start(str(tmp_path_factory.mktemp('slurm')))
  except slurm_cluster.ClusterUnavailable as e:
    print(f'SLURM cluster unavailable: {e}')
    pytest.skip(f'SLURM cluster unavailable: {e}')
  yield c
  c.stop()


def _squeue(env):
  out = subprocess.run(['squeue', '-h', '-r', '-o', '%i|%T'], env=env,
                       capture_output=True, text=True, check=True).stdout
  return dict(line.split('|') for line in out.split())


def test_slurm_study_with_a_cancelled_job_resumes(
    tmp_path_factory, data_dir, sequential_rows, cluster):
  workdir = str(tmp_path_factory.mktemp('slurmstudy'))
  env = smoke_run.env(**cluster.env())
  cmd = _study_cmd(workdir, data_dir, '--executor=slurm', '--slurm_poll_s=1',
                   '--slurm_time=20', '--slurm_cpus_per_job=1',
                   '--slurm_additional=job_name=fasjax-test')
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  record = os.path.join(os.path.dirname(_results(workdir, 1)),
                        study_exec.SLURM_RECORD)
  deadline = time.time() + 120
  while not os.path.exists(record):
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    assert time.time() < deadline, 'no job was submitted'
    time.sleep(0.2)
  time.sleep(0.5)
  with open(record) as f:
    job_id = json.load(f)['job_id']
  assert '_' in job_id  # An array task: both cells are one sbatch array.
  while _squeue(env).get(job_id) != 'RUNNING':
    assert time.time() < deadline, f'job {job_id} never ran: {_squeue(env)}'
    time.sleep(0.2)
  time.sleep(3)  # Mid-way through the cell.
  subprocess.run(['scancel', job_id], env=env, check=True)
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == 1, err[-3000:]
  assert 'Cell ocm_to_i/full/seed1 failed in SLURM job' in err
  assert 'CANCELLED' in err and 'study_cell.log' in err
  assert os.path.exists(_results(workdir, 0))
  assert not os.path.exists(_results(workdir, 1))
  first = os.path.getmtime(_results(workdir, 0))
  rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert 'Skipping 1 finished cell' in rerun.stderr
  assert os.path.getmtime(_results(workdir, 0)) == first
  _assert_same_rows(workdir, sequential_rows)
  # The cell's logs: training output, and submitit's job logs linked in.
  cell_dir = os.path.dirname(_results(workdir, 1))
  assert os.path.exists(os.path.join(cell_dir, 'slurm_job.err'))
