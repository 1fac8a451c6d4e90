"""fasjax.logs: the ETA, the compilation announcement, the filter, hparams.

The ETA is checked against arithmetic on a fake clock; the filter against
the exact lines tfds and JAX emit; the hyper-parameter block against one
written out by hand.
"""

import json
import logging

from fasjax import logs


class _Clock:

  def __init__(self):
    self.t = 0.0

  def __call__(self):
    return self.t


def _progress(total, **kwargs):
  lines, clock = [], _Clock()
  progress = logs.Progress(total, log=lambda fmt, *a: lines.append(fmt % a),
                           clock=clock, **kwargs)
  return progress, lines, clock


def test_eta_uses_the_recent_window_and_excludes_evaluations():
  progress, lines, clock = _progress(100, window=10, every_secs=1e9)
  progress(1)  # after the first step (compilation): starts the clock
  for step in range(2, 51):
    # 10 s per step for the first half, then 1 s per step.
    clock.t += 10.0 if step <= 40 else 1.0
    progress(step)
  # Only the last 10 steps (1 s each) count: 50 steps left -> 50 s.
  assert progress.eta_seconds(50) == 50.0
  with progress.timed('eval'):
    clock.t += 25.0
  clock.t += 1.0
  progress(51)
  # The evaluation is not a slow step: the window still says 1 s per step,
  # plus the eval's 25 s once per 51 steps for the 49 steps left.
  assert progress.eta_seconds(51) == 49 * 1.0 + 25.0 / 51 * 49


def test_lines_first_step_then_periodic_and_done_at_the_end():
  progress, lines, clock = _progress(4, every_secs=60)
  progress(1)
  assert 'step 1/4 done' in lines[-1]
  clock.t += 30
  progress(2)
  assert len(lines) == 1  # not due yet
  clock.t += 31
  progress(3)
  assert lines[-1].startswith('step 3/4 (75%)') and 'ETA 30 s' in lines[-1]
  clock.t += 5
  progress(4)
  assert 'training steps done' in lines[-1] and '100%' not in lines[-1]


def test_format_seconds():
  assert logs.format_seconds(42) == '42 s'
  assert logs.format_seconds(425) == '7 min 05 s'
  assert logs.format_seconds(3720) == '1 h 02 min'


def test_compilation_is_announced_and_timed_once():
  lines, calls = [], []

  def step(x):
    calls.append(x)
    return x + 1

  wrapped = logs.announce_compilation(
      step, log=lambda fmt, *a: lines.append(fmt % a))
  assert wrapped(1) == 2 and wrapped(2) == 3
  assert calls == [1, 2]
  assert len(lines) == 2
  assert lines[0].startswith('Compiling the train step')
  assert lines[1].startswith('Compiled the train step and ran it once in')


def _record(msg, pathname='/x/y.py', level=logging.INFO):
  return logging.LogRecord('n', level, pathname, 1, msg, None, None)


def test_filter_drops_library_noise_and_keeps_the_users_lines():
  keep = logs._DropLibraryInfo().filter  # pylint: disable=protected-access
  assert not keep(_record('Variant folder /d/synthetic_fas/o/1.0.0 has no '
                          'dataset_info.json', level=logging.WARNING))
  assert not keep(_record("Unable to initialize backend 'tpu': INTERNAL"))
  assert not keep(_record('Generating dataset synthetic_fas',
                          '/site-packages/tensorflow_datasets/core/b.py'))
  assert keep(_record('Dataset broken', '/site-packages/tensorflow_datasets/'
                      'core/b.py', level=logging.WARNING))
  assert keep(_record('Training took 3.0 s.'))


def test_hparams_block_is_sorted_dotted_one_per_line():
  hparams = {'seed': 3, 'protocol': 'ocm_to_i',
             'model': {'width': 0.125, 'remat': 'none', 'dtype': 'float32'},
             'data': {'sources': ['o', 'c', 'm'], 'data_dir': None,
                      'builders': {'i': 'synthetic_fas/i'}},
             'empty': {}}
  assert logs.format_hparams(hparams) == '\n'.join([
      "data.builders.i = 'synthetic_fas/i'",
      'data.data_dir = None',
      "data.sources = ['o', 'c', 'm']",
      'empty = {}',
      "model.dtype = 'float32'",
      "model.remat = 'none'",
      'model.width = 0.125',
      "protocol = 'ocm_to_i'",
      'seed = 3',
  ])


def test_run_writer_logs_the_hparams_block_and_still_writes_jsonl(
    tmp_path, caplog):
  caplog.set_level(logging.INFO)
  # absl's own logger too: a test before this one in the same process may
  # have lowered absl's verbosity (absl.app and launch.py set it).
  caplog.set_level(logging.INFO, logger='absl')
  writer = logs.create_writer(str(tmp_path))
  writer.write_hparams({'optim': {'lr': 0.001, 'b1': 0.9}, 'num_steps': 6})
  writer.write_scalars(1, {'loss': 2.5})
  writer.flush()
  messages = [r.getMessage() for r in caplog.records
              if 'Hyper-parameters' in r.getMessage()]
  assert messages == ['Hyper-parameters:\n  num_steps = 6\n  optim.b1 = 0.9\n'
                      '  optim.lr = 0.001']
  lines = (tmp_path / 'metrics.jsonl').read_text().splitlines()
  assert [json.loads(line)['kind'] for line in lines] == ['hparams', 'scalars']
  assert list(tmp_path.glob('events.out.tfevents.*'))
