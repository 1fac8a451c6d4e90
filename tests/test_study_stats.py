"""Study statistics against independent references (scipy, brute force).

Fast and JAX-free: every reference is computed here, never by the module.
"""

import itertools

import numpy as np
import pytest
from scipy import stats

from fasjax import study_stats


def test_t_interval_matches_scipy():
  values = [0.21, 0.28, 0.17, 0.25, 0.3]
  low, high = study_stats.t_interval(values)
  ref = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                         scale=stats.sem(values))
  assert (low, high) == pytest.approx(ref, abs=1e-12)
  s = study_stats.seed_summary(values, level=0.9)
  assert s['std'] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
  assert (s['ci_low'], s['ci_high']) == pytest.approx(stats.t.interval(
      0.9, 4, loc=np.mean(values), scale=stats.sem(values)), abs=1e-12)


def test_one_seed_says_two_are_needed():
  s = study_stats.seed_summary([0.2])
  assert s['mean'] == 0.2 and s['std'] is None and s['ci_low'] is None
  assert 'at least two seeds' in s['note']
  with pytest.raises(ValueError, match='at least two seeds'):
    study_stats.t_interval([0.2])
  with pytest.raises(ValueError, match='at least two seeds'):
    study_stats.seed_bootstrap_interval([0.1])
  assert study_stats.paired_mde(0.05, 1) is None


def test_pair_seeds_lists_the_unpaired():
  assert study_stats.pair_seeds([0, 1, 2], [2, 0, 5]) == ([0, 2], [1], [5])


def test_seed_bootstrap_matches_scipy_bootstrap():
  diffs = np.array([0.031, -0.012, 0.055, 0.02, 0.047, -0.004, 0.038, 0.011])
  low, high = study_stats.seed_bootstrap_interval(diffs, n_boot=40000, seed=1)
  ref = stats.bootstrap((diffs,), np.mean, method='percentile',
                        n_resamples=40000, random_state=7).confidence_interval
  width = ref.high - ref.low
  assert low == pytest.approx(ref.low, abs=0.03 * width)
  assert high == pytest.approx(ref.high, abs=0.03 * width)


def test_seed_bootstrap_matches_the_exact_distribution():
  # Three seeds: all 27 equally likely resamples, enumerated.
  diffs = np.array([0.01, 0.05, 0.12])
  means = np.array([diffs[list(i)].mean()
                    for i in itertools.product(range(3), repeat=3)])
  low, high = study_stats.seed_bootstrap_interval(diffs, n_boot=20000)
  # The 2.5% / 97.5% points of the exact distribution (1/27 > 2.5% each
  # end, so the extremes).
  assert low == pytest.approx(means.min(), abs=1e-12)
  assert high == pytest.approx(means.max(), abs=1e-12)


def _hter(scores, labels, threshold):
  """FAR and FRR at `threshold`, averaged."""
  return (np.mean(scores[labels == 0] >= threshold)
          + np.mean(scores[labels == 1] < threshold)) / 2


def _hter_at_eer(scores, labels, threshold=None):
  """Brute-force HTER at the threshold where |FAR - FRR| is smallest."""
  if threshold is not None:
    return _hter(scores, labels, threshold)
  best = None
  for t in np.append(np.unique(scores), np.inf):
    far = np.mean(scores[labels == 0] >= t)
    frr = np.mean(scores[labels == 1] < t)
    key = (abs(far - frr), (far + frr) / 2, t)
    if best is None or key < best[0]:
      best = (key, (far + frr) / 2)
  return best[1]


def _toy_scores(rng, n_seeds, shift):
  labels = np.array([1] * 12 + [0] * 30)
  base = rng.normal(0, 1, (n_seeds, labels.size)) + 1.2 * labels
  variant = base + rng.normal(0, 0.5, base.shape) + shift * labels
  return variant, base, labels


def test_two_level_bootstrap_matches_a_brute_force_loop():
  rng = np.random.default_rng(3)
  variant, base, labels = _toy_scores(rng, 4, 0.6)
  n_boot = 300
  low, high = study_stats.two_level_bootstrap_interval(
      variant, base, labels, _hter_at_eer, n_boot=n_boot, seed=11)
  # The documented draw order, re-done in plain loops.
  gen = np.random.default_rng(11)
  live, spoof = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
  ref = []
  for _ in range(n_boot):
    seeds = gen.integers(0, 4, size=4)
    v = np.concatenate([live[gen.integers(0, live.size, size=live.size)],
                        spoof[gen.integers(0, spoof.size, size=spoof.size)]])
    diffs = []
    for s in seeds:
      diffs.append(_hter_at_eer(variant[s][v], labels[v])
                   - _hter_at_eer(base[s][v], labels[v]))
    ref.append(sum(diffs) / len(diffs))
  ref_low, ref_high = np.percentile(ref, [2.5, 97.5])
  assert (low, high) == pytest.approx((ref_low, ref_high), abs=1e-12)


