"""Data parallelism and mixed precision.

- The shard_map train step on 4 (forced CPU) devices equals the 1-device
  step, with native ('xla') and matmul convs, in float64: losses, gradients,
  per-domain BatchNorm statistics over the global batch, meta-test draw;
  a predict step too. The device count must be set before JAX starts, so
  that part runs in a fresh Python process.
- `launch.py` end to end on 4 devices (training, padded evaluation,
  checkpoints of replicated arrays, `--mode=eval` restoring them) gives the
  results.json of the same run on 1 device.
- bfloat16 compute with float32 parameters: the loss stays close to the
  float32 loss and every gradient is finite and float32.
"""

import functools
import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import smoke_run

from fasjax import checkpoint_eval
from fasjax import meta
from fasjax import models
from fasjax import sharding
from fasjax import train

D, B, S, WIDTH = 3, 4, 32, 0.125
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_FOUR_DEVICES = textwrap.dedent('''
    import functools, json
    import jax
    jax.config.update('jax_disable_most_optimizations', True)
    jax.config.update('jax_enable_x64', True)
    import jax.numpy as jnp
    import numpy as np
    import optax
    from fasjax import evaluate, meta, models, sharding, train

    assert jax.device_count() == 4, jax.devices()
    D, B, S = 3, 4, 32
    rng = np.random.default_rng(0)
    label = np.tile(np.r_[np.ones(B // 2), np.zeros(B // 2)], (D, 1))
    # Domains with very different statistics, so pooled or per-shard
    # BatchNorm statistics would show. Live images come first in every
    # domain, so with B/4 = 1 row per device some devices hold only live
    # and others only spoof images: per-shard losses or statistics would show.
    scale = np.arange(1, D + 1, dtype=np.float64)[:, None, None, None, None]
    batch = {
        'image': rng.random((D, B, S, S, 6)) * scale,
        'depth': rng.random((D, B, S // 8, S // 8)) * label[..., None, None],
        'parsing': rng.integers(0, 13, (D, B, S, S)).astype(np.int32),
        'label': label.astype(np.int32),
    }
    # SGD with lr 1: the parameter change of one step *is* the gradient.
    tx = optax.sgd(1.0)
    results = {}
    for conv_impl in ('xla', 'matmul'):
      nets = meta.Networks(
          models.MultiTaskNet(width=0.125, conv_impl=conv_impl,
                              dtype=jnp.float64),
          models.MetaLearner(width=0.125, conv_impl=conv_impl,
                             dtype=jnp.float64),
          # Batch-hard triplets from step 0: the hardest pairs of the whole
          # batch, which only a gathered batch finds.
          meta.MetaHParams(hard_mining_step=0))
      state = train.jit_init_state(nets, tx, S, seed=0)
      state = jax.tree.map(
          lambda x: x.astype(jnp.float64) if x.dtype == jnp.float32 else x,
          state)
      one_step = jax.jit(functools.partial(meta.train_step, nets=nets, tx=tx))
      one_state, one_metrics = one_step(state, batch)

      mesh = sharding.make_mesh()
      step = sharding.jit_train_step(nets, tx, mesh, donate=False)
      sharded = sharding.global_train_batch(batch, mesh)
      image_shards = {s.data.shape for s in
                      sharded['image'].addressable_shards}
      four_state, four_metrics = step(sharding.replicate(state, mesh),
                                      sharded)

      def max_rel(a, b):
        num = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
        den = max(float(np.max(np.abs(np.asarray(y)))) for y in
                  jax.tree.leaves(b))
        return num / den

      grads = lambda st: jax.tree.map(lambda a, b: a - b, state.params,
                                      st.params)
      result = {
          'image_shard_shapes': sorted(image_shards),
          'state_replicated': all(x.sharding.is_fully_replicated for x in
                                  jax.tree.leaves(four_state)),
          'grads': max_rel(grads(four_state), grads(one_state)),
          'batch_stats': max_rel(four_state.batch_stats,
                                 one_state.batch_stats),
          'metrics': {k: [float(one_metrics[k]), float(four_metrics[k])]
                      for k in one_metrics},
      }
      if conv_impl == 'xla':
        images = batch['image'].reshape(D * B, S, S, 6)[:8]
        one_pred = jax.jit(functools.partial(evaluate.predict_step,
                                             nets=nets))(
            state.params, state.batch_stats, images)
        four_pred = sharding.jit_predict_step(nets, mesh)(
            state.params, state.batch_stats,
            sharding.global_eval_batch({'image': images}, mesh)['image'])
        result['p_live'] = max_rel(four_pred['p_live'], one_pred['p_live'])
        result['parsing'] = max_rel(four_pred['parsing'],
                                    one_pred['parsing'])
      results[conv_impl] = result
    print(json.dumps(results))
''')


