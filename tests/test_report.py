"""The report and checkpoint evaluation on one `synthetic,smoke` run.

The run trains in this process (compiled programs are shared through the
persistent cache). Report numbers are recomputed here from the restored
checkpoint with fasjax.evaluate and fasjax.metrics; BPCER at APCER = x by
brute force in numpy. The page is also opened in headless Chromium (Debian's
`chromium`; skipped, with the reason, where it is missing or cannot start):
every figure must load and every number cell must equal report.json.
"""

import html
import json
import os
import re
import shutil
import statistics
import subprocess

import numpy as np
import pytest
import smoke_run

from configs import common
from fasjax import checkpoint_eval
from fasjax import data
from fasjax import evaluate
from fasjax import metrics
from fasjax import report
from fasjax import workdir_lock

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


@pytest.fixture(scope='module')
def config(data_dir):
  config = common.protocol_config('ocm', 'i', 'synthetic,smoke')
  config.data.data_dir = data_dir
  return config


@pytest.fixture(scope='module')
def run(tmp_path_factory, trained_smoke_run):
  """A copy of the shared smoke run (tests/conftest.py): the report writes
  into its workdir."""
  workdir = str(tmp_path_factory.mktemp('run') / 'run')
  shutil.copytree(trained_smoke_run, workdir)
  return workdir


@pytest.fixture(scope='module')
def reported(run, config):
  return report.write_report(config, run)


def _read(path):
  with open(path) as f:
    return json.load(f)


def test_every_figure_is_written_and_shown(run, reported):
  del reported
  out = os.path.join(run, 'report')
  with open(os.path.join(out, 'index.html')) as f:
    page = f.read()
  for name in report.FIGURES:
    path = os.path.join(out, f'{name}.png')
    with open(path, 'rb') as f:
      assert f.read(8) == PNG_MAGIC, name
    assert os.path.getsize(path) > 5000, name
    assert f'src="{name}.png"' in page


def _brute_bpcer_at_apcer(videos, apcer):
  """min BPCER over thresholds at which every attack type's APCER <= apcer."""
  spoof = videos.labels == 0
  best = 1.0
  for t in np.append(videos.scores, np.inf):
    worst = max(np.mean(videos.scores[spoof & (videos.attack_types == a)] >= t)
                for a in set(videos.attack_types[spoof]))
    if worst <= apcer:
      best = min(best, np.mean(videos.scores[videos.labels == 1] < t))
  return best


def test_numbers_match_metrics(run, config, reported):
  step = reported['step']
  results = _read(os.path.join(run, 'results.json'))
  assert step == results['honest']['step']  # The default checkpoint.
  restored = checkpoint_eval.restore(config, run, step)
  nets, state = restored.nets, restored.state
  predict = evaluate.make_predict_fn(nets)
  target = evaluate.score_videos(
      predict, state.params, state.batch_stats,
      data.eval_sets(config, ['i'], list(config.data.target_splits)))
  dev = evaluate.score_videos(
      predict, state.params, state.batch_stats,
      data.eval_sets(config, list(config.data.dev_domains), ['dev']))
  _, threshold = metrics.eer(dev.scores, dev.labels)
  iso = metrics.apcer_bpcer_acer(target.scores, target.labels,
                                 target.attack_types, threshold)
  expected = {
      'protocol_hter': metrics.summary(target.scores, target.labels)['hter'],
      'protocol_auc': metrics.auc(target.scores, target.labels),
      'honest_hter': metrics.hter(target.scores, target.labels, threshold),
      'apcer_worst': iso['apcer'], 'bpcer': iso['bpcer'],
      'acer': iso['acer'],
      **{f'apcer_{k}': v for k, v in iso['apcer_per_type'].items()},
      **{f'bpcer_at_apcer_{round(100 * a)}pct':
         _brute_bpcer_at_apcer(target, a) for a in (0.01, 0.05, 0.1)}}
  # The honest numbers are those of results.json (same step, same rule).
  assert expected['honest_hter'] == pytest.approx(results['honest']['hter'])
  with open(os.path.join(run, 'report', 'index.html')) as f:
    cells = re.findall(r'<td id="([^"]+)" data-value="([^"]*)">([^<]*)</td>',
                       f.read())
  exact = {key: value for key, value, _ in cells}
  text = {key: html.unescape(shown) for key, _, shown in cells}
  assert len(iso['apcer_per_type']) >= 2
  for key, value in expected.items():
    assert float(exact[key]) == pytest.approx(value, abs=1e-12), key
    # Rates are shown as percentages with two decimals.
    assert text[key] == f'{100 * value:.2f}%', key
  assert exact['worst_attack_type'] == str(iso['worst_attack_type'])


