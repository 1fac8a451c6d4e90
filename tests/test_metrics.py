"""Tests of fasjax.metrics against sklearn and brute-force references.

The references below loop over every candidate threshold with exact
fractions; they are deliberately naive so that they are obviously right.
"""

import collections
import fractions
import math

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from fasjax import metrics

INF = float('inf')


# -----------------------------------------------------------------------------
# Brute-force references.
# -----------------------------------------------------------------------------


def _ref_rates(scores, labels, t):
  """Exact (FAR, FRR) at threshold t by counting."""
  spoofs = [s for s, y in zip(scores, labels) if y == 0]
  lives = [s for s, y in zip(scores, labels) if y == 1]
  far = fractions.Fraction(sum(1 for s in spoofs if s >= t), len(spoofs))
  frr = fractions.Fraction(sum(1 for s in lives if s < t), len(lives))
  return far, frr


def _ref_candidates(scores):
  return sorted(set(float(s) for s in scores) | {INF})


def _ref_eer(scores, labels):
  best = None
  for t in _ref_candidates(scores):
    far, frr = _ref_rates(scores, labels, t)
    key = (abs(far - frr), (far + frr) / 2, t)
    if best is None or key < best:
      best = key
  return float(best[1]), best[2]


def _ref_tpr_at_fpr(scores, labels, fpr):
  best = 0.0
  for t in _ref_candidates(scores):
    far, frr = _ref_rates(scores, labels, t)
    if far <= fractions.Fraction(fpr):
      best = max(best, float(1 - frr))
  return best


def _ref_hter(scores, labels, t):
  far, frr = _ref_rates(scores, labels, t)
  return float((far + frr) / 2)


def _random_case(seed):
  """Random (scores, labels) of a kind chosen by the seed."""
  rng = np.random.default_rng(seed)
  n = int(rng.integers(2, 60))
  labels = rng.integers(0, 2, n)
  labels[0], labels[1] = 0, 1  # Both classes present.
  kind = seed % 5
  if kind == 0:  # Continuous, overlapping.
    scores = rng.normal(size=n) + labels
  elif kind == 1:  # Heavy ties.
    scores = rng.integers(0, 4, n) / 4.0
  elif kind == 2:  # Perfectly separated.
    scores = np.where(labels == 1, 0.6, 0.0) + rng.uniform(0, 0.4, n)
  elif kind == 3:  # Inverted.
    scores = np.where(labels == 1, 0.0, 0.6) + rng.uniform(0, 0.4, n)
  else:  # Very heavy ties, a few distinct values.
    scores = rng.integers(0, 2, n).astype(float)
  return scores, labels


SEEDS = list(range(60))


# -----------------------------------------------------------------------------
# Random cases against the references.
# -----------------------------------------------------------------------------