def test_two_level_bootstrap_uses_each_runs_threshold():
  # Honest numbers: every run applies its own fixed threshold.
  rng = np.random.default_rng(4)
  variant, base, labels = _toy_scores(rng, 3, 0.4)
  thr, base_thr = [0.3, 0.5, 0.7], [0.6, 0.4, 0.2]
  samples = study_stats.two_level_bootstrap_samples(
      variant, base, labels, _hter_at_eer, thr, base_thr, n_boot=50, seed=2)
  gen = np.random.default_rng(2)
  live, spoof = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
  for b in range(50):
    seeds = gen.integers(0, 3, size=3)
    v = np.concatenate([live[gen.integers(0, live.size, size=live.size)],
                        spoof[gen.integers(0, spoof.size, size=spoof.size)]])
    ref = np.mean([_hter(variant[s][v], labels[v], thr[s])
                   - _hter(base[s][v], labels[v], base_thr[s])
                   for s in seeds])
    assert samples[b] == pytest.approx(ref, abs=1e-12)


def test_two_level_bootstrap_is_wider_than_seed_only():
  # With the target videos resampled too, the interval also carries the
  # target sample's noise: wider than resampling the seeds' values alone.
  rng = np.random.default_rng(5)
  variant, base, labels = _toy_scores(rng, 5, 0.0)
  per_seed = [_hter_at_eer(variant[s], labels) - _hter_at_eer(base[s], labels)
              for s in range(5)]
  seed_only = study_stats.seed_bootstrap_interval(per_seed)
  both = study_stats.two_level_bootstrap_interval(
      variant, base, labels, _hter_at_eer, n_boot=400)
  assert both[1] - both[0] > seed_only[1] - seed_only[0]
  with pytest.raises(ValueError, match='shapes'):
    study_stats.two_level_bootstrap_samples(variant, base[:, :-1], labels,
                                            _hter_at_eer)


def test_mde_has_the_power_by_simulation():
  sd, n = 0.055, 3
  mde = study_stats.paired_mde(sd, n)
  # 40000 simulated studies of n paired differences ~ N(mde, sd).
  rng = np.random.default_rng(0)
  d = rng.normal(mde, sd, (40000, n))
  p = stats.ttest_1samp(d, 0.0, axis=1).pvalue
  assert np.mean(p < 0.05) == pytest.approx(0.8, abs=0.01)


def test_mde_matches_the_noncentral_t():
  sd, n = 0.08, 10
  mde = study_stats.paired_mde(sd, n)
  crit = stats.t.ppf(0.975, n - 1)
  nc = mde * np.sqrt(n) / sd
  power = stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc)
  assert power == pytest.approx(0.8, abs=1e-8)
  # For many seeds it approaches the normal formula (z_.975 + z_.8) sd/sqrt(n).
  big = study_stats.paired_mde(sd, 2000)
  normal = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * sd / np.sqrt(2000)
  assert big == pytest.approx(normal, rel=2e-3)


def test_seeds_for_mde_is_the_smallest_n():
  sd, target = 0.078, 0.03
  n = study_stats.seeds_for_mde(sd, target)
  for m, reaches in ((n, True), (n - 1, False)):
    crit = stats.t.ppf(0.975, m - 1)
    nc = target * np.sqrt(m) / sd
    power = stats.nct.sf(crit, m - 1, nc) + stats.nct.cdf(-crit, m - 1, nc)
    assert (power >= 0.8) == reaches


def test_pooled_sd_and_excludes_zero():
  groups = [[1.0, 2.0, 4.0], [3.0, 3.5], [7.0]]
  ss = sum(((np.array(g) - np.mean(g)) ** 2).sum() for g in groups[:2])
  assert study_stats.pooled_sd(groups) == pytest.approx(np.sqrt(ss / 3))
  assert study_stats.pooled_sd([[1.0]]) is None
  assert study_stats.excludes_zero(0.01, 0.2) is True
  assert study_stats.excludes_zero(-0.2, -0.01) is True
  assert study_stats.excludes_zero(-0.01, 0.2) is False
  assert study_stats.excludes_zero(None, None) is None
