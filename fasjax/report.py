"""A run's report: WORKDIR/report/ with PNG figures, index.html and report.json.

  python -m fasjax.report --config=configs/ocm_to_i.py:synthetic --workdir=W

Uses one kept checkpoint (default: the one the honest rule chose) and its
source-dev EER threshold (the honest threshold). Figures: ROC curves, score
histograms of live vs each attack type, t-SNE of the meta learner's
embeddings (source vs target, live vs spoof; the paper's Fig. 7), Grad-CAM
on live and spoof faces (Fig. 6), parsing outputs beside their labels
(Fig. 5/8), predicted vs target depth, APCER per attack type. Numbers: the
protocol and honest HTER/AUC/EER/TPR@FPR=1%, APCER per attack type and the
worst, BPCER and ACER at the honest threshold, BPCER at APCER = 1/5/10%.
All scores are video level except the per-frame t-SNE and maps.
"""

import html
import json
import os
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use('Agg')  # Files only; never needs a display.
# pylint: disable=g-import-not-at-top,wrong-import-position
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
from sklearn import manifold
from sklearn import metrics as sk_metrics

from fasjax import checkpoint_eval
from fasjax import data
from fasjax import evaluate
from fasjax import meta
from fasjax import metrics
from fasjax import provenance
from fasjax import sharding

PyTree = Any
APCER_TARGETS = (0.01, 0.05, 0.10)
EXAMPLES_PER_CLASS = 4
MAX_TSNE_POINTS = 1000
FIGURES = ('roc', 'score_histograms', 'apcer', 'tsne', 'gradcam', 'parsing',
           'depth')


# -----------------------------------------------------------------------------
# Numbers.
# -----------------------------------------------------------------------------


def bpcer_at_apcer(scores: np.ndarray, labels: np.ndarray,
                   attack_types: np.ndarray, apcer: float) -> float:
  """Lowest BPCER over thresholds whose worst-type APCER is <= `apcer`."""
  candidates = np.append(np.unique(scores), np.inf)
  best = 1.0
  for threshold in candidates:
    rates = metrics.apcer_bpcer_acer(scores, labels, attack_types, threshold)
    if rates['apcer'] <= apcer:
      best = min(best, rates['bpcer'])
  return float(best)


def report_numbers(target: metrics.VideoScores,
                   dev: metrics.VideoScores) -> dict[str, Any]:
  """Protocol and honest numbers, ISO rates at the honest threshold."""
  _, honest_threshold = metrics.eer(dev.scores, dev.labels)
  iso = metrics.apcer_bpcer_acer(target.scores, target.labels,
                                 target.attack_types, honest_threshold)
  return {
      'protocol': metrics.summary(target.scores, target.labels),
      'honest': metrics.summary(target.scores, target.labels,
                                threshold=honest_threshold),
      'iso_honest': iso,
      'bpcer_at_apcer': {
          f'{round(100 * a)}pct': bpcer_at_apcer(
              target.scores, target.labels, target.attack_types, a)
          for a in APCER_TARGETS},
      'n_videos': {'target_live': int(target.labels.sum()),
                   'target_spoof': int((target.labels == 0).sum()),
                   'dev': int(dev.labels.shape[0])},
  }


# -----------------------------------------------------------------------------
# Model outputs.
# -----------------------------------------------------------------------------


