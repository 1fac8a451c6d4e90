"""Runs a study (protocols x variants x seeds) and aggregates it over seeds.

  python -m fasjax.study --protocols=ocm_to_i --variants=full,no_meta \
      --seeds=0,1,2 --synthetic --workdir=W

Each cell trains through launch.py in its own sub-workdir
W/<protocol>/<variant>/seed<N>, in a subprocess (a crashed cell cannot take
the study down, and every cell starts from a clean process). A cell with a
results.json is skipped, and an unfinished one resumes from its latest
checkpoint, so rerunning the same command after an interruption finishes the
study. --executor=local runs several cells at once on this host (each on its
own GPUs, TPU chips or CPU cores), --executor=slurm each as a SLURM job
(fasjax/study_exec.py); W/.lock refuses a second study in W. Then
W/study.md, W/study.csv and W/study.json hold mean ± std over
seeds of HTER, AUC and TPR@FPR=1% per protocol and variant, the protocol and
honest numbers in separate columns, the number of seeds, and the paper's
values where there are any; and (fasjax/study_stats.py) 95% t
intervals over seeds, each variant's paired difference to `full` with a 95%
bootstrap interval and whether it excludes zero, and the paired minimum
detectable effect. Their paths are relative to W.

A study that spans days, machines or clusters keeps its finished cells'
small files (no checkpoints) in an archive folder, e.g. one committed to git
(fasjax/study_archive.py): --archive=A copies each cell there as it finishes
and skips the cells already there (so a study resumes after its workdir is
lost), and writes study.{md,csv,json} there too; --cells_from=A1,A2 reads
cells other machines ran. --aggregate_only over such folders rebuilds the
tables of a study run in halves.
"""

import contextlib
import csv
import dataclasses
import importlib
import json
import os
import re
import statistics
import subprocess
import sys
from typing import Any, Sequence

from absl import app
from absl import flags
from absl import logging
import numpy as np

from configs import common
from fasjax import metrics
from fasjax import study_archive
from fasjax import study_exec
from fasjax import study_stats
from fasjax import workdir_lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ('full',) + common.ABLATIONS
METRICS = ('hter', 'auc', 'tpr_at_fpr_1pct')
BLOCKS = ('protocol', 'honest')
# Paper Table I (HTER %, AUC %), leave-one-out protocols, the full method.
PAPER_TABLE_I = {'oci_to_m': (7.38, 96.66), 'omi_to_c': (13.20, 94.27),
                 'ocm_to_i': (8.07, 96.85), 'icm_to_o': (8.75, 95.95)}
NO_TABLE_II = 'Table II values not available to us'

_PROTOCOLS = flags.DEFINE_list('protocols', None, 'Protocols, e.g. '
                               'ocm_to_i,oci_to_m (configs/<name>.py).')
_VARIANTS = flags.DEFINE_list('variants', ['full'], 'full and/or ablations: '
                              + ', '.join(common.ABLATIONS) + '.')
_SEEDS = flags.DEFINE_list('seeds', ['0'], 'Seeds, e.g. 0,1,2.')
_SYNTHETIC = flags.DEFINE_bool('synthetic', False, 'Use the synthetic_fas '
                               'benchmark (config argument `synthetic`).')
_CONFIG_ARGS = flags.DEFINE_list('config_args', [], 'Extra config arguments '
                                 'for every cell, e.g. smoke.')
