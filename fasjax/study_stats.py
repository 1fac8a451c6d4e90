"""Statistics of a study over seeds: intervals, paired differences, power.

Pure numpy/scipy, used by `fasjax.study` when it aggregates cells:

* `seed_summary`: mean, sample std and a t interval over seeds.
* `pair_seeds`: the seeds two variants share and the ones only one has.
* `seed_bootstrap_interval`: percentile bootstrap of a mean paired
  difference, resampling seeds.
* `two_level_bootstrap_interval`: the same, resampling seeds and (within
  each class) target videos, from per-video scores.
* `paired_mde` / `seeds_for_mde`: the smallest true paired difference a
  two-sided paired t test detects with the given power, and the seeds a
  target difference needs.

All levels are two-sided; `level=0.95` is a 95% interval.
"""

from typing import Callable, Sequence

import numpy as np
from scipy import optimize
from scipy import stats

NEEDS_TWO = 'the interval needs at least two seeds'

# A metric of one run's per-video target scores: (scores[V], labels[V],
# threshold or None); the threshold is the run's own (e.g. the honest one).
Metric = Callable[[np.ndarray, np.ndarray, float | None], float]


def t_interval(values: Sequence[float], level: float = 0.95
               ) -> tuple[float, float]:
  """Student t interval of the mean of `values` (at least two)."""
  x = np.asarray(values, np.float64)
  if x.size < 2:
    raise ValueError(f'{NEEDS_TWO} (got {x.size})')
  half = (stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1)
          / np.sqrt(x.size))
  return float(x.mean() - half), float(x.mean() + half)


def seed_summary(values: Sequence[float], level: float = 0.95) -> dict:
  """n, mean, sample std and t interval; with one value std/interval are None."""
  x = np.asarray(values, np.float64)
  out = {'n': int(x.size), 'mean': float(x.mean()) if x.size else None,
         'std': None, 'ci_low': None, 'ci_high': None, 'note': None}
  if x.size >= 2:
    out['std'] = float(x.std(ddof=1))
    out['ci_low'], out['ci_high'] = t_interval(x, level)
  else:
    out['note'] = NEEDS_TWO
  return out


def pair_seeds(full: Sequence[int], other: Sequence[int]
               ) -> tuple[list[int], list[int], list[int]]:
  """(shared seeds, seeds only `full` has, seeds only `other` has), sorted."""
  a, b = set(full), set(other)
  return sorted(a & b), sorted(a - b), sorted(b - a)


def percentile_interval(samples: np.ndarray, level: float = 0.95
                        ) -> tuple[float, float]:
  """The central `level` percentile interval of bootstrap samples."""
  lo, hi = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
  return float(lo), float(hi)


def seed_bootstrap_interval(differences: Sequence[float], level: float = 0.95,
                            n_boot: int = 10000, seed: int = 0
                            ) -> tuple[float, float]:
  """Percentile bootstrap interval of the mean paired difference over seeds."""
  d = np.asarray(differences, np.float64)
  if d.size < 2:
    raise ValueError(f'{NEEDS_TWO} (got {d.size})')
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, d.size, size=(n_boot, d.size))
  return percentile_interval(d[idx].mean(axis=1), level)


