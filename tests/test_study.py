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

import numpy as np
import pytest
from scipy import stats as scipy_stats

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


# Aggregation statistics on hand-written cells (no training, no JAX); every
# reference is computed here with scipy/numpy.

_METRICS = ('hter', 'auc', 'tpr_at_fpr_1pct')


def _write_cell(workdir, variant, seed, values, scores=None, labels=None):
  cell_dir = os.path.join(workdir, 'ocm_to_i', variant, f'seed{seed}')
  os.makedirs(cell_dir, exist_ok=True)
  result = {'target': 'i', 'step': 20}
  for block, step in (('protocol', 10), ('honest', 20)):
    result[block] = dict(zip(_METRICS, values[block]), step=step,
                         threshold=0.5 if block == 'honest' else 0.4)
  with open(os.path.join(cell_dir, 'results.json'), 'w') as f:
    json.dump(result, f)
  if scores is not None:
    for step in (10, 20):
      with open(os.path.join(cell_dir, f'target_scores_step{step}.json'),
                'w') as f:
        json.dump({'video_ids': [f'v{i:02d}' for i in range(len(labels))],
                   'labels': [int(v) for v in labels],
                   'scores': [float(v) for v in scores]}, f)


def _fake_study(workdir, variants, seeds_of, rng, with_scores=False):
  labels = np.array([1] * 6 + [0] * 14)
  values = {}
  for variant in variants:
    for seed in seeds_of[variant]:
      v = {b: list(rng.uniform(0.05, 0.95, 3)) for b in ('protocol', 'honest')}
      values[(variant, seed)] = v
      scores = rng.uniform(0, 1, labels.size) + 0.4 * labels
      _write_cell(workdir, variant, seed, v,
                  scores if with_scores else None, labels)
  cells = [study.Cell('ocm_to_i', v, s, '') for v in variants
           for s in seeds_of[v]]
  return cells, values


def test_aggregate_intervals_and_paired_differences(tmp_path):
  workdir = str(tmp_path)
  rng = np.random.default_rng(0)
  seeds_of = {'full': [0, 1, 2, 3], 'no_meta': [0, 1, 2, 3],
              'no_asc': [0, 2, 3]}
  cells, values = _fake_study(workdir, list(seeds_of), seeds_of, rng)
  rows = {r['variant']: r for r in study.aggregate(cells, workdir, True)}
  for variant, seeds in seeds_of.items():
    for block in ('protocol', 'honest'):
      for i, metric in enumerate(_METRICS):
        x = [values[(variant, s)][block][i] for s in seeds]
        ref = scipy_stats.t.interval(0.95, len(x) - 1, loc=np.mean(x),
                                     scale=scipy_stats.sem(x))
        key = f'{block}_{metric}'
        row = rows[variant]
        assert (row[f'{key}_ci_low'], row[f'{key}_ci_high']) == (
            pytest.approx(ref, abs=1e-12))
        if variant == 'full':
          assert row[f'{key}_diff_mean'] is None
          continue
        d = [values[(variant, s)][block][i] - values[('full', s)][block][i]
             for s in seeds]
        assert row[f'{key}_diffs'] == pytest.approx(d, abs=1e-12)
        t_ref = scipy_stats.t.interval(0.95, len(d) - 1, loc=np.mean(d),
                                       scale=scipy_stats.sem(d))
        assert (row[f'{key}_diff_t_low'], row[f'{key}_diff_t_high']) == (
            pytest.approx(t_ref, abs=1e-12))
        # Seed-only bootstrap (no per-video scores here): brute force.
        gen = np.random.default_rng(0)
        boot = [np.mean(gen.choice(d, len(d))) for _ in range(4000)]
        lo, hi = np.percentile(boot, [2.5, 97.5])
        width = max(d) - min(d)
        assert row[f'{key}_diff_ci_low'] == pytest.approx(lo, abs=0.05 * width)
        assert row[f'{key}_diff_ci_high'] == pytest.approx(hi,
                                                           abs=0.05 * width)
        assert row[f'{key}_diff_significant'] == (
            row[f'{key}_diff_ci_low'] > 0 or row[f'{key}_diff_ci_high'] < 0)
  # no_asc lacks seed 1: reported as unpaired, paired over 0, 2, 3.
  assert rows['no_asc']['paired_seeds'] == [0, 2, 3]
  assert rows['no_asc']['unpaired_seeds'] == [1]
  assert 'unpaired: full has seed(s) [1]' in rows['no_asc']['diff_note']
  assert 'seeds only' in rows['no_meta']['diff_method']
  study.write_outputs(list(rows.values()), workdir,
                      f'python -m fasjax.study --workdir={workdir} '
                      f'--override=config.data.data_dir={tmp_path.parent}/d')
  with open(os.path.join(workdir, 'study.md')) as f:
    md = f.read()
  assert 'Paired differences to full' in md and 'unpaired' in md
  assert str(tmp_path) not in md
  assert '--workdir=. --override=config.data.data_dir=../d' in md
  with open(os.path.join(workdir, 'study.json')) as f:
    saved = json.load(f)
  assert str(tmp_path) not in json.dumps(saved)
  mde = {(e['block'], e['metric']): e for e in saved['mde']}
  e = mde[('protocol', 'hter')]
  groups = [rows[v]['protocol_hter_diffs'] for v in ('no_meta', 'no_asc')]
  sd = np.sqrt(sum((len(g) - 1) * np.var(g, ddof=1) for g in groups)
               / sum(len(g) - 1 for g in groups))
  assert e['n_seeds'] == 3 and e['sd_paired_diff'] == pytest.approx(sd)
  # The MDE has 80% power: checked with scipy's noncentral t.
  crit = scipy_stats.t.ppf(0.975, 2)
  nc = e['mde'] * np.sqrt(3) / sd
  assert (scipy_stats.nct.sf(crit, 2, nc) + scipy_stats.nct.cdf(-crit, 2, nc)
          ) == pytest.approx(0.8, abs=1e-6)
  with open(os.path.join(workdir, 'study.csv')) as f:
    assert len(list(csv.DictReader(f))) == 3


