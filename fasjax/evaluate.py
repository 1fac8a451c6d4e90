"""Evaluation: video-level scores, the protocol and honest numbers, model choice.

Every evaluation scores the target (its train+test videos) and the sources'
held-out dev videos. Two numbers come out of a run, always labelled:
- `protocol` (what the field's tables do): the checkpoint with the lowest
  target HTER at the target's own EER threshold (ties: higher AUC, then the
  earlier step) and that threshold. Optimistic, but comparable with the paper.
- `honest`: the checkpoint with the lowest EER on the pooled source dev videos
  (ties: the earlier step) and the dev EER threshold, applied to the target.
Video score = mean P(live) of its frames (docs/design.md §3). Thresholds that are
+inf (reject everything) are written to JSON as the string "inf".
"""

import functools
import math
from typing import Any, Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from fasjax import meta
from fasjax import metrics

PyTree = Any
Batches = Callable[[], Iterator[dict[str, np.ndarray]]]


def predict_step(params: PyTree, batch_stats: PyTree, images_BxSxSx6: jnp.ndarray,
                 *, nets: meta.Networks) -> dict[str, jnp.ndarray]:
  """Eval-mode forward: P(live) [B], depth [B,h,w] and parsing logits."""
  out = nets.net.apply({'params': params['net'],
                        'batch_stats': batch_stats['net']},
                       images_BxSxSx6, train=False)
  embedding, logits = nets.meta.apply({'params': params['meta'],
                                       'batch_stats': batch_stats['meta']},
                                      out['meta_input'], train=False)
  result = {'p_live': jax.nn.sigmoid(logits), 'depth': out['depth'],
            'embedding': embedding}
  if 'parsing' in out:
    result['parsing'] = out['parsing']
  return result


def make_predict_fn(nets: meta.Networks) -> Callable[..., dict[str, jnp.ndarray]]:
  """The jitted predict step for these networks."""
  return jax.jit(functools.partial(predict_step, nets=nets))


def score_frames(predict_fn: Callable[..., Any], params: PyTree,
                 batch_stats: PyTree, batches: Iterable[dict[str, np.ndarray]],
                 prefix: str = '') -> dict[str, np.ndarray]:
  """Frame-level P(live), labels, video ids (with `prefix`) and attack types."""
  parts: dict[str, list[np.ndarray]] = {'scores': [], 'labels': [],
                                        'video_ids': [], 'attack_types': []}
  for batch in batches:
    keep = np.asarray(batch['mask'], bool)
    p_live = np.asarray(predict_fn(params, batch_stats, batch['image'])['p_live'])
    parts['scores'].append(p_live[keep].astype(np.float64))
    parts['labels'].append(np.asarray(batch['label'])[keep])
    parts['video_ids'].append(np.asarray(
        [prefix + str(v) for v in np.asarray(batch['video_id'])[keep]]))
    parts['attack_types'].append(np.asarray(
        [str(a) for a in np.asarray(batch['attack_type'])[keep]]))
  if not parts['scores']:
    raise ValueError('evaluation data is empty')
  return {k: np.concatenate(v) for k, v in parts.items()}


def score_videos(predict_fn: Callable[..., Any], params: PyTree,
                 batch_stats: PyTree, sets: dict[str, Batches]
                 ) -> metrics.VideoScores:
  """Video-level scores over several named sets (ids prefixed 'name:')."""
  frames = [score_frames(predict_fn, params, batch_stats, make(), f'{name}:')
            for name, make in sorted(sets.items())]
  joined = {k: np.concatenate([f[k] for f in frames]) for k in frames[0]}
  return metrics.video_level(joined['scores'], joined['video_ids'],
                             joined['labels'], joined['attack_types'])


def evaluate(predict_fn: Callable[..., Any], params: PyTree,
             batch_stats: PyTree, step: int, target: dict[str, Batches],
             dev: dict[str, Batches]) -> dict[str, Any]:
  """One history entry: target (protocol) and honest numbers at `step`."""
  return evaluate_with_scores(predict_fn, params, batch_stats, step, target,
                              dev)[0]


def evaluate_with_scores(predict_fn: Callable[..., Any], params: PyTree,
                         batch_stats: PyTree, step: int,
                         target: dict[str, Batches], dev: dict[str, Batches]
                         ) -> tuple[dict[str, Any], metrics.VideoScores]:
  """`evaluate`'s entry and the target's per-video scores it came from."""
  target_videos = score_videos(predict_fn, params, batch_stats, target)
  dev_videos = score_videos(predict_fn, params, batch_stats, dev)
  dev_eer, dev_threshold = metrics.eer(dev_videos.scores, dev_videos.labels)
  return {
      'step': int(step),
      'protocol': metrics.summary(target_videos.scores, target_videos.labels),
      'honest': metrics.summary(target_videos.scores, target_videos.labels,
                                threshold=dev_threshold),
      'dev': {'eer': dev_eer, 'threshold': dev_threshold,
              'auc': metrics.auc(dev_videos.scores, dev_videos.labels)},
  }, target_videos


def video_scores_json(videos: metrics.VideoScores) -> dict[str, list[Any]]:
  """Per-video target scores as written to target_scores_step<N>.json.

  Studies resample target videos from these (`fasjax.study_stats`).
  """
  return {'video_ids': [str(v) for v in videos.video_ids],
          'labels': [int(l) for l in videos.labels],
          'scores': [float(x) for x in videos.scores]}


def select(history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
  """Chooses the protocol and honest checkpoints from evaluation history.

  protocol: lowest target HTER; ties go to the higher target AUC, then to
  the earliest step. honest: lowest pooled source-dev EER; ties go to the
  earliest step (on a small dev set the EER takes few distinct values, so
  ties are common: the earliest step of the best dev EER is chosen, even if
  later tied steps score better on the target, which the rule never sees).
  """
  if not history:
    raise ValueError('no evaluation has been run')
  protocol = min(history, key=lambda e: (e['protocol']['hter'],
                                         -e['protocol']['auc'], e['step']))
  honest = min(history, key=lambda e: (e['dev']['eer'], e['step']))
  return {
      'protocol': {**protocol['protocol'], 'step': protocol['step']},
      'honest': {**honest['honest'], 'step': honest['step'],
                 'dev_eer': honest['dev']['eer']},
  }


def results(history: list[dict[str, Any]], target: str,
            final_step: int) -> dict[str, Any]:
  """The results.json structure: target, final step, protocol and honest."""
  return to_json_safe({'target': target, 'step': int(final_step),
                       **select(history)})


def to_json_safe(tree: Any) -> Any:
  """Replaces non-finite floats by the strings 'inf', '-inf' and 'nan'."""
  if isinstance(tree, dict):
    return {k: to_json_safe(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [to_json_safe(v) for v in tree]
  if isinstance(tree, float) and not math.isfinite(tree):
    return str(tree)
  return tree
