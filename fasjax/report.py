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

The page shows rates as percentages (report.json keeps fractions; every
number cell carries its exact value in `data-value`), the run's metadata
(protocol, variant, seed, the step and why it was chosen, commits, video
counts), and, labelled as such, both the numbers recomputed at the report's
step and results.json's, whose protocol block may be another step's.
`write_report` prints nothing; launch.py and `python -m fasjax.report` print
the page's path.
"""

import html
import json
import os
import sys
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use('Agg')  # Files only; never needs a display.
# pylint: disable=g-import-not-at-top,wrong-import-position
import matplotlib.cm
import matplotlib.colors
import matplotlib.patches
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
from fasjax import workdir_lock

PyTree = Any
APCER_TARGETS = (0.01, 0.05, 0.10)
EXAMPLES_PER_CLASS = 4
MAX_TSNE_POINTS = 1000
FIGURES = ('roc', 'score_histograms', 'apcer', 'tsne', 'gradcam', 'parsing',
           'depth')
# Headings and one-line captions of the figures on the page.
FIGURE_TEXT = {
    'roc': ('ROC curves', 'Video level, target and source dev videos; the '
            'markers are the protocol and honest operating points on the '
            'target.'),
    'score_histograms': ('Score distributions', 'Target videos\' mean '
                         'P(live), one panel per class (live, then each '
                         'attack type); the dashed line is the honest '
                         'threshold.'),
    'apcer': ('Error per attack type', 'APCER of each attack type and the '
              'BPCER of live videos at the honest threshold.'),
    'tsne': ('Embeddings (t-SNE)', 'Meta-learner embeddings of frames: '
             'colour = domain, marker = live or spoof (the paper\'s Fig. 7).'),
    'gradcam': ('Grad-CAM', 'Evidence for each face\'s true class on the meta '
                'learner\'s input map (the paper\'s Fig. 6).'),
    'parsing': ('Face parsing', 'Parsing label and the predicted classes '
                '(the paper\'s Fig. 5/8).'),
    'depth': ('Depth', 'Depth label (all zero for spoofs) and the predicted '
              'depth map.'),
}
PARSING_CLASSES = ('background', 'skin', 'left brow', 'right brow',
                   'left eye', 'right eye', 'eyeglasses', 'left ear',
                   'right ear', 'nose', 'mouth', 'upper lip', 'lower lip')
DOMAIN_NAMES = {'o': 'OULU-NPU', 'c': 'CASIA-FASD', 'i': 'Replay-Attack',
                'm': 'MSU-MFSD'}


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


def _save(fig: plt.Figure, path: str, tight: bool = True) -> None:
  if tight:
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
  """Video score histograms, one panel per class, honest threshold.

  Separate panels on a shared axis: overlapping translucent bars mix into
  colours no legend explains.
  """
  spoof = target.labels == 0
  groups = [('live', target.labels == 1, 'tab:green')] + [
      (f'spoof: {attack}', spoof & (target.attack_types == attack), colour)
      for attack, colour in zip(np.unique(target.attack_types[spoof]),
                                ('tab:red', 'tab:orange', 'tab:purple',
                                 'tab:brown', 'tab:pink', 'tab:gray'))]
  groups = [g for g in groups if g[1].any()]
  fig, axes = plt.subplots(len(groups), 1, sharex=True, squeeze=False,
                           figsize=(6, 1.3 + 1.1 * len(groups)))
  bins = np.linspace(0, 1, 21)
  for ax, (name, chosen, colour) in zip(axes[:, 0], groups):
    ax.hist(target.scores[chosen], bins=bins, color=colour,
            edgecolor='black', linewidth=0.5)
    if np.isfinite(threshold):
      ax.axvline(threshold, color='k', ls='--', lw=1)
    ax.set_ylabel('videos', fontsize=8)
    ax.text(0.01, 0.85, f'{name} ({int(chosen.sum())} videos)',
            transform=ax.transAxes, fontsize=9, va='top')
  axes[0, 0].set_title('Target scores by class (dashed: honest threshold)',
                       fontsize=10)
  axes[-1, 0].set_xlabel('P(live), mean over the video\'s frames')
  axes[-1, 0].set_xlim(0, 1)
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
          labels: np.ndarray, path: str,
          colorbars: dict[int, tuple[Any, str]] | None = None,
          legend: list[Any] | None = None) -> None:
  """Rows of panels (title, images, imshow kwargs), one column per face.

  `colorbars` maps a row to (a ScalarMappable, its label) drawn beside the
  row; `legend` is a list of patches drawn below the grid.
  """
  n = len(labels)
  extra = 0.9 if legend else 0.0
  fig, axes = plt.subplots(len(rows), n, squeeze=False,
                           figsize=(1.6 * n + (1.2 if colorbars else 0),
                                    1.6 * len(rows) + extra),
                           layout='constrained')
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
  for r, (mappable, label) in (colorbars or {}).items():
    bar = fig.colorbar(mappable, ax=list(axes[r, :]), fraction=0.05, pad=0.02)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=7)
  if legend:
    fig.legend(handles=legend, loc='outside lower center', ncol=5,
               fontsize=7, frameon=False)
  _save(fig, path, tight=False)


def plot_gradcam(images: np.ndarray, cams: np.ndarray, labels: np.ndarray,
                 path: str) -> None:
  """Faces and their Grad-CAM maps overlaid."""
  overlays = [0.5 * _rgb(i) + 0.5 * plt.get_cmap('jet')(c)[..., :3]
              for i, c in zip(images, cams)]
  scale = matplotlib.cm.ScalarMappable(
      norm=matplotlib.colors.Normalize(0.0, 1.0), cmap='jet')
  _grid([('face', [_rgb(i) for i in images], {}),
         ('Grad-CAM', overlays, {})], labels, path,
        colorbars={1: (scale, 'Grad-CAM (1 = strongest)')})


def plot_parsing(images: np.ndarray, target: np.ndarray, predicted: np.ndarray,
                 labels: np.ndarray, path: str) -> None:
  """Faces, parsing labels and the predicted parsing (argmax), with a legend."""
  colours = [plt.get_cmap('tab20')(i) for i in range(len(PARSING_CLASSES))]
  colours[0] = (0.0, 0.0, 0.0, 1.0)  # background black
  cmap = matplotlib.colors.ListedColormap(colours)
  style = {'cmap': cmap, 'vmin': -0.5, 'vmax': len(PARSING_CLASSES) - 0.5,
           'interpolation': 'nearest'}
  legend = [matplotlib.patches.Patch(color=colour, label=f'{i} {name}')
            for i, (name, colour) in enumerate(zip(PARSING_CLASSES, colours))]
  _grid([('face', [_rgb(i) for i in images], {}),
         ('label', list(target), style), ('predicted', list(predicted), style)],
        labels, path, legend=legend)


def plot_depth(images: np.ndarray, target: np.ndarray, predicted: np.ndarray,
               labels: np.ndarray, path: str) -> None:
  """Faces, target depth (zeros for spoofs) and predicted depth."""
  style = {'cmap': 'gray', 'vmin': 0.0, 'vmax': 1.0}
  scale = matplotlib.cm.ScalarMappable(
      norm=matplotlib.colors.Normalize(0.0, 1.0), cmap='gray')
  _grid([('face', [_rgb(i) for i in images], {}),
         ('target depth', list(target), style),
         ('predicted depth', list(predicted), style)], labels, path,
        colorbars={1: (scale, 'depth (1 = nearest)'),
                   2: (scale, 'depth (1 = nearest)')})


# -----------------------------------------------------------------------------
# index.html.
# -----------------------------------------------------------------------------


NOT_RATES = ('threshold', 'worst_attack_type', 'step')


def _is_rate(key: str) -> bool:
  return not any(key.endswith(k) for k in NOT_RATES)


def format_value(key: str, value: Any) -> str:
  """Rates as percentages, thresholds as P(live), the rest as text."""
  if isinstance(value, str) and value in ('inf', '-inf', 'nan'):
    value = float(value)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return str(value)
  if key.endswith('threshold'):
    if value == float('inf'):
      return 'inf (rejects every video)'
    return f'{value:.4f}'
  if key.endswith('step'):
    return str(int(value))
  if value != value:  # NaN
    return 'n/a'
  return f'{100 * value:.2f}%'


def _cell(key: str, value: Any) -> str:
  """A number cell: shown formatted, exact in data-value, found by its id."""
  exact = (repr(float(value)) if isinstance(value, (int, float))
           and not isinstance(value, bool) else str(value))
  return (f'<td id="{html.escape(key)}" data-value="{html.escape(exact)}">'
          f'{html.escape(format_value(key, value))}</td>')


def flat_numbers(numbers: dict[str, Any]) -> dict[str, Any]:
  """The numbers at the report's step shown in index.html, by element id."""
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


