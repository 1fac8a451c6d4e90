"""A study's cells kept small enough to commit, and found again across folders.

A study cell's workdir holds checkpoints (hundreds of MB at the paper's size)
beside the few small files its tables are made of. A study that spans days,
machines or clusters keeps those small files in an *archive* folder (e.g. one
committed to git): `python -m fasjax.study --archive=DIR` copies each cell
there as it finishes and does not rerun a cell found there, and
`--cells_from=DIR,...` reads cells that other machines ran. Layout:
`<folder>/<protocol>/<variant>/seed<N>/` as in a study workdir.

What is kept (`kept_files`): the cell's resolved config, provenance, metrics
log (for the final training losses), per-video target scores and, copied
last so that a half-copied cell never counts as finished, results.json.
"""

import filecmp
import fnmatch
import os
import shutil
from typing import Sequence

RESULTS = 'results.json'
# Copied before RESULTS; a cell is finished once RESULTS is there.
KEPT_PATTERNS = ('config.json', 'provenance.json', 'metrics.jsonl',
                 'target_scores_step*.json')


class CellConflictError(RuntimeError):
  """The same cell finished in two folders with different results."""


def kept_files(cell_dir: str) -> list[str]:
  """Names of the files of `cell_dir` an archive keeps, results.json last."""
  names = sorted(os.listdir(cell_dir)) if os.path.isdir(cell_dir) else []
  kept = [n for n in names if n != RESULTS and any(
      fnmatch.fnmatch(n, p) for p in KEPT_PATTERNS)]
  return kept + ([RESULTS] if RESULTS in names else [])


def is_finished(folder: str, subdir: str) -> bool:
  """Whether `folder` holds the finished cell `subdir`."""
  return os.path.isfile(os.path.join(folder, subdir, RESULTS))


def archive_cell(cell_dir: str, archive: str, subdir: str) -> str:
  """Copies a finished cell's kept files to `archive/subdir`; returns it.

  Raises FileNotFoundError when the cell has no results.json (unfinished).
  """
  names = kept_files(cell_dir)
  if RESULTS not in names:
    raise FileNotFoundError(f'{cell_dir} has no {RESULTS}: the cell has not '
                            'finished, so there is nothing to archive.')
  target = os.path.join(archive, subdir)
  os.makedirs(target, exist_ok=True)
  for name in names:  # RESULTS last: the copy marks the cell finished.
    tmp = os.path.join(target, f'.{name}.tmp')
    shutil.copyfile(os.path.join(cell_dir, name), tmp)
    os.replace(tmp, os.path.join(target, name))
  return target


def find_cell(subdir: str, folders: Sequence[str]) -> str | None:
  """The first folder holding the finished cell `subdir`, or None.

  Raises CellConflictError when two folders hold it with different
  results.json: merging them would silently pick one run over another.
  """
  found = [f for f in folders if is_finished(f, subdir)]
  for other in found[1:]:
    a, b = (os.path.join(f, subdir, RESULTS) for f in (found[0], other))
    if not filecmp.cmp(a, b, shallow=False):
      raise CellConflictError(
          f'Cell {subdir} finished in two folders with different results: '
          f'{a} and {b}. Keep one (delete the other cell folder) and '
          'aggregate again.')
  return found[0] if found else None


def sync(workdir: str, archive: str, subdirs: Sequence[str]) -> list[str]:
  """Archives every finished cell of `workdir` not yet in `archive`."""
  added = []
  for subdir in subdirs:
    if (is_finished(workdir, subdir)
        and not is_finished(archive, subdir)):
      archive_cell(os.path.join(workdir, subdir), archive, subdir)
      added.append(subdir)
  return added