def gradcam(params: PyTree, batch_stats: PyTree, images: jnp.ndarray,
            labels: jnp.ndarray, *, nets: meta.Networks) -> jnp.ndarray:
  """Grad-CAM [B,S,S] in [0,1] on the meta learner's input feature map.

  The class score is the logit for live faces and minus the logit for
  spoofs, so each map shows the evidence for the face's true class.
  """
  out = nets.net.apply({'params': params['net'],
                        'batch_stats': batch_stats['net']}, images,
                       train=False)

  def class_score(features):
    _, logits = nets.meta.apply({'params': params['meta'],
                                 'batch_stats': batch_stats['meta']},
                                features, train=False)
    return jnp.sum(jnp.where(labels == 1, logits, -logits))

  features = out['meta_input']
  grads = jax.grad(class_score)(features)
  weights = jnp.mean(grads, axis=(1, 2), keepdims=True)
  cam = jax.nn.relu(jnp.sum(weights * features, axis=-1))
  cam = cam / (jnp.max(cam, axis=(1, 2), keepdims=True) + 1e-8)
  size = images.shape[1]
  return jax.image.resize(cam, (cam.shape[0], size, size), 'bilinear')


def collect(predict_fn: Callable[..., Any], params: PyTree,
            batch_stats: PyTree, sets: dict[str, Callable[[], Iterable[Any]]],
            keep_examples: bool) -> dict[str, np.ndarray]:
  """Per frame: scores, labels, ids, attack types, domain, embedding.

  With `keep_examples`, also the images, targets and outputs of the first
  EXAMPLES_PER_CLASS live and spoof frames (not all: full-size sets would
  not fit in memory).
  """
  parts: dict[str, list[np.ndarray]] = {}
  kept = {0: 0, 1: 0}

  def add(key, value):
    parts.setdefault(key, []).append(np.asarray(value))

  for domain, make in sorted(sets.items()):
    for batch in make():
      keep = np.asarray(batch['mask'], bool)
      out = jax.device_get(predict_fn(params, batch_stats, batch['image']))
      labels = np.asarray(batch['label'])[keep]
      add('scores', np.asarray(out['p_live'])[keep].astype(np.float64))
      add('labels', labels)
      add('video_ids', [f'{domain}:{v}' for v in
                        np.asarray(batch['video_id'])[keep]])
      add('attack_types', [str(a) for a in
                           np.asarray(batch['attack_type'])[keep]])
      add('domains', [domain] * int(keep.sum()))
      add('embeddings', np.asarray(out['embedding'])[keep])
      if not keep_examples:
        continue
      rows = []
      for i in np.flatnonzero(keep):
        label = int(batch['label'][i])
        if kept[label] < EXAMPLES_PER_CLASS:
          kept[label] += 1
          rows.append(i)
      if rows:
        for key in ('image', 'depth', 'parsing', 'label'):
          add(f'ex_{key}', np.asarray(batch[key])[rows])
        add('ex_depth_pred', np.asarray(out['depth'])[rows])
        if 'parsing' in out:
          add('ex_parsing_pred', np.argmax(np.asarray(out['parsing'])[rows],
                                           axis=-1))
  return {k: np.concatenate(v) for k, v in parts.items()}


def to_videos(frames: dict[str, np.ndarray]) -> metrics.VideoScores:
  """Video-level scores of collected frames."""
  return metrics.video_level(frames['scores'], frames['video_ids'],
                             frames['labels'], frames['attack_types'])


# -----------------------------------------------------------------------------
# Figures.
# -----------------------------------------------------------------------------


def _save(fig: plt.Figure, path: str) -> None:
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_roc(target: metrics.VideoScores, dev: metrics.VideoScores,
             numbers: dict[str, Any], path: str) -> None:
  """ROC curves of the target and the source dev videos, operating points."""
  fig, ax = plt.subplots(figsize=(5, 5))
  for name, videos in (('target', target), ('source dev', dev)):
    fpr, tpr, _ = sk_metrics.roc_curve(videos.labels, videos.scores)
    area = metrics.auc(videos.scores, videos.labels)
    ax.plot(fpr, tpr, label=f'{name} (AUC {area:.3f})')
  for block, marker in (('protocol', 'o'), ('honest', 's')):
    far, frr = metrics.far_frr(target.scores, target.labels,
                               numbers[block]['threshold'])
    ax.plot([far], [1 - frr], marker, label=f'{block} threshold')
  ax.plot([0, 1], [0, 1], 'k:', lw=0.5)
  ax.set(xlabel='FPR (spoof accepted)', ylabel='TPR (live accepted)',
         title='ROC, video level')
  ax.legend(loc='lower right', fontsize=8)
  _save(fig, path)


