"""Face anti-spoofing evaluation metrics (numpy, float64).

Conventions, shared by every function here and by docs/design.md §3:

* ``labels``: 1 = live (bona fide), 0 = spoof. Booleans and floats equal to
  0/1 are accepted; anything else is a ``ValueError``.
* ``scores``: higher = more live (e.g. P(live)). A sample is *accepted as
  live* iff ``score >= threshold``.
* FAR = share of spoofs accepted (score >= threshold); FRR = share of lives
  rejected (score < threshold). HTER = (FAR + FRR) / 2. In ISO/IEC 30107-3
  terms APCER is FAR per attack type and BPCER is FRR.
* Candidate thresholds (EER, TPR@FPR) are the distinct scores plus ``+inf``
  (the threshold that rejects everything), so a threshold may be
  ``float('inf')``. It is kept as such: ``hter(s, y, float('inf'))`` is
  well defined (FAR 0, FRR 1 for finite scores).
* Inputs may be numpy or jax arrays of shape ``[N]``; results are plain
  Python floats (or dicts / dataclasses of them).

Decisions:

* Everything is sort-based, O(n log n): ``np.unique`` groups equal scores and
  cumulative counts give FAR/FRR at every candidate at once.
* The EER tie-breaks (smallest |FAR - FRR|, then smallest (FAR + FRR) / 2,
  then lowest threshold) compare exact integer numerators, not floats: with
  float division, e.g. |1 - 1/3| and |0 - 2/3| differ in the last bit and
  the tie-break would depend on rounding.
* ``auc`` is the Mann-Whitney statistic (ties count one half), equal to
  ``sklearn.metrics.roc_auc_score`` with live as the positive class.
* ``+inf``/``-inf`` scores are allowed (they sort normally); NaN is rejected.
"""

import dataclasses
from typing import Any, NamedTuple

import numpy as np

ArrayLike = Any  # numpy or jax array, or a sequence.


# -----------------------------------------------------------------------------
# Input validation.
# -----------------------------------------------------------------------------


def _as_scores(scores: ArrayLike) -> np.ndarray:
  """Scores as a float64 vector; rejects empty input, bad shape and NaN."""
  scores = np.asarray(scores, dtype=np.float64)
  if scores.ndim != 1:
    raise ValueError(f'scores must be 1-D, got shape {scores.shape}')
  if scores.size == 0:
    raise ValueError('scores is empty')
  if np.isnan(scores).any():
    n_nan = int(np.isnan(scores).sum())
    raise ValueError(f'scores contain {n_nan} NaN value(s)')
  return scores


def _as_labels(labels: ArrayLike, n: int) -> np.ndarray:
  """Labels as an int64 0/1 vector of length n."""
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f'labels must be 1-D, got shape {labels.shape}')
  if labels.shape[0] != n:
    raise ValueError(
        f'length mismatch: {n} scores but {labels.shape[0]} labels')
  if not np.issubdtype(labels.dtype, np.number) and labels.dtype != bool:
    raise ValueError(f'labels must be numeric 0/1, got dtype {labels.dtype}')
  bad = ~np.isin(labels, (0, 1))
  if bad.any():
    values = np.unique(labels[bad])[:5].tolist()
    raise ValueError(f'labels must be 0 (spoof) or 1 (live), got {values}')
  return labels.astype(np.int64)


def _check(scores: ArrayLike, labels: ArrayLike,
           need: tuple[int, ...] = (0, 1)) -> tuple[np.ndarray, np.ndarray]:
  """Validated (scores, labels); `need` lists classes that must be present."""
  scores = _as_scores(scores)
  labels = _as_labels(labels, scores.shape[0])
  n_live = int(labels.sum())
  if 1 in need and n_live == 0:
    raise ValueError('no live samples (label 1): the metric needs both '
                     'classes')
  if 0 in need and n_live == labels.shape[0]:
    raise ValueError('no spoof samples (label 0): the metric needs both '
                     'classes')
  return scores, labels


def _check_threshold(threshold: float) -> float:
  """The threshold as a float; NaN is rejected, +-inf allowed."""
  threshold = float(threshold)
  if np.isnan(threshold):
    raise ValueError('threshold is NaN')
  return threshold


# -----------------------------------------------------------------------------
# The shared sort-based curve.
# -----------------------------------------------------------------------------


