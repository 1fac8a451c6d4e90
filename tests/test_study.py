"""Study aggregation, statistics and archives, on hand-written cells.

Every reference (mean, std, intervals, paired tests, power) is computed here
independently with statistics/scipy/numpy. The studies that train (a
sequential study killed and resumed, local and slurm executors) are in
tests/test_study_exec.py.
"""

import csv
import json
import os
import statistics
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as scipy_stats
import smoke_run

from configs import common
from fasjax import study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
      'synthetic,smoke,seed=0', 'synthetic,smoke,no_meta,seed=0',
      'synthetic,smoke,seed=1', 'synthetic,smoke,no_meta,seed=1']


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
    saved = smoke_run.read_json(path)
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


# Studies kept in archives and split over folders (fasjax/study_archive.py).

from fasjax import study_archive  # pylint: disable=g-import-not-at-top


def test_a_split_study_merged_equals_the_study_run_in_one(tmp_path):
  seeds_of = {'full': [0, 1, 2, 3], 'no_meta': [0, 1, 2, 3]}
  whole = str(tmp_path / 'whole')
  cells, values = _fake_study(whole, list(seeds_of), seeds_of,
                              np.random.default_rng(3), with_scores=True)
  # The same cells, copied into two halves as two machines would have run
  # them: seeds 0, 1 in one folder, 2, 3 in the other.
  halves = [str(tmp_path / 'a'), str(tmp_path / 'b')]
  for cell in cells:
    study_archive.archive_cell(os.path.join(whole, cell.subdir),
                               halves[cell.seed // 2], cell.subdir)
  assert sorted(c.seed for c in study.finished_cells(cells, halves[:1])) == [
      0, 0, 1, 1]
  # The command line: --aggregate_only over the halves writes the tables.
  out = str(tmp_path / 'merged')
  cmd = [sys.executable, '-m', 'fasjax.study', '--protocols=ocm_to_i',
         '--variants=full,no_meta', '--seeds=0,1,2,3', '--synthetic',
         f'--workdir={out}', f'--cells_from={",".join(halves)}',
         '--aggregate_only']
  run = subprocess.run(cmd, cwd=ROOT, env=smoke_run.env(), capture_output=True,
                       text=True, timeout=120)
  assert run.returncode == 0, run.stderr[-3000:]
  study.write_outputs(study.aggregate(cells, whole, True), whole, 'x')
  merged, single = (smoke_run.read_json(os.path.join(d, 'study.json'))['rows']
                    for d in (out, whole))
  assert merged == single
  assert [r['n_seeds'] for r in merged] == [4, 4]
  full = merged[0]
  assert full['protocol_hter_values'] == pytest.approx(
      [values[('full', s)]['protocol'][0] for s in range(4)], abs=1e-12)


def test_the_same_cell_with_different_results_is_refused(tmp_path):
  seeds_of = {'full': [0]}
  a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
  cells, _ = _fake_study(a, ['full'], seeds_of, np.random.default_rng(4))
  _fake_study(b, ['full'], seeds_of, np.random.default_rng(5))
  with pytest.raises(study_archive.CellConflictError, match='Keep one'):
    study.aggregate(cells, [a, b], True)
  # An identical copy (the same run archived twice) is no conflict.
  study_archive.archive_cell(os.path.join(a, cells[0].subdir),
                             str(tmp_path / 'c'), cells[0].subdir)
  assert study.aggregate(cells, [a, str(tmp_path / 'c')], True)[0][
      'n_seeds'] == 1


def test_archive_keeps_the_small_files_only(tmp_path):
  cell_dir = tmp_path / 'run'
  (cell_dir / 'checkpoints' / '100').mkdir(parents=True)
  (cell_dir / 'checkpoints' / '100' / 'state').write_text('big')
  names = ['config.json', 'provenance.json', 'metrics.jsonl',
           'target_scores_step100.json', 'study_cell.log',
           'eval_results.json']
  for name in names:
    (cell_dir / name).write_text(name)
  with pytest.raises(FileNotFoundError, match='not finished'):
    study_archive.archive_cell(str(cell_dir), str(tmp_path / 'arch'), 'x/y')
  (cell_dir / 'results.json').write_text('{}')
  target = study_archive.archive_cell(str(cell_dir), str(tmp_path / 'arch'),
                                      'x/y')
  assert sorted(os.listdir(target)) == sorted(
      ['config.json', 'provenance.json', 'metrics.jsonl',
       'target_scores_step100.json', 'results.json'])
  assert study_archive.kept_files(str(cell_dir))[-1] == 'results.json'
  assert (tmp_path / 'arch' / 'x' / 'y' / 'metrics.jsonl').read_text() == (
      'metrics.jsonl')


class _WritingExecutor:
  """Stands in for training: writes each task's results and a checkpoint."""

  parallel = 1

  def __init__(self):
    self.ran = []

  def run(self, tasks, progress):
    for task in tasks:
      os.makedirs(os.path.join(task.cell_dir, 'checkpoints'), exist_ok=True)
      with open(os.path.join(task.cell_dir, 'results.json'), 'w') as f:
        json.dump({'cell': task.name}, f)
      self.ran.append(task.name)
      progress.finished(1.0, task)
    return []


def test_cells_are_archived_as_they_finish_and_not_rerun(tmp_path):
  cells = study.make_cells(['ocm_to_i'], ['full', 'no_meta'], [0, 1], True,
                           ['smoke'])
  archive = str(tmp_path / 'archive')
  executor = _WritingExecutor()
  seen = []
  original = study_archive.archive_cell
  def spy(cell_dir, folder, subdir):
    # Each cell reaches the archive before the next one starts.
    assert len(seen) == len(executor.ran) - 1
    seen.append(subdir)
    return original(cell_dir, folder, subdir)
  study_archive.archive_cell = spy
  try:
    study.run_study(cells[:3], str(tmp_path / 'w1'), executor=executor,
                    archive=archive)
  finally:
    study_archive.archive_cell = original
  assert seen == [c.subdir for c in cells[:3]]
  for cell in cells[:3]:
    assert sorted(os.listdir(os.path.join(archive, cell.subdir))) == [
        'results.json']
  # The workdir is lost (a machine reset); the study resumes from the
  # archive in a new workdir and runs only the missing cell.
  executor = _WritingExecutor()
  study.run_study(cells, str(tmp_path / 'w2'), executor=executor,
                  archive=archive)
  assert executor.ran == [cells[3].subdir]
  assert study_archive.is_finished(archive, cells[3].subdir)
  # A finished cell of the workdir missing from the archive is synced.
  executor = _WritingExecutor()
  w3 = str(tmp_path / 'w3')
  os.makedirs(os.path.join(w3, cells[0].subdir))
  with open(os.path.join(w3, cells[0].subdir, 'results.json'), 'w') as f:
    f.write('{}')
  study.run_study(cells[:1], w3, executor=executor,
                  archive=str(tmp_path / 'archive2'))
  assert executor.ran == []
  assert study_archive.is_finished(str(tmp_path / 'archive2'),
                                   cells[0].subdir)


def test_final_training_losses_from_metrics_jsonl(tmp_path):
  seeds_of = {'full': [0, 1]}
  cells, _ = _fake_study(str(tmp_path), ['full'], seeds_of,
                         np.random.default_rng(6))
  finals = {0: {'loss': 3.0, 'cls': 0.25, 'trip': 0.5},
            1: {'loss': 2.0, 'cls': 0.35, 'trip': 0.25}}
  for seed, last in finals.items():
    lines = [{'step': 1, 'kind': 'hparams', 'values': {'lr': 1e-3}},
             {'step': 10, 'kind': 'scalars',
              'values': {f'train/{k}': 9.0 for k in last}},
             {'step': 20, 'kind': 'scalars',
              'values': {f'train/{k}': v for k, v in last.items()}},
             {'step': 20, 'kind': 'scalars', 'values': {'eval/hter': 0.1}}]
    with open(os.path.join(str(tmp_path), 'ocm_to_i', 'full', f'seed{seed}',
                           'metrics.jsonl'), 'w') as f:
      f.write(''.join(json.dumps(x) + '\n' for x in lines))
  row = study.aggregate(cells, str(tmp_path), True)[0]
  for name in ('loss', 'cls', 'trip'):
    values = [finals[s][name] for s in (0, 1)]
    assert row[f'train_{name}_final_values'] == values
    assert row[f'train_{name}_final_mean'] == pytest.approx(
        statistics.mean(values))
    assert row[f'train_{name}_final_std'] == pytest.approx(
        statistics.stdev(values))
  assert row['train_depth_final_values'] == []
  md = study.to_markdown([row], 'cmd')
  assert '## Training losses at the end' in md
  assert '| ocm_to_i | full | 2 | 2.500 ± 0.707 | 0.300 ± 0.071 |' in md


def test_untrained_losses_are_the_ones_the_configs_weight_zero():
  full = common.protocol_config('ocm', 'i', 'synthetic')
  weights = {'parsing': lambda c: [c.loss.lambda_seg],
             'trip': lambda c: [c.loss.lambda_trip, c.meta.inner_trip_weight]}
  weights['trip_meta_test'] = weights['trip']
  assert all(w > 0 for f in weights.values() for w in f(full))
  for variant in common.ABLATIONS:
    config = common.protocol_config('ocm', 'i', f'synthetic,{variant}')
    zero = {n for n, f in weights.items() if all(w == 0 for w in f(config))}
    assert zero == set(study.UNTRAINED_LOSSES.get(variant, ())), variant
  row = {'protocol': 'ocm_to_i', 'variant': 'no_parsing'}
  for name in study.TRAIN_LOSSES:
    row[f'train_{name}_final_mean'], row[f'train_{name}_final_std'] = 1.0, None
    row[f'train_{name}_final_values'] = [1.0]
  table = '\n'.join(study.train_loss_table([row]))
  assert table.count('(weight 0)') == 1 and '1.000 (weight 0) |' in table