def plot_histograms(target: metrics.VideoScores, threshold: float,
                    path: str) -> None:
  """Video score histograms: live vs each attack type, honest threshold."""
  fig, ax = plt.subplots(figsize=(6, 4))
  bins = np.linspace(0, 1, 21)
  ax.hist(target.scores[target.labels == 1], bins=bins, alpha=0.6,
          label='live')
  spoof = target.labels == 0
  for attack in np.unique(target.attack_types[spoof]):
    chosen = spoof & (target.attack_types == attack)
    ax.hist(target.scores[chosen], bins=bins, alpha=0.5,
            label=f'spoof: {attack}')
  if np.isfinite(threshold):
    ax.axvline(threshold, color='k', ls='--', label='honest threshold')
  ax.set(xlabel='P(live), video mean', ylabel='videos',
         title='Target scores')
  ax.legend(fontsize=8)
  _save(fig, path)


def plot_apcer(iso: dict[str, Any], path: str) -> None:
  """APCER per attack type at the honest threshold, and the BPCER."""
  names = list(iso['apcer_per_type']) + ['BPCER (live)']
  values = list(iso['apcer_per_type'].values()) + [iso['bpcer']]
  fig, ax = plt.subplots(figsize=(6, 3.5))
  ax.bar(range(len(values)), values,
         color=['tab:red'] * (len(values) - 1) + ['tab:blue'])
  ax.set_xticks(range(len(values)), names, rotation=30, ha='right')
  ax.set(ylim=(0, 1), ylabel='error rate',
         title='APCER per attack type at the honest threshold')
  _save(fig, path)


def tsne_points(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
  """2-D t-SNE of embeddings, perplexity capped for small sets."""
  perplexity = float(max(2.0, min(30.0, (embeddings.shape[0] - 1) / 3.0)))
  return manifold.TSNE(n_components=2, perplexity=perplexity, init='pca',
                       random_state=seed).fit_transform(
                           embeddings.astype(np.float64))


def plot_tsne(points: np.ndarray, domains: np.ndarray, labels: np.ndarray,
              target: str, path: str) -> None:
  """t-SNE: colour = domain (sources vs the target), marker = live/spoof."""
  fig, ax = plt.subplots(figsize=(6, 5))
  for d in np.unique(domains):
    for label, marker, kind in ((1, 'o', 'live'), (0, 'x', 'spoof')):
      chosen = (domains == d) & (labels == label)
      if chosen.any():
        role = 'target' if d == target else 'source'
        ax.scatter(points[chosen, 0], points[chosen, 1], marker=marker, s=18,
                   label=f'{role} {d} {kind}')
  ax.set(title='t-SNE of meta-learner embeddings', xticks=[], yticks=[])
  ax.legend(fontsize=7, loc='best')
  _save(fig, path)


def _rgb(image: np.ndarray) -> np.ndarray:
  return np.clip(image[..., :3], 0.0, 1.0)


def _grid(rows: Sequence[tuple[str, Sequence[np.ndarray], dict[str, Any]]],
          labels: np.ndarray, path: str) -> None:
  """Rows of panels (title, images, imshow kwargs), one column per face."""
  n = len(labels)
  fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n, 1.6 * len(rows)),
                           squeeze=False)
  for r, (title, images, kwargs) in enumerate(rows):
    for c in range(n):
      ax = axes[r, c]
      ax.imshow(images[c], **kwargs)
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title('live' if labels[c] == 1 else 'spoof', fontsize=8)
      if c == 0:
        ax.set_ylabel(title, fontsize=8)
  _save(fig, path)