def test_evaluate_step_and_last_k(run, config):
  assert smoke_run.checkpoint_steps(run) == [3, 6]
  history = checkpoint_eval.restore(config, run, 6).history
  assert [e['step'] for e in history] == [3, 6]
  # No step: the honest rule's, with its threshold, as results.json says.
  honest = _read(os.path.join(run, 'results.json'))['honest']
  chosen = checkpoint_eval.restore(config, run)
  assert chosen.step == honest['step']
  assert chosen.honest['threshold'] == pytest.approx(honest['threshold'])
  assert int(chosen.state.step) == honest['step']
  # Re-evaluating a saved step gives what training recorded for it.
  entry = checkpoint_eval.evaluate_step(config, run, 3)
  assert os.path.exists(os.path.join(run, 'eval_step_3.json'))
  for block in ('protocol', 'honest', 'dev'):
    for key, value in history[0][block].items():
      assert entry[block][key] == pytest.approx(value, abs=1e-12), key
  average = checkpoint_eval.last_k(config, run, 2)
  assert average['steps'] == [3, 6]
  assert os.path.exists(os.path.join(run, 'last_2_results.json'))
  for block in ('protocol', 'honest'):
    for m in ('hter', 'auc', 'tpr_at_fpr_1pct'):
      values = [e[block][m] for e in history]
      assert average[block][m]['mean'] == pytest.approx(
          statistics.mean(values), abs=1e-12)
      assert average[block][m]['std'] == pytest.approx(
          statistics.stdev(values), abs=1e-12)
  assert checkpoint_eval.last_k_average(history, 1)['steps'] == [6]
  assert 'note' in checkpoint_eval.last_k_average(history, 5)
  with pytest.raises(checkpoint_eval.RunNotUsableError, match='kept steps'):
    checkpoint_eval.evaluate_step(config, run, 4)


def test_bpcer_at_apcer_and_a_page_without_parsing():
  scores = np.array([0.9, 0.8, 0.6, 0.7, 0.3, 0.2])
  labels = np.array([1, 1, 1, 0, 0, 0])
  types = np.array(['', '', '', 'print', 'print', 'replay'])
  # APCER(print) = 0 needs a threshold above 0.7, which rejects the 0.6 live.
  assert report.bpcer_at_apcer(scores, labels, types, 0.01) == (
      pytest.approx(1 / 3))
  assert report.bpcer_at_apcer(scores, labels, types, 0.5) == 0.0
  videos = metrics.VideoScores(np.arange(6).astype(str), scores, labels,
                               types)
  numbers = report.report_numbers(videos, videos)
  page = report.index_html(numbers, {'roc': 'roc.png', 'parsing': None}, 't')
  assert 'src="roc.png"' in page and 'parsing.png' not in page
  assert 'no parsing' in page


def test_page_has_the_runs_metadata_and_results_json_beside(run, config,
                                                            reported):
  results = _read(os.path.join(run, 'results.json'))
  saved = _read(os.path.join(run, 'report', 'report.json'))
  info = saved['run']
  assert info['protocol'].startswith('ocm_to_i: O&C&M → I')
  assert (info['variant'], info['seed']) == ('full', 0)
  assert info['step'] == reported['step'] == results['honest']['step']
  assert "honest rule's choice" in info['step_reason']
  assert info['trained_steps'] == 6
  assert info['run_commit'] == _read(
      os.path.join(run, 'provenance.json'))['git_commit']
  n = saved['n_videos']
  assert f'target {n["target_live"]} live + {n["target_spoof"]} spoof' in (
      info['videos'])
  assert saved['results_json'] == results
  with open(os.path.join(run, 'report', 'index.html')) as f:
    page = f.read()
  for heading in ('Results on the target', 'Errors by attack type',
                  'Score distributions', 'Face parsing', 'Grad-CAM'):
    assert heading in page, heading
  assert 'score_histograms</h' not in page  # human headings, not file names
  assert f'results.json protocol (step {results["protocol"]["step"]})' in page
  assert f'protocol at step {info["step"]}' in page