def flat_results(results: dict[str, Any] | None) -> dict[str, Any]:
  """results.json's blocks shown beside them, ids `results_<block>_<key>`."""
  flat: dict[str, Any] = {}
  for block in ('protocol', 'honest'):
    values = (results or {}).get(block) or {}
    for k, _ in METRIC_ROWS:
      if k in values:
        flat[f'results_{block}_{k}'] = values[k]
  return flat


METRIC_ROWS = (('hter', 'HTER'), ('auc', 'AUC'), ('eer', 'EER'),
               ('tpr_at_fpr_1pct', 'TPR at FPR = 1%'),
               ('threshold', 'threshold (P(live))'))
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 68em;
       padding: 0 1em; color: #222; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; }
td[data-value] { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: #f2f2f2; }
th.row { font-weight: normal; background: #fafafa; }
.note { color: #555; font-size: 0.92em; max-width: 60em; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.92em; }
"""


def _table(head: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]
           ) -> str:
  header = ''.join(f'<th>{html.escape(h)}</th>' for h in head)
  thead = f'<thead><tr>{header}</tr></thead>\n' if any(head) else ''
  body = ''.join(f'<tr><th class="row">{html.escape(name)}</th>'
                 f'{"".join(cells)}</tr>\n' for name, cells in rows)
  return f'<table>\n{thead}<tbody>\n{body}</tbody>\n</table>'


def index_html(numbers: dict[str, Any], figures: dict[str, str | None],
               title: str, run_info: dict[str, Any] | None = None,
               results: dict[str, Any] | None = None) -> str:
  """The report page: run metadata, the numbers, then every figure."""
  run_info = run_info or {}
  step = run_info.get('step', numbers.get('step'))
  body = [f'<h1>{html.escape(title)}</h1>']
  if run_info:
    meta_rows = [(label, [f'<td id="run_{key}">'
                          f'{html.escape(str(run_info[key]))}</td>'])
                 for key, label in (
                     ('protocol', 'Protocol'), ('variant', 'Variant'),
                     ('seed', 'Seed'), ('data', 'Data'),
                     ('step', 'Report step'), ('step_reason', 'Why this step'),
                     ('trained_steps', 'Run trained to step'),
                     ('videos', 'Videos scored'),
                     ('run_commit', 'Commit of the run'),
                     ('report_commit', 'Commit of this report'))
                 if key in run_info]
    body += ['<h2>Run</h2>', _table(('', ''), meta_rows)]

  flat = flat_numbers(numbers)
  shown_results = flat_results(results)
  head = ['metric', f'honest, step {step}', f'protocol at step {step}']
  if shown_results:
    head += [f'results.json honest (step {results["honest"].get("step")})',
             'results.json protocol (step '
             f'{results["protocol"].get("step")})']
  rows = []
  for key, label in METRIC_ROWS:
    cells = [_cell(f'honest_{key}', flat.get(f'honest_{key}')),
             _cell(f'protocol_{key}', flat.get(f'protocol_{key}'))]
    if shown_results:
      cells += [_cell(f'results_honest_{key}',
                      shown_results.get(f'results_honest_{key}')),
                _cell(f'results_protocol_{key}',
                      shown_results.get(f'results_protocol_{key}'))]
    rows.append((label, cells))
  body += [
      '<h2>Results on the target</h2>',
      '<p class="note">Video level (a video\'s score is the mean P(live) of '
      'its frames). <b>honest</b>: the threshold is the source dev videos\' '
      'EER threshold; nothing is chosen on the target. <b>protocol at step '
      f'{step}</b>: this step\'s checkpoint at the target\'s own EER '
      'threshold (the field\'s convention; optimistic). <b>results.json</b>: '
      'what training recorded; its protocol block is the checkpoint with the '
      'lowest target HTER over the whole run, which may be another step, so '
      'its numbers can differ from the protocol numbers at this step.</p>',
      _table(head, rows)]

  iso_rows = [(f'APCER, {attack}', [_cell(f'apcer_{attack}',
                                          flat[f'apcer_{attack}'])])
              for attack in numbers['iso_honest']['apcer_per_type']]
  iso_rows += [
      ('APCER, worst attack type', [_cell('apcer_worst', flat['apcer_worst'])]),
      ('worst attack type', [_cell('worst_attack_type',
                                   flat['worst_attack_type'])]),
      ('BPCER (live rejected)', [_cell('bpcer', flat['bpcer'])]),
      ('ACER = (worst APCER + BPCER) / 2', [_cell('acer', flat['acer'])])]
  iso_rows += [(f'BPCER at APCER = {k.removesuffix("pct")}%',
                [_cell(f'bpcer_at_apcer_{k}', flat[f'bpcer_at_apcer_{k}'])])
               for k in numbers['bpcer_at_apcer']]
  body += ['<h2>Errors by attack type (ISO/IEC 30107-3)</h2>',
           '<p class="note">At the honest threshold. BPCER at APCER = x: the '
           'lowest BPCER over thresholds at which every attack type\'s APCER '
           'is at most x.</p>',
           _table(('rate', f'step {step}'), iso_rows)]
  if 'n_videos' in numbers:
    n = numbers['n_videos']
    body.append(f'<p class="note" id="n_videos">Target: {n["target_live"]} '
                f'live and {n["target_spoof"]} spoof videos; source dev: '
                f'{n["dev"]} videos.</p>')

  body.append('<h2>Figures</h2>')
  for name, file in figures.items():
    heading, caption = FIGURE_TEXT.get(name, (name, ''))
    body.append(f'<h3>{html.escape(heading)}</h3>')
    body.append(
        f'<figure><img src="{html.escape(file)}" alt="{html.escape(heading)}">'
        f'<figcaption>{html.escape(caption)}</figcaption></figure>'
        if file else '<p>Not available for this model (no parsing '
        'decoder).</p>')
  return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
          f'<title>{html.escape(title)}</title><style>{_STYLE}</style>'
          '</head><body>\n' + '\n'.join(body) + '\n</body></html>\n')


def run_info(config: ml_collections.ConfigDict, workdir: str, step: int,
             chosen_by_rule: bool, numbers: dict[str, Any],
             results: dict[str, Any] | None) -> dict[str, Any]:
  """The run's metadata shown at the top of the page (and in report.json)."""
  sources = list(config.data.sources)
  target = config.data.target
  short = '&'.join(d.upper() for d in sources) + f' → {target.upper()}'
  names = (', '.join(DOMAIN_NAMES.get(d, d) for d in sources) + ' → '
           + DOMAIN_NAMES.get(target, target))
  builders = dict(config.data.builders)
  synthetic = all(str(b).startswith('synthetic_fas') for b in builders.values())
  run_prov_path = os.path.join(workdir, 'provenance.json')
  run_commit = 'unknown'
  if os.path.isfile(run_prov_path):
    with open(run_prov_path) as f:
      run_commit = json.load(f).get('git_commit', 'unknown')
  n = numbers['n_videos']
  return {
      'protocol': f'{config.protocol}: {short} ({names})',
      'variant': config.variant,
      'seed': int(config.seed),
      'data': ('synthetic_fas, the built-in procedural benchmark (not real '
               'faces)' if synthetic else 'the real datasets'),
      'step': int(step),
      'step_reason': (
          "the honest rule's choice: lowest EER on the pooled source dev "
          'videos (ties: the earliest step)' if chosen_by_rule
          else 'named with --step'),
      'trained_steps': (results or {}).get('step', 'unknown'),
      'videos': (f'target {n["target_live"]} live + {n["target_spoof"]} '
                 f'spoof; source dev {n["dev"]}'),
      'run_commit': run_commit,
      'report_commit': provenance.git_commit(),
  }


# -----------------------------------------------------------------------------
# The report.
# -----------------------------------------------------------------------------


def _subsample(n: int, limit: int, seed: int = 0) -> np.ndarray:
  if n <= limit:
    return np.arange(n)
  return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def write_report(config: ml_collections.ConfigDict, workdir: str,
                 step: int | None = None) -> dict[str, Any]:
  """Writes WORKDIR/report/: figures, index.html, report.json; returns them.

  Raises workdir_lock.NoRunError (and creates nothing) if WORKDIR holds no
  saved checkpoint.
  """
  workdir_lock.check_run(workdir)
  chosen_by_rule = step is None
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
  results_path = os.path.join(workdir, 'results.json')
  results = None
  if os.path.isfile(results_path):
    with open(results_path) as f:
      results = json.load(f)
  info = run_info(config, workdir, step, chosen_by_rule, numbers, results)
  result = evaluate.to_json_safe({'step': step, 'target': config.data.target,
                                  **numbers, 'run': info,
                                  'results_json': results})
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
  title = (f'Report: {info["protocol"].split(" (")[0]}, {config.variant}, '
           f'seed {config.seed}, step {step}')
  with open(os.path.join(out_dir, 'index.html'), 'w') as f:
    f.write(index_html(numbers, figures, title, info, results))
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
    try:
      result = write_report(config.value, workdir.value, step.value)
    except workdir_lock.NoRunError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)
    print(json.dumps(result, indent=2))
    if jax.process_index() == 0:
      page = os.path.abspath(os.path.join(workdir.value, 'report',
                                          'index.html'))
      print(f'Report written to {page}', file=sys.stderr)

  app.run(main)


if __name__ == '__main__':
  _cli()