def plot_gradcam(images: np.ndarray, cams: np.ndarray, labels: np.ndarray,
                 path: str) -> None:
  """Faces and their Grad-CAM maps overlaid."""
  overlays = [0.5 * _rgb(i) + 0.5 * plt.get_cmap('jet')(c)[..., :3]
              for i, c in zip(images, cams)]
  _grid([('face', [_rgb(i) for i in images], {}),
         ('Grad-CAM', overlays, {})], labels, path)


def plot_parsing(images: np.ndarray, target: np.ndarray, predicted: np.ndarray,
                 labels: np.ndarray, path: str) -> None:
  """Faces, parsing labels and the predicted parsing (argmax)."""
  style = {'cmap': 'tab20', 'vmin': 0, 'vmax': 19, 'interpolation': 'nearest'}
  _grid([('face', [_rgb(i) for i in images], {}),
         ('label', list(target), style), ('predicted', list(predicted), style)],
        labels, path)


def plot_depth(images: np.ndarray, target: np.ndarray, predicted: np.ndarray,
               labels: np.ndarray, path: str) -> None:
  """Faces, target depth (zeros for spoofs) and predicted depth."""
  style = {'cmap': 'gray', 'vmin': 0.0, 'vmax': 1.0}
  _grid([('face', [_rgb(i) for i in images], {}),
         ('target depth', list(target), style),
         ('predicted depth', list(predicted), style)], labels, path)


# -----------------------------------------------------------------------------
# index.html.
# -----------------------------------------------------------------------------


def _cell(key: str, value: Any) -> str:
  text = f'{value:.6f}' if isinstance(value, float) else str(value)
  return f'<td id="{html.escape(key)}">{html.escape(text)}</td>'


def flat_numbers(numbers: dict[str, Any]) -> dict[str, Any]:
  """The numbers shown in index.html, keyed by their element id."""
  flat: dict[str, Any] = {}
  for block in ('protocol', 'honest'):
    for k, v in numbers[block].items():
      flat[f'{block}_{k}'] = v
  iso = numbers['iso_honest']
  for attack, value in iso['apcer_per_type'].items():
    flat[f'apcer_{attack}'] = value
  flat['apcer_worst'] = iso['apcer']
  flat['worst_attack_type'] = iso['worst_attack_type']
  flat['bpcer'] = iso['bpcer']
  flat['acer'] = iso['acer']
  for k, v in numbers['bpcer_at_apcer'].items():
    flat[f'bpcer_at_apcer_{k}'] = v
  return flat


def index_html(numbers: dict[str, Any], figures: dict[str, str | None],
               title: str) -> str:
  """The report page: the numbers table, then every figure."""
  rows = ''.join(f'<tr><th>{html.escape(k)}</th>{_cell(k, v)}</tr>\n'
                 for k, v in flat_numbers(numbers).items())
  body = [f'<h1>{html.escape(title)}</h1>',
          '<p>Video level. <em>protocol</em>: threshold at the target\'s own '
          'EER point; <em>honest</em>: threshold from the source dev videos. '
          'APCER (per attack type, worst), BPCER and ACER at the honest '
          'threshold; BPCER at APCER = x uses the worst attack type\'s '
          'APCER.</p>',
          f'<table>\n{rows}</table>']
  for name, file in figures.items():
    body.append(f'<h2>{html.escape(name)}</h2>')
    body.append(f'<img src="{html.escape(file)}" alt="{html.escape(name)}">'
                if file else '<p>Not available for this model (no parsing '
                'decoder).</p>')
  return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
          f'{html.escape(title)}</title></head><body>\n'
          + '\n'.join(body) + '\n</body></html>\n')


# -----------------------------------------------------------------------------
# The report.
# -----------------------------------------------------------------------------


