"""Runs a study (protocols x variants x seeds) and aggregates it over seeds.

  python -m fasjax.study --protocols=ocm_to_i --variants=full,no_meta \
      --seeds=0,1,2 --synthetic --workdir=W

Each cell trains through launch.py in its own sub-workdir
W/<protocol>/<variant>/seed<N>, in a subprocess (a crashed cell cannot take
the study down, and every cell starts from a clean process). A cell with a
results.json is skipped, and an unfinished one resumes from its latest
checkpoint, so rerunning the same command after an interruption finishes the
study. Then W/study.md, W/study.csv and W/study.json hold mean ± std over
seeds of HTER, AUC and TPR@FPR=1% per protocol and variant, the protocol and
honest numbers in separate columns, the number of seeds, and the paper's
values where there are any.
"""

import csv
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Sequence

from absl import app
from absl import flags
from absl import logging

from configs import common

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
  """Every (protocol, variant, seed) cell with its config argument string."""
  for p in protocols:
    if not os.path.exists(os.path.join(ROOT, 'configs', f'{p}.py')):
      raise ValueError(f'Unknown protocol {p!r}: no configs/{p}.py.')
  for v in variants:
    if v not in VARIANTS:
      raise ValueError(f'Unknown variant {v!r}; valid: {", ".join(VARIANTS)}.')
  base = (['synthetic'] if synthetic else []) + list(config_args)
  cells = []
  for p in protocols:
    for v in variants:
      for s in seeds:
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


def results_path(workdir: str, cell: Cell) -> str:
  """Where a cell's results.json lives."""
  return os.path.join(workdir, cell.subdir, 'results.json')


def run_cell(cell: Cell, workdir: str, overrides: Sequence[str]) -> None:
  """Trains one cell (resuming), its output in <cell>/study_cell.log."""
  cell_dir = os.path.join(workdir, cell.subdir)
  os.makedirs(cell_dir, exist_ok=True)
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
      filter(None, [ROOT, env.get('PYTHONPATH')]))
  with open(os.path.join(cell_dir, 'study_cell.log'), 'a') as log:
    proc = subprocess.run(launch_command(cell, cell_dir, overrides), cwd=ROOT,
                          env=env, stdout=log, stderr=subprocess.STDOUT,
                          check=False)
  if proc.returncode != 0:
    raise RuntimeError(
        f'Cell {cell.subdir} failed (exit {proc.returncode}); see '
        f'{os.path.join(cell_dir, "study_cell.log")}. Rerun the same command '
        'to resume the study.')


def format_duration(seconds: float) -> str:
  """'1h02m03s' style duration."""
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


def progress_line(done: int, total: int, run_times: Sequence[float]) -> str:
  """Progress over the whole study; the ETA averages this session's cells."""
  line = f'study: {done}/{total} cells done'
  if run_times and done < total:
    eta = statistics.mean(run_times) * (total - done)
    line += f', ETA {format_duration(eta)}'
  return line


def run_study(cells: Sequence[Cell], workdir: str,
              overrides: Sequence[str] = ()) -> None:
  """Runs the unfinished cells in order, logging progress after each."""
  total = len(cells)
  pending = [c for c in cells if not os.path.exists(results_path(workdir, c))]
  done = total - len(pending)
  if done:
    logging.info('Skipping %d finished cell(s).', done)
  logging.info(progress_line(done, total, []))
  run_times: list[float] = []
  for cell in pending:
    logging.info('Running cell %s (%s).', cell.subdir, cell.config_arg)
    t0 = time.time()
    run_cell(cell, workdir, overrides)
    run_times.append(time.time() - t0)
    done += 1
    logging.info('%s (cell took %s)', progress_line(done, total, run_times),
                 format_duration(run_times[-1]))


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


def aggregate(cells: Sequence[Cell], workdir: str,
              synthetic: bool) -> list[dict[str, Any]]:
  """One row per (protocol, variant): mean/std (fractions) over its seeds."""
  groups: dict[tuple[str, str], list[Cell]] = {}
  for cell in cells:
    groups.setdefault((cell.protocol, cell.variant), []).append(cell)
  rows = []
  for (protocol, variant), members in groups.items():
    finished = [c for c in members if os.path.exists(results_path(workdir, c))]
    results = [_read_json(results_path(workdir, c)) for c in finished]
    row: dict[str, Any] = {'protocol': protocol, 'variant': variant,
                           'n_seeds': len(results),
                           'seeds': [c.seed for c in finished]}
    for block in BLOCKS:
      for metric in METRICS:
        values = [r[block][metric] for r in results]
        mean, std = mean_std(values) if values else (None, None)
        row[f'{block}_{metric}_mean'] = mean
        row[f'{block}_{metric}_std'] = std
    row.update(paper_reference(protocol, variant, synthetic))
    rows.append(row)
  return rows


def _pct(mean: float | None, std: float | None) -> str:
  if mean is None:
    return '-'
  if std is None:
    return f'{100 * mean:.2f}'
  return f'{100 * mean:.2f} ± {100 * std:.2f}'


def _paper(value: float | None) -> str:
  return '-' if value is None else f'{value:.2f}'


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
      f'Command: `{command}`', '']
  return '# Study\n\n' + '\n'.join(lines) + '\n' + '\n'.join(notes)


def _csv_value(value: Any) -> Any:
  if value is None:
    return ''
  if isinstance(value, list):
    return ' '.join(str(v) for v in value)
  return value


def write_outputs(rows: Sequence[dict[str, Any]], workdir: str,
                  command: str) -> None:
  """Writes study.md, study.csv and study.json into the study directory."""
  with open(os.path.join(workdir, 'study.json'), 'w') as f:
    json.dump({'command': command, 'rows': list(rows)}, f, indent=2)
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
  run_study(cells, workdir, _OVERRIDES.value)
  rows = aggregate(cells, workdir, _SYNTHETIC.value)
  command = ' '.join(['python -m fasjax.study'] + sys.argv[1:])
  write_outputs(rows, workdir, command)
  logging.info('Wrote %s/study.{md,csv,json}.', workdir)
  print(to_markdown(rows, command))


if __name__ == '__main__':
  app.run(main)