class _Curve(NamedTuple):
  """Counts at each candidate threshold (ascending, last one is +inf)."""
  thresholds: np.ndarray  # [M] float64, distinct, ascending, ends in +inf.
  live_at: np.ndarray  # [M] int64, lives whose score equals the threshold.
  spoof_at: np.ndarray  # [M] int64.
  live_below: np.ndarray  # [M] int64, lives with score < threshold.
  spoof_below: np.ndarray  # [M] int64.
  n_live: int
  n_spoof: int

  @property
  def spoof_accepted(self) -> np.ndarray:
    return self.n_spoof - self.spoof_below

  @property
  def far(self) -> np.ndarray:
    return self.spoof_accepted / self.n_spoof

  @property
  def frr(self) -> np.ndarray:
    return self.live_below / self.n_live

  @property
  def tpr(self) -> np.ndarray:
    return (self.n_live - self.live_below) / self.n_live


def _curve(scores: np.ndarray, labels: np.ndarray) -> _Curve:
  """Per-candidate counts from one sort of the scores."""
  thresholds, inverse = np.unique(scores, return_inverse=True)
  if thresholds[-1] != np.inf:
    thresholds = np.append(thresholds, np.inf)
  m = thresholds.shape[0]
  live_at = np.bincount(inverse[labels == 1], minlength=m)
  spoof_at = np.bincount(inverse[labels == 0], minlength=m)
  # Exclusive cumulative sums: how many are strictly below each candidate.
  live_below = np.concatenate([[0], np.cumsum(live_at)[:-1]])
  spoof_below = np.concatenate([[0], np.cumsum(spoof_at)[:-1]])
  return _Curve(thresholds, live_at.astype(np.int64),
                spoof_at.astype(np.int64), live_below.astype(np.int64),
                spoof_below.astype(np.int64), int(live_at.sum()),
                int(spoof_at.sum()))


# -----------------------------------------------------------------------------
# Public metrics.
# -----------------------------------------------------------------------------


def auc(scores: ArrayLike, labels: ArrayLike) -> float:
  """ROC AUC with live as positive class; ties count one half."""
  c = _curve(*_check(scores, labels))
  # 2 * (pairs live > spoof) + (pairs live == spoof), exact in int64.
  twice = 2 * np.sum(c.live_at * c.spoof_below) + np.sum(c.live_at *
                                                         c.spoof_at)
  return float(twice / (2.0 * c.n_live * c.n_spoof))


def far_frr(scores: ArrayLike, labels: ArrayLike,
            threshold: float) -> tuple[float, float]:
  """(FAR, FRR) when samples with score >= threshold are accepted as live."""
  scores, labels = _check(scores, labels)
  threshold = _check_threshold(threshold)
  accepted = scores >= threshold
  far = np.mean(accepted[labels == 0])
  frr = np.mean(~accepted[labels == 1])
  return float(far), float(frr)


def hter(scores: ArrayLike, labels: ArrayLike, threshold: float) -> float:
  """Half total error rate (FAR + FRR) / 2 at the given threshold."""
  far, frr = far_frr(scores, labels, threshold)
  return (far + frr) / 2.0


def eer(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
  """(EER, threshold) at the candidate where FAR and FRR are closest."""
  c = _curve(*_check(scores, labels))
  # FAR - FRR and FAR + FRR scaled by n_live * n_spoof: exact integers.
  far_num = c.spoof_accepted * c.n_live
  frr_num = c.live_below * c.n_spoof
  gap = np.abs(far_num - frr_num)
  total = far_num + frr_num
  # lexsort: last key is primary; thresholds are ascending, so index breaks
  # the final tie towards the lower threshold.
  best = np.lexsort((np.arange(gap.shape[0]), total, gap))[0]
  value = (c.far[best] + c.frr[best]) / 2.0
  return float(value), float(c.thresholds[best])


def tpr_at_fpr(scores: ArrayLike, labels: ArrayLike,
               fpr: float = 0.01) -> float:
  """Largest TPR (live accepted) over candidate thresholds with FPR <= fpr."""
  if not 0.0 <= fpr <= 1.0:
    raise ValueError(f'fpr must be in [0, 1], got {fpr}')
  c = _curve(*_check(scores, labels))
  # The +inf candidate always qualifies (FPR 0), so the selection is never
  # empty.
  return float(np.max(c.tpr[c.far <= fpr]))


def _py(value: Any) -> Any:
  """A hashable plain-Python key for an attack type (bytes are decoded)."""
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, bytes):
    value = value.decode('utf-8')
  return value