def test_aggregate_one_seed_says_two_are_needed(tmp_path):
  workdir = str(tmp_path)
  seeds_of = {'full': [0], 'no_meta': [0]}
  cells, _ = _fake_study(workdir, list(seeds_of), seeds_of,
                         np.random.default_rng(1))
  rows = study.aggregate(cells, workdir, True)
  for row in rows:
    assert 'at least two seeds' in row['stats_note']
    assert row['protocol_hter_ci_low'] is None
  assert 'at least two seeds' in rows[1]['diff_note']
  assert rows[1]['protocol_hter_diff_ci_low'] is None
  study.write_outputs(rows, workdir, 'python -m fasjax.study')
  with open(os.path.join(workdir, 'study.md')) as f:
    assert 'interval needs ≥ 2 seeds' in f.read()


def test_aggregate_two_level_bootstrap_from_saved_scores(tmp_path):
  workdir = str(tmp_path)
  seeds_of = {'full': [0, 1, 2], 'no_meta': [0, 1, 2]}
  cells, _ = _fake_study(workdir, list(seeds_of), seeds_of,
                         np.random.default_rng(2), with_scores=True)
  row = study.aggregate(cells, workdir, True)[1]
  assert row['diff_method'] == 'bootstrap over seeds and target videos'
  low, high = row['honest_auc_diff_ci_low'], row['honest_auc_diff_ci_high']
  assert low <= high
  # Brute force over the saved files with a plain Mann-Whitney AUC.
  def load(variant, seed):
    path = os.path.join(workdir, 'ocm_to_i', variant, f'seed{seed}',
                        'target_scores_step20.json')
    saved = _read(path)
    return np.array(saved['scores']), np.array(saved['labels'])
  def auc(s, y):
    pos, neg = s[y == 1], s[y == 0]
    return np.mean((pos[:, None] > neg[None]) + 0.5 * (pos[:, None]
                                                       == neg[None]))
  gen = np.random.default_rng(0)
  labels = load('full', 0)[1]
  live, spoof = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
  boot = []
  for _ in range(1000):
    seeds = gen.integers(0, 3, size=3)
    v = np.concatenate([live[gen.integers(0, live.size, size=live.size)],
                        spoof[gen.integers(0, spoof.size, size=spoof.size)]])
    boot.append(np.mean([auc(load('no_meta', s)[0][v], labels[v])
                         - auc(load('full', s)[0][v], labels[v])
                         for s in seeds]))
  assert (low, high) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])),
                                      abs=1e-12)