@pytest.mark.parametrize('seed', SEEDS)
def test_auc_matches_sklearn(seed):
  scores, labels = _random_case(seed)
  assert metrics.auc(scores, labels) == pytest.approx(
      skm.roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize('seed', SEEDS)
def test_eer_matches_brute_force(seed):
  scores, labels = _random_case(seed)
  value, threshold = metrics.eer(scores, labels)
  ref_value, ref_threshold = _ref_eer(scores, labels)
  assert threshold == ref_threshold
  assert value == pytest.approx(ref_value, abs=1e-12)


@pytest.mark.parametrize('seed', SEEDS)
def test_hter_matches_brute_force(seed):
  scores, labels = _random_case(seed)
  for t in _ref_candidates(scores) + [-INF, 0.3]:
    assert metrics.hter(scores, labels, t) == pytest.approx(
        _ref_hter(scores, labels, t), abs=1e-12)


@pytest.mark.parametrize('seed', SEEDS)
@pytest.mark.parametrize('fpr', [0.0, 0.01, 0.1, 0.5])
def test_tpr_at_fpr_matches_brute_force(seed, fpr):
  scores, labels = _random_case(seed)
  assert metrics.tpr_at_fpr(scores, labels, fpr) == pytest.approx(
      _ref_tpr_at_fpr(scores, labels, fpr), abs=1e-12)


@pytest.mark.parametrize('seed', range(10))
@pytest.mark.parametrize('fpr', [0.01, 0.05])
def test_tpr_at_fpr_matches_sklearn_roc_curve(seed, fpr):
  rng = np.random.default_rng(seed)
  n = 1000
  labels = rng.integers(0, 2, n)
  scores = rng.normal(size=n) + 2 * labels
  if seed % 2:
    scores = np.round(scores, 1)  # Ties.
  fprs, tprs, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
  expected = tprs[fprs <= fpr].max()
  assert metrics.tpr_at_fpr(scores, labels, fpr) == pytest.approx(expected)


def test_large_input_matches_sklearn():
  rng = np.random.default_rng(0)
  n = 200_000
  labels = rng.integers(0, 2, n)
  scores = np.round(rng.normal(size=n) + labels, 3)
  assert metrics.auc(scores, labels) == pytest.approx(
      skm.roc_auc_score(labels, scores), abs=1e-12)
  s = metrics.summary(scores, labels)
  assert 0.0 < s['eer'] < 0.5


# -----------------------------------------------------------------------------
# Hand-computed cases.
# -----------------------------------------------------------------------------


def test_hand_computed_overlap():
  # Spoofs 0.1, 0.4; lives 0.35, 0.8. At t = 0.4: FAR 1/2, FRR 1/2.
  scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
  assert metrics.auc(scores, labels) == 0.75
  assert metrics.eer(scores, labels) == (0.5, 0.4)
  assert metrics.tpr_at_fpr(scores, labels) == 0.5
  assert metrics.far_frr(scores, labels, 0.35) == (0.5, 0.0)
  assert metrics.hter(scores, labels, 0.8) == 0.25


def test_hand_computed_separated():
  scores, labels = [0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]
  assert metrics.auc(scores, labels) == 1.0
  assert metrics.eer(scores, labels) == (0.0, 0.8)
  assert metrics.tpr_at_fpr(scores, labels) == 1.0


def test_hand_computed_inverted():
  # |FAR - FRR| is 0 only at t = 0.8, where both are 1.
  scores, labels = [0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]
  assert metrics.auc(scores, labels) == 0.0
  assert metrics.eer(scores, labels) == (1.0, 0.8)
  assert metrics.tpr_at_fpr(scores, labels) == 0.0


def test_eer_tie_goes_to_lower_threshold():
  # t = 0.5: FAR 1, FRR 0; t = inf: FAR 0, FRR 1. Same gap, same mean.
  assert metrics.eer([0.5] * 4, [0, 0, 1, 1]) == (0.5, 0.5)


def test_eer_tie_goes_to_smaller_mean_before_lower_threshold():
  # Lives 0.2, 0.5, 0.8; spoof 0.5.
  # t = 0.5: FAR 1, FRR 1/3 -> gap 2/3, mean 2/3.
  # t = 0.8: FAR 0, FRR 2/3 -> gap 2/3, mean 1/3 (wins).
  # In floats 1 - 1/3 != 2/3, so this also checks exact tie handling.
  value, threshold = metrics.eer([0.2, 0.5, 0.8, 0.5], [1, 1, 1, 0])
  assert threshold == 0.8
  assert value == pytest.approx(1 / 3)


def test_inverted_pair_and_inf_threshold():
  # Spoof 0.9, live 0.8. t = 0.8: FAR 1, FRR 0; t = 0.9: FAR 1, FRR 1
  # (gap 0, wins); t = inf: FAR 0, FRR 1.
  assert metrics.eer([0.9, 0.8], [0, 1]) == (1.0, 0.9)
  # One live, one spoof, same score: 0.5 and inf tie on gap and mean.
  assert metrics.eer([0.5, 0.5], [0, 1]) == (0.5, 0.5)
  # An infinite threshold rejects every finite score.
  assert metrics.far_frr([0.1, 0.2], [1, 0], INF) == (0.0, 1.0)
  s = metrics.summary([0.1, 0.2], [1, 0], threshold=INF)
  assert s['threshold'] == INF and s['hter'] == 0.5
  # Infinite scores are ordinary values.
  assert metrics.eer([-INF, INF], [0, 1]) == (0.0, INF)


def test_summary_keys_and_types():
  scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
  s = metrics.summary(jnp.asarray(scores), jnp.asarray(labels))
  assert set(s) == {'hter', 'auc', 'eer', 'threshold', 'tpr_at_fpr_1pct'}
  assert all(type(v) is float for v in s.values())
  assert s == {'hter': 0.5, 'auc': 0.75, 'eer': 0.5,
               'threshold': pytest.approx(0.4), 'tpr_at_fpr_1pct': 0.5}
  # A given threshold is used for the HTER; the EER stays the data's own.
  s = metrics.summary(scores, labels, threshold=0.8)
  assert s['hter'] == 0.25 and s['eer'] == 0.5 and s['threshold'] == 0.8


def test_accepts_jax_and_bool_inputs():
  scores = jnp.asarray([0.1, 0.4, 0.35, 0.8], jnp.float32)
  labels = jnp.asarray([False, False, True, True])
  assert metrics.auc(scores, labels) == 0.75
  assert isinstance(metrics.eer(scores, labels)[1], float)


# -----------------------------------------------------------------------------
# Errors.
# -----------------------------------------------------------------------------


@pytest.mark.parametrize('fn', [
    metrics.auc,
    metrics.eer,
    metrics.tpr_at_fpr,
    lambda s, y: metrics.hter(s, y, 0.5),
    lambda s, y: metrics.far_frr(s, y, 0.5),
    metrics.summary,
])
@pytest.mark.parametrize('scores, labels, match', [
    ([0.1, 0.2], [0, 1, 1], 'length mismatch'),
    ([], [], 'empty'),
    ([0.1, 0.2], [0, 2], r'0 \(spoof\) or 1 \(live\)'),
    ([0.1, 0.2], [0.0, 0.5], r'0 \(spoof\) or 1 \(live\)'),
    ([0.1, 0.2], [1, 1], r'no spoof samples \(label 0\)'),
    ([0.1, 0.2], [0, 0], r'no live samples \(label 1\)'),
    ([0.1, float('nan')], [0, 1], 'NaN'),
    ([[0.1, 0.2]], [0, 1], '1-D'),
])
def test_errors(fn, scores, labels, match):
  with pytest.raises(ValueError, match=match):
    fn(scores, labels)


def test_nan_threshold_and_bad_fpr():
  with pytest.raises(ValueError, match='threshold is NaN'):
    metrics.hter([0.1, 0.2], [0, 1], float('nan'))
  with pytest.raises(ValueError, match='fpr must be in'):
    metrics.tpr_at_fpr([0.1, 0.2], [0, 1], 1.5)


# -----------------------------------------------------------------------------
# APCER / BPCER / ACER.
# -----------------------------------------------------------------------------


@pytest.mark.parametrize('seed', range(10))
def test_apcer_bpcer_acer_matches_loop(seed):
  rng = np.random.default_rng(seed)
  n = 80
  labels = rng.integers(0, 2, n)
  labels[:2] = [0, 1]
  attacks = np.where(labels == 1, 'live',
                     rng.choice(['print', 'replay', 'mask'], n))
  scores = np.round(rng.uniform(size=n), 1)
  t = 0.5
  out = metrics.apcer_bpcer_acer(scores, labels, attacks, t)

  accepted, total = collections.Counter(), collections.Counter()
  for s, y, a in zip(scores, labels, attacks):
    if y == 0:
      total[str(a)] += 1
      accepted[str(a)] += s >= t
  ref = {a: accepted[a] / total[a] for a in total}
  lives = [s for s, y in zip(scores, labels) if y == 1]
  bpcer = sum(s < t for s in lives) / len(lives)

  assert out['apcer_per_type'] == pytest.approx(ref)
  assert out['apcer'] == pytest.approx(max(ref.values()))
  assert ref[out['worst_attack_type']] == out['apcer']
  assert out['bpcer'] == pytest.approx(bpcer)
  assert out['acer'] == pytest.approx((max(ref.values()) + bpcer) / 2)


def test_apcer_bytes_attack_types_and_errors():
  out = metrics.apcer_bpcer_acer([0.9, 0.1, 0.8], [0, 0, 1],
                                 np.array([b'print', b'replay', b'']), 0.5)
  assert out['apcer_per_type'] == {'print': 1.0, 'replay': 0.0}
  assert out['worst_attack_type'] == 'print' and out['acer'] == 0.5
  with pytest.raises(ValueError, match='length mismatch'):
    metrics.apcer_bpcer_acer([0.9, 0.1], [0, 1], ['a'], 0.5)


# -----------------------------------------------------------------------------
# Video-level aggregation.
# -----------------------------------------------------------------------------


@pytest.mark.parametrize('seed', range(5))
def test_video_level_matches_dict_loop(seed):
  rng = np.random.default_rng(seed)
  n_videos, n = 15, 200
  video_label = rng.integers(0, 2, n_videos)
  video_type = np.where(video_label == 1, 'live',
                        rng.choice(['print', 'replay'], n_videos))
  frame_video = rng.integers(0, n_videos, n)
  ids = np.array([f'dir/v{v:02d}.avi' for v in frame_video])
  scores = rng.uniform(size=n)

  out = metrics.video_level(scores, ids, video_label[frame_video],
                            video_type[frame_video])

  frames = collections.defaultdict(list)
  for vid, s in zip(ids, scores):
    frames[str(vid)].append(s)
  expected_ids = sorted(frames)
  assert out.video_ids.tolist() == expected_ids
  np.testing.assert_allclose(
      out.scores, [np.mean(frames[v]) for v in expected_ids], rtol=1e-12)
  index = {f'dir/v{v:02d}.avi': v for v in range(n_videos)}
  assert out.labels.tolist() == [video_label[index[v]] for v in expected_ids]
  assert out.attack_types.tolist() == [
      video_type[index[v]] for v in expected_ids]


def test_video_level_is_order_independent_and_optional_types():
  scores = np.array([0.2, 0.4, 0.9, 0.7])
  ids = np.array([3, 1, 3, 1])
  labels = np.array([0, 1, 0, 1])
  out = metrics.video_level(scores, ids, labels)
  perm = [2, 0, 3, 1]
  out2 = metrics.video_level(scores[perm], ids[perm], labels[perm])
  assert out.video_ids.tolist() == [1, 3] == out2.video_ids.tolist()
  np.testing.assert_allclose(out.scores, [0.55, 0.55])
  np.testing.assert_allclose(out.scores, out2.scores)
  assert out.labels.tolist() == [1, 0]
  assert out.attack_types is None


def test_video_level_errors():
  with pytest.raises(ValueError, match='disagree on the label'):
    metrics.video_level([0.1, 0.2], ['a', 'a'], [0, 1])
  with pytest.raises(ValueError, match='disagree on the attack type'):
    metrics.video_level([0.1, 0.2], ['a', 'a'], [0, 0], ['print', 'replay'])
  with pytest.raises(ValueError, match='length mismatch'):
    metrics.video_level([0.1, 0.2], ['a'], [0, 0])
  with pytest.raises(ValueError, match='NaN'):
    metrics.video_level([math.nan], ['a'], [0])