def test_report_without_a_run_creates_nothing(tmp_path, config):
  with pytest.raises(workdir_lock.NoRunError, match='No checkpoint'):
    report.write_report(config, str(tmp_path))
  assert os.listdir(tmp_path) == []


# -----------------------------------------------------------------------------
# The page in a real browser.
# -----------------------------------------------------------------------------

_CHECK_PAGE = """<!DOCTYPE html><html><body>
<iframe id="page" src="index.html" width="1200" height="800"></iframe>
<script>
document.getElementById('page').addEventListener('load', () => {
  const d = document.getElementById('page').contentDocument;
  const found = {
    title: d.title,
    images: [...d.images].map(i => ({src: i.getAttribute('src'),
                                     complete: i.complete,
                                     width: i.naturalWidth})),
    cells: [...d.querySelectorAll('td[data-value]')].map(
        td => ({id: td.id, value: td.dataset.value,
                text: td.textContent})),
  };
  const out = document.createElement('pre');
  out.id = 'result';
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});
</script></body></html>
"""


def _chromium():
  for name in ('chromium', 'chromium-headless-shell', 'chromium-browser',
               'google-chrome'):
    path = shutil.which(name)
    if path:
      return path
  return None


def _open_in_chromium(folder, profile):
  """What the check page found in index.html, or a reason to skip."""
  binary = _chromium()
  if binary is None:
    return None, ('no Chromium on PATH (Debian: apt-get install chromium; '
                  '.ci/run installs it when it can)')
  with open(os.path.join(folder, 'check.html'), 'w') as f:
    f.write(_CHECK_PAGE)
  command = [binary, '--headless', '--no-sandbox', '--disable-gpu',
             '--disable-background-networking', '--disable-component-update',
             '--no-first-run', '--disable-sync', '--disable-extensions',
             '--allow-file-access-from-files', f'--user-data-dir={profile}',
             '--virtual-time-budget=20000', '--dump-dom',
             'file://' + os.path.join(folder, 'check.html')]
  try:
    proc = subprocess.run(command, capture_output=True, text=True,
                          timeout=180)
  except (OSError, subprocess.TimeoutExpired) as e:
    return None, f'Chromium could not run: {e}'
  match = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.S)
  if proc.returncode != 0 or not match:
    return None, (f'Chromium exited {proc.returncode} without a result: '
                  f'{proc.stderr.strip()[-300:]}')
  return json.loads(html.unescape(match.group(1))), None


def test_page_in_headless_chromium(run, reported, tmp_path):
  del reported
  folder = str(tmp_path / 'report')
  shutil.copytree(os.path.join(run, 'report'), folder)
  found, reason = _open_in_chromium(folder, str(tmp_path / 'profile'))
  if found is None:
    pytest.skip(reason)
  saved = _read(os.path.join(folder, 'report.json'))
  # Every figure is shown and decodes.
  sources = sorted(i['src'] for i in found['images'])
  expected_figures = sorted(f'{name}.png' for name in report.FIGURES)
  assert sources == expected_figures
  for image in found['images']:
    assert image['complete'] and image['width'] > 0, image
  # Every number cell holds report.json's value, shown as it should be.
  expected = {**report.flat_numbers(saved),
              **report.flat_results(saved['results_json'])}
  cells = {c['id']: c for c in found['cells']}
  assert set(cells) == set(expected), set(cells) ^ set(expected)
  for key, value in expected.items():
    cell = cells[key]
    if isinstance(value, float):
      assert float(cell['value']) == value, key
    else:
      assert cell['value'] == str(value), key
    assert cell['text'] == report.format_value(key, value), key
  assert found['title'].startswith('Report: ocm_to_i: O&C&M → I')