def apcer_bpcer_acer(scores: ArrayLike, labels: ArrayLike,
                     attack_types: ArrayLike,
                     threshold: float) -> dict[str, Any]:
  """ISO/IEC 30107-3 APCER per attack type, worst APCER, BPCER and ACER.

  `attack_types` has one entry per sample; entries of live samples are
  ignored. Returns a dict with keys `apcer_per_type` (attack type -> APCER,
  types as plain Python values, bytes decoded to str), `apcer` (the worst,
  i.e. maximum, APCER), `worst_attack_type`, `bpcer` and
  `acer` = (apcer + bpcer) / 2.
  """
  scores, labels = _check(scores, labels)
  threshold = _check_threshold(threshold)
  attack_types = np.asarray(attack_types)
  if attack_types.shape != scores.shape:
    raise ValueError(f'length mismatch: {scores.shape[0]} scores but '
                     f'attack_types has shape {attack_types.shape}')
  accepted = scores >= threshold
  spoof = labels == 0
  types, inverse = np.unique(attack_types[spoof], return_inverse=True)
  accepted_per_type = np.bincount(
      inverse, weights=accepted[spoof].astype(np.float64),
      minlength=types.shape[0])
  count_per_type = np.bincount(inverse, minlength=types.shape[0])
  apcers = accepted_per_type / count_per_type
  per_type = {_py(t): float(a) for t, a in zip(types, apcers)}
  # Ties go to the first type in sorted order, for determinism.
  worst = int(np.argmax(apcers))
  bpcer = float(np.mean(~accepted[labels == 1]))
  apcer = float(apcers[worst])
  return {
      'apcer_per_type': per_type,
      'apcer': apcer,
      'worst_attack_type': _py(types[worst]),
      'bpcer': bpcer,
      'acer': (apcer + bpcer) / 2.0,
  }


@dataclasses.dataclass(frozen=True)
class VideoScores:
  """Per-video scores, sorted by video id; `attack_types` may be None."""
  video_ids: np.ndarray
  scores: np.ndarray
  labels: np.ndarray
  attack_types: np.ndarray | None


def _group_consistent(codes: np.ndarray, order: np.ndarray,
                      starts: np.ndarray) -> np.ndarray:
  """Per group (rows `order` split at `starts`): are all codes equal?"""
  codes = codes[order]
  return (np.minimum.reduceat(codes, starts) ==
          np.maximum.reduceat(codes, starts))


def video_level(frame_scores: ArrayLike, video_ids: ArrayLike,
                labels: ArrayLike,
                attack_types: ArrayLike | None = None) -> VideoScores:
  """Mean frame score per video; per-video label and attack type.

  Videos are sorted by id (np.unique order) so results are deterministic
  whatever the frame order. All frames of a video must share one label
  (and one attack type, if given), otherwise ValueError.
  """
  scores = _as_scores(frame_scores)
  labels = _as_labels(labels, scores.shape[0])
  video_ids = np.asarray(video_ids)
  if video_ids.shape != scores.shape:
    raise ValueError(f'length mismatch: {scores.shape[0]} frame scores but '
                     f'video_ids has shape {video_ids.shape}')
  ids, inverse, counts = np.unique(video_ids, return_inverse=True,
                                   return_counts=True)
  sums = np.bincount(inverse, weights=scores, minlength=ids.shape[0])
  order = np.argsort(inverse, kind='stable')
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

  bad = ~_group_consistent(labels, order, starts)
  if bad.any():
    raise ValueError('frames of one video disagree on the label: '
                     f'{ids[bad][:5].tolist()}')
  video_labels = labels[order][starts]

  video_types = None
  if attack_types is not None:
    attack_types = np.asarray(attack_types)
    if attack_types.shape != scores.shape:
      raise ValueError(f'length mismatch: {scores.shape[0]} frame scores '
                       f'but attack_types has shape {attack_types.shape}')
    _, type_codes = np.unique(attack_types, return_inverse=True)
    bad = ~_group_consistent(type_codes, order, starts)
    if bad.any():
      raise ValueError('frames of one video disagree on the attack type: '
                       f'{ids[bad][:5].tolist()}')
    video_types = attack_types[order][starts]

  return VideoScores(video_ids=ids, scores=sums / counts,
                     labels=video_labels, attack_types=video_types)


def summary(scores: ArrayLike, labels: ArrayLike,
            threshold: float | None = None) -> dict[str, float]:
  """HTER, AUC, EER, threshold and TPR@FPR=1% as plain floats.

  With threshold=None the HTER is taken at this data's own EER threshold
  (the "protocol" number of docs/design.md §3); pass a threshold chosen on
  held-out data for the "honest" number. `threshold` in the result is the
  one used and may be float('inf').
  """
  scores, labels = _check(scores, labels)
  eer_value, eer_threshold = eer(scores, labels)
  if threshold is None:
    threshold = eer_threshold
  threshold = _check_threshold(threshold)
  return {
      'hter': hter(scores, labels, threshold),
      'auc': auc(scores, labels),
      'eer': eer_value,
      'threshold': threshold,
      'tpr_at_fpr_1pct': tpr_at_fpr(scores, labels, 0.01),
  }
