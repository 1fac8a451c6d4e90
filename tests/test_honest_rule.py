"""The selection rules' tie-breaks (fasjax.evaluate.select), on built histories."""

from fasjax import evaluate


def _entry(step, dev_eer, hter, auc):
  block = {'hter': hter, 'auc': auc, 'eer': hter, 'threshold': 0.5,
           'tpr_at_fpr_1pct': 0.0}
  return {'step': step, 'dev': {'eer': dev_eer, 'threshold': 0.4},
          'protocol': dict(block), 'honest': dict(block)}


def test_honest_ties_go_to_the_earliest_step():
  # The demo's pattern: the dev EER ties at most evaluations while the
  # target keeps improving; the honest rule must not look at the target.
  history = [_entry(200, 0.10, 0.40, 0.70), _entry(400, 0.05, 0.37, 0.76),
             _entry(600, 0.05, 0.30, 0.80), _entry(800, 0.05, 0.25, 0.86),
             _entry(1000, 0.05, 0.25, 0.87)]
  chosen = evaluate.select(history)
  assert chosen['honest']['step'] == 400
  assert chosen['honest']['dev_eer'] == 0.05
  # Order of the history does not matter.
  assert evaluate.select(history[::-1])['honest']['step'] == 400


def test_protocol_ties_go_to_higher_auc_then_earliest_step():
  history = [_entry(200, 0.1, 0.25, 0.80), _entry(400, 0.1, 0.25, 0.85),
             _entry(600, 0.1, 0.25, 0.85), _entry(800, 0.1, 0.30, 0.99)]
  assert evaluate.select(history)['protocol']['step'] == 400
  assert evaluate.select(history[::-1])['protocol']['step'] == 400
