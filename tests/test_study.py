"""A two-cell smoke study, killed after its first cell and resumed.

The aggregate files are checked against the cells' results.json with mean
and std computed here independently (statistics module).
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

from fasjax import study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env():
  # The same XLA settings as this process (tests/conftest.py).
  return dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT,
              JAX_DISABLE_MOST_OPTIMIZATIONS='1')


def _study_cmd(workdir, data_dir):
  return [sys.executable, '-m', 'fasjax.study', '--protocols=ocm_to_i',
          '--variants=full', '--seeds=0,1', '--synthetic',
          '--config_args=smoke', f'--workdir={workdir}',
          f'--override=config.data.data_dir={data_dir}',
          # One evaluation per cell is enough to aggregate; halves the cost.
          '--override=config.num_steps=3']


def _results(workdir, seed):
  return os.path.join(workdir, 'ocm_to_i', 'full', f'seed{seed}',
                      'results.json')


def _read(path):
  with open(path) as f:
    return json.load(f)


@pytest.fixture(scope='module')
def resumed_study(tmp_path_factory):
  """A study killed once its first cell finished, then rerun to the end."""
  workdir = str(tmp_path_factory.mktemp('study'))
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  proc = subprocess.Popen(_study_cmd(workdir, data_dir), cwd=ROOT,
                          env=_env(), stdout=subprocess.DEVNULL,
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
  rerun = subprocess.run(_study_cmd(workdir, data_dir), cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=300)
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
  cells = [_read(_results(workdir, s)) for s in (0, 1)]
  rows = _read(os.path.join(workdir, 'study.json'))['rows']
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


def test_paper_values_only_beside_real_full_rows():
  assert study.paper_reference('ocm_to_i', 'full', False)['paper_hter'] == 8.07
  assert study.paper_reference('oci_to_m', 'full', False)['paper_auc'] == 96.66
  ablation = study.paper_reference('ocm_to_i', 'no_meta', False)
  assert ablation['paper_hter'] is None
  assert ablation['paper_note'] == study.NO_TABLE_II


def test_bad_variant_fails_before_training():
  with pytest.raises(ValueError, match='Unknown variant'):
    study.make_cells(['ocm_to_i'], ['no_such'], [0], True, [])
  cells = study.make_cells(['ocm_to_i'], ['full', 'no_meta'], [0, 1], True,
                           ['smoke'])
  assert [c.config_arg for c in cells] == [
      'synthetic,smoke,seed=0', 'synthetic,smoke,seed=1',
      'synthetic,smoke,no_meta,seed=0', 'synthetic,smoke,no_meta,seed=1']