_OVERRIDES = flags.DEFINE_multi_string(
    'override', [], 'Config overrides for every cell, e.g. '
    '--override=config.data.data_dir=/data (passed as --config.data...).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'The study directory.')
_EXECUTOR = flags.DEFINE_enum(
    'executor', 'sequential', study_exec.EXECUTORS, 'How cells run: '
    'sequential (one after another, here), local (--max_parallel at once on '
    'this host, each on its own GPUs/TPU chips/CPU cores), slurm (each cell a '
    'SLURM job through submitit).')
_MAX_PARALLEL = flags.DEFINE_integer(
    'max_parallel', 0, 'local: cells at once; 0 = one per device group on '
    'accelerators, one per 4 CPU cores on a CPU.')
_DEVICES_PER_CELL = flags.DEFINE_integer(
    'devices_per_cell', 0, 'local: GPUs or TPU chips per cell (0 = 1); on a '
    'CPU, cores per cell (0 = the cores split evenly).')
_SLURM_PARTITION = flags.DEFINE_string('slurm_partition', None,
                                       'slurm: partition (sbatch -p).')
_SLURM_TIME = flags.DEFINE_string(
    'slurm_time', '4:00:00', 'slurm: time limit per job (minutes, HH:MM:SS or '
    'D-HH:MM:SS); a job that reaches it is requeued and resumes.')
_SLURM_GPUS = flags.DEFINE_integer('slurm_gpus_per_job', 0,
                                   'slurm: GPUs per job (--gpus-per-node).')
_SLURM_CPUS = flags.DEFINE_integer('slurm_cpus_per_job', 0,
                                   'slurm: CPUs per job (--cpus-per-task).')
_SLURM_MEM = flags.DEFINE_string('slurm_mem', None,
                                 'slurm: memory per job, e.g. 32G (--mem).')
_SLURM_ARRAY_PARALLELISM = flags.DEFINE_integer(
    'slurm_array_parallelism', 0, 'slurm: at most this many jobs of the '
    'array at once (--array=...%N); 0 = no limit.')
_SLURM_ADDITIONAL = flags.DEFINE_multi_string(
    'slurm_additional', [], 'slurm: extra sbatch option key=value, repeatable, '
    'e.g. --slurm_additional=account=myproj --slurm_additional=qos=high.')
_SLURM_POLL_S = flags.DEFINE_float('slurm_poll_s', 15.0,
                                   'slurm: seconds between queue checks.')
_ARCHIVE = flags.DEFINE_string(
    'archive', None, 'Folder (e.g. committed to git) that keeps each finished '
    "cell's small files (config, provenance, metrics, scores, results; no "
    'checkpoints) as it finishes; cells found there are not rerun, and the '
    'study tables are written there too.')
_CELLS_FROM = flags.DEFINE_list(
    'cells_from', [], 'More folders of finished cells (other workdirs or '
    'archives, e.g. the halves of a study run on two machines): their cells '
    'are not rerun and are aggregated with the rest.')
_AGGREGATE_ONLY = flags.DEFINE_bool(
    'aggregate_only', False, 'Run no cell: aggregate the finished ones into '
    'study.{md,csv,json} (also while a study runs).')


@dataclasses.dataclass(frozen=True)
class Cell:
  """One run of the study."""
  protocol: str
  variant: str
  seed: int
  config_arg: str

  @property
  def subdir(self) -> str:
    return os.path.join(self.protocol, self.variant, f'seed{self.seed}')


def make_cells(protocols: Sequence[str], variants: Sequence[str],
               seeds: Sequence[int], synthetic: bool,
               config_args: Sequence[str]) -> list[Cell]:
  """Every (protocol, variant, seed) cell with its config argument string.

  Seed by seed (every variant of seed 0, then of seed 1, ...): a study
  stopped early, or still running, then has complete paired seeds to
  compare its variants on.
  """
  for p in protocols:
    if not os.path.exists(os.path.join(ROOT, 'configs', f'{p}.py')):
      raise ValueError(f'Unknown protocol {p!r}: no configs/{p}.py.')
  for v in variants:
    if v not in VARIANTS:
      raise ValueError(f'Unknown variant {v!r}; valid: {", ".join(VARIANTS)}.')
  base = (['synthetic'] if synthetic else []) + list(config_args)
  cells = []
  for p in protocols:
    for s in seeds:
      for v in variants:
        arg = ','.join(base + ([] if v == 'full' else [v]) + [f'seed={s}'])
        common.parse_arg(arg)  # Fail before any training on a bad argument.
        cells.append(Cell(p, v, int(s), arg))
  return cells


def launch_command(cell: Cell, workdir: str,
                   overrides: Sequence[str]) -> list[str]:
  """The launch.py command line that trains one cell."""
  return [sys.executable, os.path.join(ROOT, 'launch.py'),
          f'--config={os.path.join(ROOT, "configs", cell.protocol)}.py:'
          f'{cell.config_arg}',
          f'--workdir={workdir}'] + [f'--{o}' for o in overrides]


def cell_task(cell: Cell, workdir: str,
              overrides: Sequence[str]) -> study_exec.CellTask:
  """What an executor needs to train one cell."""
  cell_dir = os.path.join(workdir, cell.subdir)
  return study_exec.CellTask(cell.subdir, cell_dir,
                             tuple(launch_command(cell, cell_dir, overrides)))


def run_cell(cell: Cell, workdir: str, overrides: Sequence[str]) -> None:
  """Trains one cell (resuming), its output in <cell>/study_cell.log."""
  study_exec.train_cell(cell_task(cell, workdir, overrides))


format_duration = study_exec.format_duration


class CellsFailedError(RuntimeError):
  """Cells failed; the message names each with its log."""


def run_study(cells: Sequence[Cell], workdir: str,
              overrides: Sequence[str] = (), executor: Any = None,
              archive: str | None = None,
              cells_from: Sequence[str] = ()) -> None:
  """Runs the unfinished cells through `executor` (default: one at a time).

  A cell is finished when `workdir`, `archive` or a `cells_from` folder
  holds its results.json. Each cell that finishes is copied to `archive`
  (study_archive.archive_cell), as are finished cells of `workdir` missing
  there. Logs progress after each cell; raises CellsFailedError naming the
  failed cells and their logs.
  """
  if executor is None:
    executor = study_exec.make_executor('sequential', workdir)
  folders = study_folders(workdir, archive, cells_from)
  on_finished = None
  if archive:
    added = study_archive.sync(workdir, archive, [c.subdir for c in cells])
    if added:
      logging.info('Archived %d finished cell(s) to %s.', len(added), archive)
    def archive_finished(task: study_exec.CellTask) -> None:
      study_archive.archive_cell(task.cell_dir, archive, task.name)
      logging.info('Archived cell %s to %s.', task.name, archive)
    on_finished = archive_finished
  total = len(cells)
  pending = [c for c in cells
             if study_archive.find_cell(c.subdir, folders) is None]
  done = total - len(pending)
  if done:
    logging.info('Skipping %d finished cell(s).', done)
  progress = study_exec.Progress(total, done,
                                 executor.parallel or len(pending),
                                 on_finished=on_finished)
  logging.info(progress.line())
  if not pending:
    return
  if executor.parallel != 1:
    prepare_synthetic_data(pending, overrides)
  failures = executor.run([cell_task(c, workdir, overrides) for c in pending],
                          progress)
  if failures:
    raise CellsFailedError(study_exec.cell_failure_summary(failures))


def synthetic_builds(cells: Sequence[Cell], overrides: Sequence[str]
                     ) -> dict[str | None, list[str]]:
  """{data_dir: synthetic_fas builder configs} the cells will read."""
  data_dir = None
  for o in overrides:
    key, _, value = o.partition('=')
    if key.strip() == 'config.data.data_dir':
      data_dir = value or None
  builds: dict[str | None, list[str]] = {}
  for cell in cells:
    config = importlib.import_module(f'configs.{cell.protocol}').get_config(
        cell.config_arg)
    for builder in config.data.builders.values():
      name, _, builder_config = builder.partition('/')
      wanted = builds.setdefault(data_dir or config.data.data_dir, [])
      if name == 'synthetic_fas' and builder_config not in wanted:
        wanted.append(builder_config)
  return {d: b for d, b in builds.items() if b}


def prepare_synthetic_data(cells: Sequence[Cell],
                           overrides: Sequence[str]) -> None:
  """Builds the synthetic data once, before cells run at the same time.

  Each cell builds missing synthetic data on first use; two cells starting
  together would both write the same tfds directory.
  """
  for data_dir, configs in synthetic_builds(cells, overrides).items():
    logging.info('Preparing synthetic_fas %s in %s before the parallel '
                 'cells.', ','.join(configs), data_dir or 'the tfds default')
    code = ('import sys; from fasjax.datasets import prepare_synthetic; '
            'prepare_synthetic.prepare(sys.argv[1].split(","), '
            'sys.argv[2] or None)')
    subprocess.run([sys.executable, '-c', code, ','.join(configs),
                    data_dir or ''], cwd=ROOT, env=study_exec.cell_env(),
                   check=True, stdout=subprocess.DEVNULL)


def study_folders(workdir: str, archive: str | None = None,
                  cells_from: Sequence[str] = ()) -> list[str]:
  """Where a study's finished cells are looked for, in order."""
  return [workdir] + ([archive] if archive else []) + list(cells_from)


def lock_study(workdir: str) -> contextlib.ExitStack:
  """Holds WORKDIR/.lock while the returned stack lives (or the process)."""
  stack = contextlib.ExitStack()
  stack.enter_context(workdir_lock.hold(workdir))
  return stack


def make_executor(workdir: str) -> Any:
  """The executor the flags ask for."""
  return study_exec.make_executor(
      _EXECUTOR.value, workdir, max_parallel=_MAX_PARALLEL.value,
      devices_per_cell=_DEVICES_PER_CELL.value,
      slurm_partition=_SLURM_PARTITION.value, slurm_time=_SLURM_TIME.value,
      slurm_gpus_per_job=_SLURM_GPUS.value,
      slurm_cpus_per_job=_SLURM_CPUS.value, slurm_mem=_SLURM_MEM.value,
      slurm_array_parallelism=_SLURM_ARRAY_PARALLELISM.value,
      slurm_additional=_SLURM_ADDITIONAL.value,
      slurm_poll_s=_SLURM_POLL_S.value)


def _read_json(path: str) -> dict[str, Any]:
  with open(path) as f:
    return json.load(f)


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
  """Mean and sample standard deviation (None for a single value)."""
  values = [float(v) for v in values]
  return (statistics.mean(values),
          statistics.stdev(values) if len(values) > 1 else None)


def paper_reference(protocol: str, variant: str,
                    synthetic: bool) -> dict[str, Any]:
  """The paper's numbers for a row (percent), or why there are none."""
  if synthetic:
    return {'paper_hter': None, 'paper_auc': None,
            'paper_note': 'synthetic benchmark: no paper values'}
  if variant == 'full' and protocol in PAPER_TABLE_I:
    hter, auc = PAPER_TABLE_I[protocol]
    return {'paper_hter': hter, 'paper_auc': auc, 'paper_note': 'Table I'}
  if variant != 'full':
    return {'paper_hter': None, 'paper_auc': None, 'paper_note': NO_TABLE_II}
  return {'paper_hter': None, 'paper_auc': None,
          'paper_note': 'not in Table I'}


def finished_cells(cells: Sequence[Cell], folders: str | Sequence[str]
                   ) -> dict[Cell, str]:
  """{cell: its directory} for the cells finished in any of `folders`."""
  folders = [folders] if isinstance(folders, str) else list(folders)
  found = {}
  for cell in cells:
    folder = study_archive.find_cell(cell.subdir, folders)
    if folder is not None:
      found[cell] = os.path.join(folder, cell.subdir)
  return found


def aggregate(cells: Sequence[Cell], folders: str | Sequence[str],
              synthetic: bool) -> list[dict[str, Any]]:
  """One row per (protocol, variant): statistics (fractions) over its seeds.

  `folders`: a study workdir, or several folders of finished cells (a
  workdir, archives, the halves of a split study), searched in order.
  Mean, sample std and t interval over seeds, the per-seed values, the final
  training losses, and for every variant its paired difference to `full`
  (`add_paired_differences`).
  """
  cell_dirs = finished_cells(cells, folders)
  groups: dict[tuple[str, str], list[Cell]] = {}
  for cell in cells:
    groups.setdefault((cell.protocol, cell.variant), []).append(cell)
  rows = []
  runs: dict[tuple[str, str], dict[int, tuple[str, dict[str, Any]]]] = {}
  for (protocol, variant), members in groups.items():
    finished = [c for c in members if c in cell_dirs]
    results = [_read_json(os.path.join(cell_dirs[c], 'results.json'))
               for c in finished]
    runs[(protocol, variant)] = {c.seed: (cell_dirs[c], r)
                                 for c, r in zip(finished, results)}
    row: dict[str, Any] = {'protocol': protocol, 'variant': variant,
                           'n_seeds': len(results),
                           'seeds': [c.seed for c in finished]}
    for block in BLOCKS:
      for metric in METRICS:
        values = [float(r[block][metric]) for r in results]
        mean, std = mean_std(values) if values else (None, None)
        key = f'{block}_{metric}'
        row[f'{key}_mean'] = mean
        row[f'{key}_std'] = std
        low = high = None
        if len(values) >= 2:
          low, high = study_stats.t_interval(values)
        row[f'{key}_ci_low'], row[f'{key}_ci_high'] = low, high
        row[f'{key}_values'] = values
    row['stats_note'] = (None if len(results) >= 2 else
                         'no finished seed' if not results else
                         study_stats.NEEDS_TWO)
    add_train_losses(row, [cell_dirs[c] for c in finished])
    row.update(paper_reference(protocol, variant, synthetic))
    rows.append(row)
  add_paired_differences(rows, runs)
  return rows


# Training losses reported beside a study's HTER: what the regime was (still
# learning, or the sources memorised) when the evaluation was taken.
TRAIN_LOSSES = ('loss', 'cls', 'cls_meta_test', 'trip', 'trip_meta_test',
                'depth', 'parsing')
# The losses a variant still logs but does not train on: weight 0 in
# configs/common.py (lambda_seg; lambda_trip and meta.inner_trip_weight).
UNTRAINED_LOSSES = {'no_parsing': ('parsing',),
                    'no_triplet': ('trip', 'trip_meta_test')}


def final_train_losses(cell_dir: str) -> dict[str, float]:
  """The training losses of a cell's last logged step (metrics.jsonl).

  Reads the last scalars line with a `train/loss` (the mean over the last
  logging interval): {name: value} for TRAIN_LOSSES present there; {} when
  the cell kept no metrics log.
  """
  path = os.path.join(cell_dir, 'metrics.jsonl')
  if not os.path.exists(path):
    return {}
  last = None
  with open(path) as f:
    for line in f:
      record = json.loads(line)
      values = record.get('values', {})
      if record.get('kind') == 'scalars' and 'train/loss' in values:
        last = values
  if last is None:
    return {}
  return {name: float(last[f'train/{name}']) for name in TRAIN_LOSSES
          if f'train/{name}' in last}


def add_train_losses(row: dict[str, Any], cell_dirs: Sequence[str]) -> None:
  """Adds train_<loss>_final_{mean,std,values} over the cells' last steps."""
  finals = [final_train_losses(d) for d in cell_dirs]
  for name in TRAIN_LOSSES:
    values = [f[name] for f in finals if name in f]
    mean, std = mean_std(values) if values else (None, None)
    row[f'train_{name}_final_mean'] = mean
    row[f'train_{name}_final_std'] = std
    row[f'train_{name}_final_values'] = values


# Per-video target scores of an evaluation, if the run saved them:
# <cell>/target_scores_step<N>.json = {"video_ids": [...], "labels": [...],
# "scores": [...]} (video level, the same videos for every cell).
TARGET_SCORES = 'target_scores_step{step}.json'
DIFF_FIELDS = ('diff_mean', 'diff_ci_low', 'diff_ci_high', 'diff_t_low',
               'diff_t_high', 'diff_significant', 'diff_t_excludes_zero',
               'diff_mde', 'diffs')


def _threshold(value: Any) -> float:
  return float(value)  # results.json writes +inf as the string 'inf'.


def _metric_fn(metric: str):
  """(scores, labels, threshold or None) -> one metric, as in results.json."""
  def fn(scores, labels, threshold):
    if metric == 'auc':
      return metrics.auc(scores, labels)
    if metric == 'tpr_at_fpr_1pct':
      return metrics.tpr_at_fpr(scores, labels, 0.01)
    if threshold is None:  # The protocol number: this data's EER threshold.
      threshold = metrics.eer(scores, labels)[1]
    return metrics.hter(scores, labels, threshold)
  return fn


def video_scores(runs: Sequence[tuple[str, dict[str, Any]]],
                 block: str) -> tuple[np.ndarray, np.ndarray,
                                      list[float | None], list[str]] | None:
  """[runs, videos] target scores at each run's `block` checkpoint.

  `runs`: (cell directory, its results.json) pairs.
  Also the labels, each run's threshold (None for `protocol`, which takes
  the EER threshold of whatever videos it is given) and the sorted video
  ids. None unless every run saved its scores for the same videos.
  """
  rows, labels, ids, thresholds = [], None, None, []
  for cell_dir, result in runs:
    path = os.path.join(cell_dir,
                        TARGET_SCORES.format(step=result[block]['step']))
    if not os.path.exists(path):
      return None
    saved = _read_json(path)
    order = np.argsort(saved['video_ids'])
    run_ids = [saved['video_ids'][i] for i in order]
    if ids is None:
      ids, labels = run_ids, np.asarray(saved['labels'])[order]
    elif run_ids != ids:
      return None
    rows.append(np.asarray(saved['scores'], np.float64)[order])
    thresholds.append(None if block == 'protocol'
                      else _threshold(result[block]['threshold']))
  return np.stack(rows), labels, thresholds, ids


def add_paired_differences(
    rows: list[dict[str, Any]],
    runs: dict[tuple[str, str], dict[int, tuple[str, dict[str, Any]]]],
    n_boot: int = 1000) -> None:
  """Adds each variant's paired difference to `full` (variant - full).

  Over the seeds both have: mean, paired t interval, 95% bootstrap interval
  (seeds and target videos resampled when the cells saved per-video scores,
  else seeds only), whether it excludes zero, and the paired minimum
  detectable effect. Seeds only one of them has are listed, not dropped.
  """
  for row in rows:
    for block in BLOCKS:
      for metric in METRICS:
        for field in DIFF_FIELDS:
          row[f'{block}_{metric}_{field}'] = None
    row.update(paired_seeds=None, unpaired_seeds=None, extra_seeds=None,
               diff_method=None, diff_note=None)
    full = runs.get((row['protocol'], 'full'))
    if row['variant'] == 'full':
      continue
    if full is None:
      row['diff_note'] = 'no full variant in the study to compare with'
      continue
    mine = runs[(row['protocol'], row['variant'])]
    shared, only_full, only_mine = study_stats.pair_seeds(full, mine)
    row.update(paired_seeds=shared, unpaired_seeds=only_full,
               extra_seeds=only_mine)
    notes = []
    if only_full:
      notes.append(f'unpaired: full has seed(s) {only_full} that '
                   f'{row["variant"]} lacks')
    if only_mine:
      notes.append(f'unpaired: {row["variant"]} has seed(s) {only_mine} '
                   'that full lacks')
    if len(shared) < 2:
      notes.append(f'paired difference: {study_stats.NEEDS_TWO}')
    row['diff_note'] = '; '.join(notes) or None
    if not shared:
      continue
    two_level = len(shared) >= 2
    for block in BLOCKS:
      scores = base = None
      if len(shared) >= 2:
        scores = video_scores([mine[s] for s in shared], block)
        base = video_scores([full[s] for s in shared], block)
        if scores is None or base is None or scores[3] != base[3]:
          scores = base = None
      two_level = two_level and scores is not None
      for metric in METRICS:
        key = f'{block}_{metric}'
        diffs = [float(mine[s][1][block][metric])
                 - float(full[s][1][block][metric]) for s in shared]
        row[f'{key}_diffs'] = diffs
        row[f'{key}_diff_mean'] = float(np.mean(diffs))
        if len(diffs) < 2:
          continue
        row[f'{key}_diff_t_low'], row[f'{key}_diff_t_high'] = (
            study_stats.t_interval(diffs))
        if scores is not None:
          low, high = study_stats.two_level_bootstrap_interval(
              scores[0], base[0], scores[1], _metric_fn(metric), scores[2],
              base[2], n_boot=n_boot)
        else:
          low, high = study_stats.seed_bootstrap_interval(diffs)
        row[f'{key}_diff_ci_low'], row[f'{key}_diff_ci_high'] = low, high
        row[f'{key}_diff_significant'] = study_stats.excludes_zero(low, high)
        row[f'{key}_diff_t_excludes_zero'] = study_stats.excludes_zero(
            row[f'{key}_diff_t_low'], row[f'{key}_diff_t_high'])
        row[f'{key}_diff_mde'] = study_stats.paired_mde(
            float(np.std(diffs, ddof=1)), len(diffs))
    if len(shared) >= 2:
      row['diff_method'] = ('bootstrap over seeds and target videos'
                            if two_level else 'bootstrap over seeds only (no '
                            'per-video target scores saved)')


def study_mde(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """Per protocol, block and metric: the study's paired MDE as run.

  The SD of paired differences is pooled over the variants; n is the
  fewest seeds a variant shares with `full`.
  """
  out = []
  for protocol in dict.fromkeys(r['protocol'] for r in rows):
    paired = [r for r in rows if r['protocol'] == protocol
              and r['variant'] != 'full' and r.get('paired_seeds')]
    for block in BLOCKS:
      for metric in METRICS:
        groups = [r[f'{block}_{metric}_diffs'] for r in paired]
        sd = study_stats.pooled_sd(groups)
        n = min((len(g) for g in groups), default=0)
        out.append({'protocol': protocol, 'block': block, 'metric': metric,
                    'n_seeds': n, 'sd_paired_diff': sd,
                    'mde': (study_stats.paired_mde(sd, n)
                            if sd is not None else None),
                    'note': None if sd is not None and n >= 2 else
                    f'no paired difference over two or more seeds '
                    f'({study_stats.NEEDS_TWO})'})
  return out


def _pct(mean: float | None, std: float | None) -> str:
  if mean is None:
    return '-'
  if std is None:
    return f'{100 * mean:.2f}'
  return f'{100 * mean:.2f} ± {100 * std:.2f}'


def _paper(value: float | None) -> str:
  return '-' if value is None else f'{value:.2f}'


_METRIC_NAMES = {'hter': 'HTER', 'auc': 'AUC', 'tpr_at_fpr_1pct': 'TPR@FPR=1%'}


def _interval(mean: float | None, low: float | None, high: float | None,
              sign: bool = False) -> str:
  """'12.34 [10.00, 14.68]' in percent (points); '-' without a mean."""
  if mean is None:
    return '-'
  text = f'{100 * mean:+.2f}' if sign else f'{100 * mean:.2f}'
  if low is not None:
    text += f' [{100 * low:+.2f}, {100 * high:+.2f}]' if sign else (
        f' [{100 * low:.2f}, {100 * high:.2f}]')
  return text


def _table(head: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
  return (['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
          + ['| ' + ' | '.join(cells) + ' |' for cells in body])


def seed_table(rows: Sequence[dict[str, Any]]) -> list[str]:
  """Mean and 95% t interval over seeds, per protocol and variant."""
  head = ['protocol', 'variant', 'seeds'] + [
      f'{b} {_METRIC_NAMES[m]} %' for b in BLOCKS for m in METRICS]
  body = []
  for r in rows:
    cells = [r['protocol'], r['variant'], str(r['n_seeds'])]
    for b in BLOCKS:
      for m in METRICS:
        k = f'{b}_{m}'
        cell = _interval(r[f'{k}_mean'], r[f'{k}_ci_low'], r[f'{k}_ci_high'])
        if r[f'{k}_mean'] is not None and r[f'{k}_ci_low'] is None:
          cell += ' (interval needs ≥ 2 seeds)'
        cells.append(cell)
    body.append(cells)
  return _table(head, body)


def difference_table(rows: Sequence[dict[str, Any]]) -> list[str]:
  """Each variant minus `full` over shared seeds, significant ones bold."""
  head = ['protocol', 'variant', 'paired seeds'] + [
      f'{b} Δ{_METRIC_NAMES[m]} pts' for b in BLOCKS for m in METRICS] + [
          'MDE Δ HTER pts (protocol / honest)', 'note']
  body = []
  for r in rows:
    if r['variant'] == 'full':
      continue
    cells = [r['protocol'], r['variant'],
             ' '.join(map(str, r['paired_seeds'] or [])) or '-']
    for b in BLOCKS:
      for m in METRICS:
        k = f'{b}_{m}'
        cell = _interval(r[f'{k}_diff_mean'], r[f'{k}_diff_ci_low'],
                         r[f'{k}_diff_ci_high'], sign=True)
        if r[f'{k}_diff_significant']:
          cell = f'**{cell}** \\*' + (' †' if r[f'{k}_diff_t_excludes_zero']
                                      else '')
        cells.append(cell)
    mdes = [r[f'{b}_hter_diff_mde'] for b in BLOCKS]
    cells.append(' / '.join('-' if v is None else f'{100 * v:.2f}'
                            for v in mdes))
    cells.append(r['diff_note'] or '')
    body.append(cells)
  return _table(head, body) if body else []


def mde_table(rows: Sequence[dict[str, Any]]) -> list[str]:
  """The study's paired minimum detectable effects, per protocol and block."""
  body = [[e['protocol'], e['block'], _METRIC_NAMES[e['metric']],
           str(e['n_seeds']),
           '-' if e['sd_paired_diff'] is None
           else f'{100 * e["sd_paired_diff"]:.2f}',
           '-' if e['mde'] is None else f'{100 * e["mde"]:.2f}']
          for e in study_mde(rows)]
  return _table(['protocol', 'numbers', 'metric', 'paired seeds',
                 'SD of paired differences pts', 'MDE pts'], body)


def train_loss_table(rows: Sequence[dict[str, Any]]) -> list[str]:
  """Final training losses, mean ± std over seeds (empty if none logged)."""
  names = [n for n in TRAIN_LOSSES
           if any(r.get(f'train_{n}_final_values') for r in rows)]
  if not names:
    return []
  def fmt(r, n):
    mean, std = r[f'train_{n}_final_mean'], r[f'train_{n}_final_std']
    if mean is None:
      return '-'
    untrained = n in UNTRAINED_LOSSES.get(r['variant'], ())
    return (f'{mean:.3f}' + ('' if std is None else f' ± {std:.3f}')
            + (' (weight 0)' if untrained else ''))
  return _table(['protocol', 'variant', 'seeds'] + list(names),
                [[r['protocol'], r['variant'],
                  str(len(r[f'train_{names[0]}_final_values']))]
                 + [fmt(r, n) for n in names] for r in rows])


def relative_command(command: str, workdir: str) -> str:
  """The command with absolute paths made relative to the study directory."""
  return re.sub(r'=(/[^\s]*)',
                lambda m: '=' + os.path.relpath(m.group(1), workdir), command)


def to_markdown(rows: Sequence[dict[str, Any]], command: str) -> str:
  """The study table in percent, protocol and honest columns side by side."""
  head = ['protocol', 'variant', 'seeds']
  for block in BLOCKS:
    head += [f'{block} HTER %', f'{block} AUC %', f'{block} TPR@FPR=1% %']
  head += ['paper HTER %', 'paper AUC %', 'paper source']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in rows:
    cells = [r['protocol'], r['variant'], str(r['n_seeds'])]
    for block in BLOCKS:
      cells += [_pct(r[f'{block}_{m}_mean'], r[f'{block}_{m}_std'])
                for m in METRICS]
    cells += [_paper(r['paper_hter']), _paper(r['paper_auc']),
              r['paper_note']]
    lines.append('| ' + ' | '.join(cells) + ' |')
  notes = [
      '', 'Mean ± sample std over seeds, video level. *protocol*: checkpoint '
      'and threshold chosen on the target (what the paper reports); '
      '*honest*: both chosen on held-out source data.',
      f'The paper\'s Table II (ablations) is not available to us, so its '
      f'rows say "{NO_TABLE_II}" instead of numbers.', '',
      '## Intervals over seeds', '',
      'Mean [95% t interval] over seeds, %.', '', *seed_table(rows), '']
  diffs = difference_table(rows)
  if diffs:
    methods = sorted({r['diff_method'] for r in rows if r['diff_method']})
    notes += [
        '## Paired differences to full', '',
        'Variant minus `full` over the seeds both ran (a seed fixes '
        'initialisation, data order and meta-test draws), in percentage '
        'points: mean [95% percentile bootstrap interval; '
        + ('; '.join(methods) or 'none') + ']. **Bold** with \\* : the '
        'bootstrap interval excludes zero; † : the paired t interval '
        '(study.json `*_diff_t_low/high`) excludes zero too. With few seeds '
        'the bootstrap over seeds is too narrow (over 3 seeds it cannot be '
        'wider than the range of the paired differences); † is the '
        'conservative reading. MDE: the smallest true paired difference a '
        'two-sided paired t test at the 5% level detects with 80% power, '
        'from this variant\'s SD of paired differences. Lower HTER and '
        'higher AUC/TPR are better.', '', *diffs, '',
        '## Minimum detectable effect of the study', '',
        'Paired (80% power, 5% level, two-sided t test), from the SD of '
        'paired differences pooled over the variants.', '',
        *mde_table(rows), '']
  losses = train_loss_table(rows)
  if losses:
    notes += ['## Training losses at the end', '',
              'Mean ± sample std over seeds of each cell\'s last logged '
              'training losses (metrics.jsonl: the mean over the last logging '
              'interval; meta-train and meta-test terms summed over domains). '
              'They say which regime the table measures: sources still being '
              'learned, or memorised. `loss` is the weighted sum that is '
              'trained (the config\'s loss weights); a term marked '
              '"(weight 0)" is logged but not trained by that variant.', '',
              *losses, '']
  notes += [f'Command: `{command}`', '']
  return '# Study\n\n' + '\n'.join(lines) + '\n' + '\n'.join(notes)


def _csv_value(value: Any) -> Any:
  if value is None:
    return ''
  if isinstance(value, list):
    return ' '.join(str(v) for v in value)
  return value


def write_outputs(rows: Sequence[dict[str, Any]], workdir: str,
                  command: str) -> None:
  """Writes study.md, study.csv and study.json into the study directory.

  Absolute paths in the command are written relative to the directory.
  """
  command = relative_command(command, workdir)
  with open(os.path.join(workdir, 'study.json'), 'w') as f:
    json.dump({'command': command, 'paths': 'relative to the study directory',
               'rows': list(rows), 'mde': study_mde(rows)}, f, indent=2)
  with open(os.path.join(workdir, 'study.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    for r in rows:
      writer.writerow({k: _csv_value(v) for k, v in r.items()})
  with open(os.path.join(workdir, 'study.md'), 'w') as f:
    f.write(to_markdown(rows, command))


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not _PROTOCOLS.value or not _WORKDIR.value:
    raise app.UsageError('--protocols and --workdir are required.')
  try:
    seeds = [int(s) for s in _SEEDS.value]
  except ValueError:
    raise app.UsageError(f'--seeds must be integers: {_SEEDS.value}') from None
  cells = make_cells(_PROTOCOLS.value, _VARIANTS.value, seeds,
                     _SYNTHETIC.value, _CONFIG_ARGS.value)
  workdir = os.path.abspath(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  archive = os.path.abspath(_ARCHIVE.value) if _ARCHIVE.value else None
  cells_from = [os.path.abspath(f) for f in _CELLS_FROM.value]
  for folder in cells_from:
    if not os.path.isdir(folder):
      raise app.UsageError(f'--cells_from: {folder} is not a directory.')
  if not _AGGREGATE_ONLY.value:
    if _EXECUTOR.value == 'slurm' and study_exec.slurm_missing():
      print(study_exec.slurm_missing(), file=sys.stderr)
      sys.exit(2)
    try:
      executor = make_executor(workdir)
    except ValueError as e:
      raise app.UsageError(str(e)) from None
    try:
      lock = lock_study(workdir)  # pylint: disable=unused-variable
    except workdir_lock.WorkdirLockedError as e:
      print(f'Refusing to start a second study in {workdir}: {e}',
            file=sys.stderr)
      sys.exit(2)
    try:
      run_study(cells, workdir, _OVERRIDES.value, executor,
                archive=archive, cells_from=cells_from)
    except CellsFailedError as e:
      logging.error('%s', e)
      print(e, file=sys.stderr)
      sys.exit(1)
  try:
    rows = aggregate(cells, study_folders(workdir, archive, cells_from),
                     _SYNTHETIC.value)
  except study_archive.CellConflictError as e:
    print(e, file=sys.stderr)
    sys.exit(2)
  command = ' '.join(['python -m fasjax.study'] + sys.argv[1:])
  for out in [workdir] + ([archive] if archive else []):
    write_outputs(rows, out, command)
    logging.info('Wrote %s/study.{md,csv,json}.', out)
  print(to_markdown(rows, command))


if __name__ == '__main__':
  app.run(main)