@pytest.fixture(scope='module')
def four_device_result():
  env = dict(os.environ, JAX_PLATFORMS='cpu', CUDA_VISIBLE_DEVICES='',
             TF_CPP_MIN_LOG_LEVEL='2',
             XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') +
                        ' --xla_force_host_platform_device_count=4'),
             PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
  proc = subprocess.run([sys.executable, '-c', _FOUR_DEVICES], env=env,
                        cwd=REPO, capture_output=True, text=True, timeout=900,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


CONV_IMPLS = ('xla', 'matmul')


@pytest.mark.parametrize('conv_impl', CONV_IMPLS)
def test_batch_is_split_along_the_per_domain_axis(four_device_result,
                                                  conv_impl):
  # [D, B, S, S, 6] over 4 devices: every shard holds all domains, B/4 rows.
  r = four_device_result[conv_impl]
  assert r['image_shard_shapes'] == [[D, B // 4, S, S, 6]]
  assert r['state_replicated']


@pytest.mark.parametrize('conv_impl', CONV_IMPLS)
def test_four_device_shard_map_step_equals_one_device_step(
    four_device_result, conv_impl):
  # float64: what remains is summation order (one device sums B rows, four
  # devices sum B/4 rows and then four partial results).
  r = four_device_result[conv_impl]
  assert r['metrics']['meta_test_domain'][0] == r['metrics'][
      'meta_test_domain'][1]
  for name, (one, four) in r['metrics'].items():
    np.testing.assert_allclose(four, one, rtol=1e-10, err_msg=name)
  assert r['grads'] < 1e-10
  assert r['batch_stats'] < 1e-10


def test_four_device_predictions_equal_one_device(four_device_result):
  assert four_device_result['xla']['p_live'] < 1e-10
  assert four_device_result['xla']['parsing'] < 1e-10


def test_single_device_mesh_and_batch_checks():
  mesh = sharding.make_mesh(jax.devices()[:1])
  assert mesh.shape == {'data': 1}
  sharding.check_divisible(5, mesh)
  assert not sharding.initialize()  # No cluster here: a no-op.


# launch.py on 4 devices --------------------------------------------------

# Same run on 1 and on 4 devices, native 'xla' convs (the shard_map step
# needs no partitioning of their gradients). 2 x per_class_batch = 4 images
# per domain, one per device. eval_batch_size 30 is padded to 32 on 4 devices.
# lr 1e-5 instead of the smoke run's 1e-3: Adam's first update is about
# lr * sign(g), so parameters whose gradient is float noise (which differs
# with the reduction order over devices) move by +-lr; on this tiny model
# that difference grows to percent-level losses and different evaluation
# numbers within 6 steps at lr 1e-3 (measured), so the run would not test
# the plumbing. At 1e-5 the runs stay within float noise of each other.
_RUN_FLAGS = ('--config.model.conv_impl=xla',
              '--config.data.per_class_batch=2',
              '--config.eval_batch_size=30', '--config.optim.lr=1e-5')


def _run_config(data_dir):
  """The smoke config with _RUN_FLAGS applied, for in-process evaluation."""
  config = smoke_run.config(data_dir)
  config.model.conv_impl = 'xla'
  config.data.per_class_batch = 2
  config.eval_batch_size = 30
  config.optim.lr = 1e-5
  return config


def _cpu_devices(n):
  return {'XLA_FLAGS': os.environ.get('XLA_FLAGS', '') +
                       f' --xla_force_host_platform_device_count={n}'}


@pytest.fixture(scope='module')
def one_and_four_device_runs(tmp_path_factory, data_dir):
  """(1-device workdir, 4-device workdir, the 4-device launch's log)."""
  # 1 device: this process (train_and_evaluate, what launch.py runs), which
  # spares a launch.py start; 4 devices: launch.py with 4 host devices.
  one = str(tmp_path_factory.mktemp('devices1'))
  train.train_and_evaluate(_run_config(data_dir), one)
  four = str(tmp_path_factory.mktemp('devices4'))
  proc = smoke_run.launch(four, data_dir, *_RUN_FLAGS,
                          extra_env=_cpu_devices(4))
  # --mode=eval --step restores the replicated checkpoint of the reported
  # step on 4 devices (checkpoint_eval.evaluate_step). The every-step path
  # (evaluate_checkpoints) shares its restore and predict step; it is run
  # on 1 device in tests/test_launch.py and in-process below.
  step = _protocol_step(four)
  smoke_run.launch(four, data_dir, '--mode=eval', f'--step={step}',
                   *_RUN_FLAGS, extra_env=_cpu_devices(4))
  return one, four, proc.stderr


def _protocol_step(workdir):
  """The step whose evaluation results.json reports as the protocol's."""
  return smoke_run.read_json(
      os.path.join(workdir, 'results.json'))['protocol']['step']


def _leaves(tree, path=''):
  """(path, value) of every leaf of a JSON value."""
  if isinstance(tree, dict):
    return [leaf for k in sorted(tree) for leaf in _leaves(tree[k],
                                                            f'{path}.{k}')]
  return [(path, tree)]


def _train_losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    lines = [json.loads(l) for l in f]
  return {l['step']: l['values']['train/loss'] for l in lines
          if 'train/loss' in l.get('values', {})}


def _assert_same_results(actual_path, expected_path, rtol):
  """Equal keys, strings and steps; numbers within rtol."""
  expected = _leaves(smoke_run.read_json(expected_path))
  actual = _leaves(smoke_run.read_json(actual_path))
  assert [p for p, _ in actual] == [p for p, _ in expected]
  for (path, a), (_, e) in zip(actual, expected):
    if isinstance(e, str) or path.endswith('step'):
      assert a == e, path
    else:
      np.testing.assert_allclose(a, e, rtol=rtol, err_msg=path)


def test_launch_on_four_devices_equals_one_device(one_and_four_device_runs):
  one, four, four_log = one_and_four_device_runs
  assert jax.device_count() == 1  # the in-process run's
  assert 'Data-parallel over 4 devices' in four_log
  # Thresholds are video scores: they differ by float noise (7e-7 relative
  # measured). HTER, AUC and EER count videos, so a flipped order of two
  # videos would change them by far more than 1e-5.
  _assert_same_results(os.path.join(four, 'results.json'),
                       os.path.join(one, 'results.json'), rtol=1e-5)
  losses_one, losses_four = _train_losses(one), _train_losses(four)
  assert losses_one and sorted(losses_four) == sorted(losses_one)
  for step, loss in losses_one.items():
    # Measured: <= 1.1e-6 relative.
    np.testing.assert_allclose(losses_four[step], loss, rtol=1e-5,
                               err_msg=f'step {step}')


def test_eval_mode_on_four_devices_reproduces_results(
    one_and_four_device_runs, data_dir):
  _, four, _ = one_and_four_device_runs
  results = smoke_run.read_json(os.path.join(four, 'results.json'))
  step = _protocol_step(four)
  actual = smoke_run.read_json(os.path.join(four, f'eval_step_{step}.json'))
  # Restored and re-evaluated on 4 devices: the run's own protocol numbers
  # (and its honest ones where they come from the same step).
  assert actual['step'] == step
  blocks = [b for b in ('protocol', 'honest') if results[b]['step'] == step]
  for block in blocks:
    same = set(actual[block]) & set(results[block])
    assert same >= {'hter', 'auc', 'eer', 'threshold'}, (block, same)
    assert ({k: actual[block][k] for k in same}
            == {k: results[block][k] for k in same}), block
  # This process has one device: the same checkpoint scored unsharded.
  expected = checkpoint_eval.evaluate_step(_run_config(data_dir), four, step,
                                           write=False)
  assert expected['step'] == step
  for block in ('protocol', 'honest', 'dev'):
    for key, value in expected[block].items():
      np.testing.assert_allclose(actual[block][key], value, rtol=1e-6,
                                 err_msg=f'{block}.{key}')


def _free_port():
  with socket.socket() as sock:
    sock.bind(('localhost', 0))
    return sock.getsockname()[1]


def test_two_processes_train_and_one_process_reevaluates(tmp_path, data_dir):
  # launch.py as two jax.distributed processes (one CPU device each) on this
  # machine: each reads its half of every domain, process 0 writes. A plain
  # one-device re-evaluation of the same checkpoints (what --mode=eval runs,
  # here in this process) must find the numbers the two processes recorded
  # (P(live) gathered across processes correctly).
  workdir = str(tmp_path / 'two_processes')
  address = f'localhost:{_free_port()}'
  procs = [subprocess.Popen(
      smoke_run.command(workdir, data_dir, *_RUN_FLAGS,
                        f'--coordinator_address={address}',
                        '--num_processes=2', f'--process_id={i}'),
      cwd=smoke_run.ROOT, env=smoke_run.env(), stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  logs = [p.communicate(timeout=600)[1] for p in procs]
  for i, (proc, log) in enumerate(zip(procs, logs)):
    assert proc.returncode == 0, f'process {i}: {log[-3000:]}'
  assert 'Data-parallel over 2 devices (2 processes)' in logs[0]
  checkpoint_eval.evaluate_checkpoints(_run_config(data_dir), workdir)
  _assert_same_results(os.path.join(workdir, 'eval_results.json'),
                       os.path.join(workdir, 'results.json'), rtol=1e-6)


def test_initialize_needs_all_three_arguments():
  with pytest.raises(ValueError, match='num_processes and process_id'):
    sharding.initialize('localhost:1234')
  with pytest.raises(ValueError, match=r'process_id must be in \[0, 2\)'):
    sharding.initialize('localhost:1234', 2, 2)


# Mixed precision ------------------------------------------------------------


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  label = np.tile(np.r_[np.ones(B // 2), np.zeros(B // 2)], (D, 1))
  return {
      'image': rng.random((D, B, S, S, 6), np.float32),
      'depth': (rng.random((D, B, S // 8, S // 8), np.float32)
                * label[..., None, None]).astype(np.float32),
      'parsing': rng.integers(0, 13, (D, B, S, S)).astype(np.int32),
      'label': label.astype(np.int32),
  }


def _loss_and_grads(dtype):
  nets = meta.Networks(models.MultiTaskNet(width=WIDTH, dtype=dtype),
                       models.MetaLearner(width=WIDTH, dtype=dtype),
                       meta.MetaHParams())
  tx = meta.make_optimizer(1e-3, 0.9, 0.999, 1e-8, 5e-5)
  st = train.jit_init_state(nets, tx, S, seed=0)
  fn = jax.jit(jax.value_and_grad(functools.partial(meta.objective, nets=nets),
                                  has_aux=True))
  (loss, aux), grads = fn(st.params, st.batch_stats, _batch(),
                          jax.random.PRNGKey(1), jnp.asarray(0))
  return st.params, loss, aux, grads


@pytest.fixture(scope='module')
def fp32_and_bf16():
  return _loss_and_grads(jnp.float32), _loss_and_grads(jnp.bfloat16)


def test_bf16_keeps_float32_parameters_and_gradients(fp32_and_bf16):
  _, (params, _, aux, grads) = fp32_and_bf16
  for tree in (params, grads, aux['batch_stats']):
    assert {x.dtype for x in jax.tree.leaves(tree)} == {jnp.dtype('float32')}


def test_bf16_loss_close_to_fp32(fp32_and_bf16):
  (_, loss32, aux32, _), (_, loss16, aux16, _) = fp32_and_bf16
  # bfloat16 keeps 8 mantissa bits (~0.4% per rounding).
  np.testing.assert_allclose(float(loss16), float(loss32), rtol=0.05)
  # The triplet hinges (and through them cls) flip with bf16 rounding at this
  # tiny size; the smooth terms must agree.
  for key in ('depth', 'parsing'):
    np.testing.assert_allclose(float(aux16['metrics'][key]),
                               float(aux32['metrics'][key]), rtol=0.05,
                               atol=0.02)


def _cosine(a, b):
  a = np.concatenate([np.ravel(x) for x in jax.tree.leaves(a)])
  b = np.concatenate([np.ravel(x) for x in jax.tree.leaves(b)])
  return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


def test_bf16_gradients_finite_and_aligned(fp32_and_bf16):
  (_, _, _, g32), (_, _, _, g16) = fp32_and_bf16
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g16))
  # Branches reached by smooth losses only: the depth head and the parsing
  # classifier. (Encoder and meta learner gradients also carry the triplet
  # hinges, whose active set bf16 rounding changes on this tiny problem.)
  assert _cosine(g16['net']['depth'], g32['net']['depth']) > 0.9
  assert _cosine(g16['net']['decoder']['classifier'],
                 g32['net']['decoder']['classifier']) > 0.9