def _subsample(n: int, limit: int, seed: int = 0) -> np.ndarray:
  if n <= limit:
    return np.arange(n)
  return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def write_report(config: ml_collections.ConfigDict, workdir: str,
                 step: int | None = None) -> dict[str, Any]:
  """Writes WORKDIR/report/: figures, index.html, report.json; returns them."""
  mesh = sharding.make_mesh()
  run = checkpoint_eval.restore(config, workdir, step, mesh)
  nets, state, step = run.nets, run.state, run.step
  predict_fn = sharding.make_predict_fn(nets, mesh, gather_all=True)
  target_sets = data.eval_sets(config, [config.data.target],
                               list(config.data.target_splits))
  dev_sets = data.eval_sets(config, list(config.data.dev_domains),
                            list(config.data.dev_splits))
  target = collect(predict_fn, state.params, state.batch_stats, target_sets,
                   keep_examples=True)
  dev = collect(predict_fn, state.params, state.batch_stats, dev_sets,
                keep_examples=False)
  target_videos, dev_videos = to_videos(target), to_videos(dev)
  numbers = report_numbers(target_videos, dev_videos)
  ex_labels = target['ex_label']
  cams = jax.jit(lambda p, b, x, y: gradcam(p, b, x, y, nets=nets))(
      state.params, state.batch_stats, target['ex_image'], ex_labels)
  result = evaluate.to_json_safe({'step': step, 'target': config.data.target,
                                  **numbers})
  # Every process computed (the arrays span all of them); one writes.
  if jax.process_index() != 0:
    return result

  out_dir = os.path.join(workdir, 'report')
  os.makedirs(out_dir, exist_ok=True)
  path = lambda name: os.path.join(out_dir, f'{name}.png')
  plot_roc(target_videos, dev_videos, numbers, path('roc'))
  plot_histograms(target_videos, numbers['honest']['threshold'],
                  path('score_histograms'))
  plot_apcer(numbers['iso_honest'], path('apcer'))

  embeddings = np.concatenate([dev['embeddings'], target['embeddings']])
  domains = np.concatenate([dev['domains'], target['domains']])
  labels = np.concatenate([dev['labels'], target['labels']])
  chosen = _subsample(embeddings.shape[0], MAX_TSNE_POINTS)
  plot_tsne(tsne_points(embeddings[chosen]), domains[chosen], labels[chosen],
            config.data.target, path('tsne'))

  plot_gradcam(target['ex_image'], np.asarray(cams), ex_labels,
               path('gradcam'))
  plot_depth(target['ex_image'], target['ex_depth'], target['ex_depth_pred'],
             ex_labels, path('depth'))
  has_parsing = 'ex_parsing_pred' in target
  if has_parsing:
    plot_parsing(target['ex_image'], target['ex_parsing'],
                 target['ex_parsing_pred'], ex_labels, path('parsing'))

  figures = {name: (f'{name}.png' if name != 'parsing' or has_parsing
                    else None) for name in FIGURES}
  title = (f'{config.protocol} ({config.variant}, seed {config.seed}), '
           f'step {step}')
  with open(os.path.join(out_dir, 'index.html'), 'w') as f:
    f.write(index_html(numbers, figures, title))
  provenance.write_json(os.path.join(out_dir, 'report.json'), result)
  return result


def _cli() -> None:
  """python -m fasjax.report --config=... --workdir=W [--step=N]."""
  # Flags are defined here, not at import, so launch.py can import this
  # module next to its own --config and --workdir flags.
  # pylint: disable=g-import-not-at-top
  from absl import app
  from absl import flags
  from ml_collections import config_flags
  config = config_flags.DEFINE_config_file('config', None, 'Protocol config.',
                                           lock_config=True)
  workdir = flags.DEFINE_string('workdir', None, 'The run directory.')
  step = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the '
                              'honest rule\'s choice).')
  flags.mark_flags_as_required(['config', 'workdir'])

  def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    result = write_report(config.value, workdir.value, step.value)
    print(json.dumps(result, indent=2))

  app.run(main)


if __name__ == '__main__':
  _cli()