def two_level_bootstrap_samples(
    scores: np.ndarray, base_scores: np.ndarray, labels: np.ndarray,
    metric: Metric, thresholds: Sequence[float | None] | None = None,
    base_thresholds: Sequence[float | None] | None = None,
    n_boot: int = 2000, seed: int = 0) -> np.ndarray:
  """Bootstrap samples of mean over seeds of metric(variant) - metric(full).

  `scores` and `base_scores` are [seeds, videos] per-video target scores of
  the variant and of `full` on the same seeds (rows) and videos (columns);
  `labels` [videos]; `thresholds`/`base_thresholds` per seed (None: the
  metric's own). Each replicate draws seeds with replacement, then live
  and spoof videos with replacement within their class (so both classes keep
  their counts), the same draw for both variants and every seed: in this
  order, `rng.integers(S, size=S)`, `rng.integers(L, size=L)`,
  `rng.integers(P, size=P)` on `np.random.default_rng(seed)`.
  """
  scores = np.asarray(scores, np.float64)
  base_scores = np.asarray(base_scores, np.float64)
  labels = np.asarray(labels)
  if scores.shape != base_scores.shape or scores.shape[1] != labels.size:
    raise ValueError(f'shapes differ: {scores.shape}, {base_scores.shape}, '
                     f'{labels.shape}')
  if scores.shape[0] < 2:
    raise ValueError(f'{NEEDS_TWO} (got {scores.shape[0]})')
  thresholds = thresholds or [None] * scores.shape[0]
  base_thresholds = base_thresholds or [None] * scores.shape[0]
  live = np.flatnonzero(labels == 1)
  spoof = np.flatnonzero(labels == 0)
  n_seeds = scores.shape[0]
  rng = np.random.default_rng(seed)
  out = np.empty(n_boot)
  for b in range(n_boot):
    seeds = rng.integers(0, n_seeds, size=n_seeds)
    videos = np.concatenate([live[rng.integers(0, live.size, size=live.size)],
                             spoof[rng.integers(0, spoof.size,
                                                size=spoof.size)]])
    y = labels[videos]
    out[b] = np.mean([metric(scores[s, videos], y, thresholds[s])
                      - metric(base_scores[s, videos], y, base_thresholds[s])
                      for s in seeds])
  return out


def two_level_bootstrap_interval(
    scores: np.ndarray, base_scores: np.ndarray, labels: np.ndarray,
    metric: Metric, thresholds: Sequence[float | None] | None = None,
    base_thresholds: Sequence[float | None] | None = None,
    level: float = 0.95, n_boot: int = 2000, seed: int = 0
    ) -> tuple[float, float]:
  """Percentile interval of `two_level_bootstrap_samples`."""
  return percentile_interval(two_level_bootstrap_samples(
      scores, base_scores, labels, metric, thresholds, base_thresholds,
      n_boot, seed), level)


def excludes_zero(low: float | None, high: float | None) -> bool | None:
  """Whether an interval lies entirely above or below zero (None: no interval)."""
  if low is None or high is None:
    return None
  return bool(low > 0 or high < 0)


def paired_power(effect: float, sd: float, n: int, alpha: float = 0.05
                 ) -> float:
  """Power of the two-sided one-sample t test on n paired differences."""
  df = n - 1
  crit = stats.t.ppf(1 - alpha / 2, df)
  nc = effect * np.sqrt(n) / sd
  # scipy's nct returns NaN far in the tails, where the terms are 1 and 0.
  upper = np.nan_to_num(stats.nct.sf(crit, df, nc), nan=1.0)
  lower = np.nan_to_num(stats.nct.cdf(-crit, df, nc), nan=0.0)
  return float(min(upper + lower, 1.0))


def paired_mde(sd: float, n: int, alpha: float = 0.05, power: float = 0.8
               ) -> float | None:
  """Smallest paired mean difference detected with `power` (None if n < 2)."""
  if n < 2 or sd is None or not np.isfinite(sd):
    return None
  if sd == 0:
    return 0.0
  high = sd  # Power rises with the effect: double until it is reached.
  while paired_power(high, sd, n, alpha) < power:
    high *= 2
  return float(optimize.brentq(
      lambda e: paired_power(e, sd, n, alpha) - power, 0.0, high,
      xtol=1e-10 * sd))


def seeds_for_mde(sd: float, target: float, alpha: float = 0.05,
                  power: float = 0.8, max_seeds: int = 100000) -> int:
  """Fewest seeds whose paired MDE at this sd is at most `target`."""
  n = 2
  while paired_mde(sd, n, alpha, power) > target:
    n += 1
    if n > max_seeds:
      raise ValueError(f'more than {max_seeds} seeds needed')
  return n


def pooled_sd(groups: Sequence[Sequence[float]]) -> float | None:
  """Pooled sample std of several groups (those with two or more values)."""
  num = den = 0.0
  for g in groups:
    x = np.asarray(g, np.float64)
    if x.size >= 2:
      num += (x.size - 1) * x.var(ddof=1)
      den += x.size - 1
  return float(np.sqrt(num / den)) if den else None
