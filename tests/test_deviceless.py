"""Compiling launch.py's step for a GPU and a TPU this machine does not have.

XLA:GPU (the CUDA 12 plugin) compiles a smoke config's step
(`sharding.jit_train_step`, native convolutions) for an H100 on 1 and 2
devices, and libtpu for a TPU v5e on 1 and 4 chips; the memory analyses
must be consistent with the step's own arrays. Both compile the smoke step
of one ablation (SMOKE below: 2 source domains, no inner meta step, no
decoder), the same launch.py code path at about a third of the full smoke
step's compile time (the full step took 30 s per GPU compile and 4-5 min
per TPU compile on 2 cores); benchmarks/compiled_memory.py compiles the
full paper step for every target. Each compile is shared through
module-scoped fixtures. Skipped, with the pip command, where the plugin or
libtpu is not installed (`pip install -e ".[aot]"`).
"""

import dataclasses
import json

import jax
import pytest

from fasjax import check_accelerator as ca
from fasjax import check_target
from fasjax import deviceless

SMOKE = ['--config=configs/mi_to_c.py:smoke,no_meta,no_parsing,no_asc']
# The least optimisation effort cuts libtpu's time about 3x again (its
# buffer assignment differs somewhat: these tests check consistency, not
# figures).
TPU_OPTIONS = {'exec_time_optimization_effort': -1.0}


def _skip_unless(platform: str) -> None:
  problem = deviceless.version_problem(platform)
  if problem:
    pytest.skip(problem)


@pytest.fixture(scope='module')
def smoke():
  return check_target.load_launch_config(SMOKE)[1]


@pytest.fixture(scope='module')
def gpu(smoke):
  """XLA:GPU's analyses of the ablation's smoke step on 1 and 2 H100s."""
  _skip_unless('gpu')
  target = deviceless.get_target('h100')
  return {n: check_target.compile_step(smoke, target, n) for n in (1, 2)}


@pytest.fixture(scope='module')
def tpu(smoke):
  """libtpu's analyses of the ablation's smoke step on 1 and 4 v5e chips."""
  _skip_unless('tpu')
  target = deviceless.get_target('v5e')
  return {n: check_target.compile_step(smoke, target, n, TPU_OPTIONS)
          for n in (1, 4)}


def _bytes_of(tree) -> int:
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def _batch_bytes(config) -> int:
  d, b, s = (len(config.data.sources), 2 * config.data.per_class_batch,
             config.model.image_size)
  # image (float32, 6 channels), depth (float32, s/8), label (int32), and
  # the parsing labels (int32) where the loss reads them: jit drops the
  # inputs a step does not use (no_parsing's lambda_seg = 0).
  parsing = s * s if config.loss.lambda_seg else 0
  return 4 * d * b * (s * s * 6 + (s // 8) ** 2 + 1 + parsing)


def _check_consistent(runs, config, kind):
  for n, r in runs.items():
    assert r['device_kind'] == kind
    assert r['conv_impl'] == 'xla'
    assert r['peak_bytes'] == (r['argument_bytes'] + r['output_bytes']
                               + r['temp_bytes'] - r['alias_bytes'])
    # Every device holds the whole (replicated) state and its 1/n of the
    # batch; the state is donated, so its buffers are aliased to the output.
    assert r['state_bytes'] > r['params_bytes'] > 0
    assert r['argument_bytes'] >= r['state_bytes'] + _batch_bytes(config) // n
    assert r['output_bytes'] >= r['state_bytes']
    assert r['state_bytes'] <= r['alias_bytes'] <= r['output_bytes']
    assert r['peak_bytes'] >= r['argument_bytes']
    assert r['compile_s'] > 0
  one, many = sorted(runs)
  # Same state per device; the batch and its activations are split.
  assert runs[many]['state_bytes'] == runs[one]['state_bytes']
  assert runs[many]['argument_bytes'] < runs[one]['argument_bytes']
  assert runs[many]['temp_bytes'] < runs[one]['temp_bytes']


def test_gpu_memory_analysis_is_consistent(gpu, smoke):
  assert len(smoke.data.sources) == 2 and not smoke.meta.enabled
  _check_consistent(gpu, smoke, 'NVIDIA H100 80GB HBM3')


def test_tpu_memory_analysis_is_consistent(tpu, smoke):
  _check_consistent(tpu, smoke, 'TPU v5 lite')


def test_state_bytes_are_the_train_states(gpu, smoke):
  from fasjax import model_setup  # pylint: disable=g-import-not-at-top
  nets = model_setup.build_networks(smoke, backend='gpu')
  tx = model_setup.build_optimizer(smoke)
  state = model_setup.abstract_state(nets, tx, smoke.model.image_size)
  assert gpu[1]['state_bytes'] == _bytes_of(state)
  assert gpu[1]['params_bytes'] == _bytes_of(state.params)


def test_fits_the_real_h100_and_not_a_tiny_one(gpu, smoke):
  h100 = deviceless.get_target('h100')
  ok = check_target.judge(smoke, h100, 1, gpu[1], gflop=1.0)
  assert ok['fits'] and 'message' not in ok
  assert ok['usable_memory_gb'] == pytest.approx(
      0.75 * h100.memory_bytes / 1e9, rel=1e-3)
  assert ok['headroom_gb'] == pytest.approx(
      ok['usable_memory_gb'] - ok['xla_peak_memory_gb'], abs=2e-3)
  # Lower bound: 1 GFLOP at H100's TF32 peak, or the state's bytes at its
  # bandwidth, whichever is longer.
  floor = max(1e9 / h100.peak_flops_per_s['float32'],
              (gpu[1]['argument_bytes'] + gpu[1]['output_bytes'])
              / h100.hbm_bytes_per_s)
  assert ok['step_s_lower_bound'] == pytest.approx(floor, rel=1e-3)

  tiny = dataclasses.replace(h100, memory_bytes=gpu[1]['peak_bytes'] // 2)
  bad = check_target.judge(smoke, tiny, 1, gpu[1], gflop=None)
  assert not bad['fits'] and bad['headroom_gb'] < 0
  message = bad['message']
  assert message.startswith('does not fit')
  for words in ('remat policy', 'conv, blocks, domains', '--devices=2',
                'bfloat16', 'per_class_batch'):
    assert words in message, (words, message)


def test_unknown_target_lists_the_known_ones():
  with pytest.raises(deviceless.DevicelessError) as e:
    deviceless.get_target('h200x')
  message = str(e.value)
  assert '\n' not in message
  for name in ('h100', 'a100-80gb', 'a100-40gb', 'l4', 'v4', 'v5e', 'v5p',
               'v6e'):
    assert name in message
  assert deviceless.get_target('A100').name == 'a100-40gb'
  assert deviceless.get_target('H100-80GB').name == 'h100'


def test_every_target_describes_its_devices():
  for t in deviceless.targets().values():
    if deviceless.version_problem(t.platform):
      continue
    for n in (1, t.device_counts()[-1]):
      devices = deviceless.target_devices(t.name, n)
      assert len(devices) == n
      assert devices[0].platform == ('gpu' if t.platform == 'gpu' else 'tpu')
    assert t.memory_bytes > 1e10 and t.hbm_bytes_per_s > 1e11
    assert set(t.peak_flops_per_s) == {'bfloat16', 'float32'}


def test_indivisible_device_count_is_refused_before_compiling(smoke,
                                                               monkeypatch):
  def no_compile(*args, **kwargs):
    raise AssertionError('compiled')
  monkeypatch.setattr(check_target, 'compile_step', no_compile)
  # smoke: 2 x per_class_batch 2 = 4 images per domain; 8 do not divide it.
  with pytest.raises(ca.CheckError, match='does not divide over 8 devices'):
    check_target.run_targets({'smoke': smoke}, ['h100'], 8, False)
  # 3 divides a per-domain batch of 6, but no v5e slice has 3 chips.
  six = smoke.copy_and_resolve_references()
  with six.unlocked():
    six.data.per_class_batch = 3
  with pytest.raises(ca.CheckError, match='v5e is available with 1, 2, 4, 8'):
    check_target.run_targets({'smoke': six}, ['v5e'], 3, False)
  with pytest.raises(deviceless.DevicelessError, match='unknown target'):
    check_target.run_targets({'smoke': smoke}, ['tpu9'], 1, False)


def test_missing_or_mismatched_compilers_name_the_pip_command():
  base = {'jax': '0.10.2', 'jaxlib': '0.10.2', 'jax-cuda12-plugin': '0.10.2',
          'jax-cuda12-pjrt': '0.10.2', 'libtpu': '0.0.42.1'}
  assert deviceless.version_problem('gpu', base) is None
  assert deviceless.version_problem('tpu', base) is None
  missing = deviceless.version_problem(
      'gpu', {**base, 'jax-cuda12-plugin': None})
  assert 'pip install -e ".[aot]"' in missing
  assert 'jax-cuda12-plugin==0.10.2 jax-cuda12-pjrt==0.10.2' in missing
  old = deviceless.version_problem('gpu', {**base, 'jax-cuda12-pjrt': '0.9.0'})
  assert '0.9.0' in old and 'do not match jax 0.10.2' in old
  assert 'libtpu' in deviceless.version_problem('tpu',
                                                {**base, 'libtpu': None})
  bad_tpu = deviceless.version_problem('tpu', {**base, 'libtpu': '0.0.30'})
  assert bad_tpu and 'libtpu 0.0.30 does not match jax 0.10.2' in bad_tpu
  assert deviceless.libtpu_requirement() in bad_tpu


def test_cpu_fallback_warning_only_when_the_cpu_was_not_chosen():
  versions = {'jax': '0.10.2', 'jaxlib': '0.10.2',
              'jax-cuda12-plugin': '0.10.2', 'jax-cuda12-pjrt': '0.10.2',
              'libtpu': None}
  line = deviceless.cpu_fallback_warning('cpu', None, versions)
  assert line and '\n' not in line and 'jax-cuda12-plugin 0.10.2' in line
  assert '.[cuda12]' in line and 'JAX_PLATFORMS=cpu' in line
  assert deviceless.cpu_fallback_warning('cpu', 'cpu', versions) is None
  assert deviceless.cpu_fallback_warning('cpu', 'cuda,cpu', versions)
  assert deviceless.cpu_fallback_warning('gpu', None, versions) is None
  none = {**versions, 'jax-cuda12-plugin': None, 'jax-cuda12-pjrt': None}
  assert deviceless.cpu_fallback_warning('cpu', None, none) is None


def test_check_command_reports_the_target(gpu, capsys):
  # The fixture's compile is reused (check_target memoises compile_step).
  report = ca.main(['--target=h100', '--devices=2', '--json', *SMOKE])
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 1
  line = json.loads(lines[0])
  assert line == json.loads(json.dumps(report['targets'][0]))
  assert line['target'] == 'h100' and line['devices'] == 2
  assert line['topology'] == '1x1x2' and line['platform'] == 'gpu'
  assert line['device_kind'] == 'NVIDIA H100 80GB HBM3'
  (name, r), = line['configs'].items()
  assert name == 'configs/mi_to_c.py:smoke,no_meta,no_parsing,no_asc'
  assert r['xla_peak_memory_gb'] == pytest.approx(gpu[2]['peak_bytes'] / 1e9,
                                                  abs=1e-4)
  assert r['fits'] and r['step_gflop'] > 0 and r['step_s_lower_bound'] > 0
  assert r['conv_impl'] == 'xla' and r['remat'] == 'none'


@pytest.mark.parametrize('args,words', [
    (['--target=h100', '--devices=3'], ['does not divide over 3 devices']),
    (['--target=h99'], ['unknown target', 'h100 (gpu)', 'v5e (tpu)']),
    (['--remat=all'], ['--remat=all', '--target']),
    (['--target=h100', '--config.model.remat=nope'], ['remat policy']),
])
def test_check_command_refuses_bad_input(args, words, capsys):
  with pytest.raises(SystemExit) as e:
    ca.main([*args, *SMOKE])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1, err
  for w in words:
    assert w in err[0], (w, err[0])


def test_remat_all_marks_the_cheapest_policy_that_fits(smoke, monkeypatch):
  # Fake compiles (the arithmetic of choosing is tested, not XLA): peak GB
  # and GFLOP per policy, as the paper step's order of both.
  peak = {'none': 36, 'conv': 23, 'blocks': 23.3, 'domains': 8.3}
  gflop = {'none': 23.7, 'conv': 23.7, 'blocks': 29.4, 'domains': 31.5}

  def fake_compile(config, target, devices, compiler_options=None):
    b = int(peak[config.model.remat] * 1e9)
    return {'compile_s': 1.0, 'device_kind': 'fake', 'conv_impl': 'xla',
            'peak_bytes': b, 'argument_bytes': 10**8, 'output_bytes': 10**7,
            'temp_bytes': b - 10**8, 'alias_bytes': 10**7,
            'state_bytes': 10**7, 'params_bytes': 10**6}
  monkeypatch.setattr(check_target, 'compile_step', fake_compile)
  monkeypatch.setattr(check_target, '_gflop',
                      lambda config, target: gflop[config.model.remat])
  cheapest = {}
  for name in ('h100', 'a100-40gb', 'l4'):  # 63.7, 31.7, 18.1 GB usable
    report, = check_target.run_targets({'s': smoke}, [name], 1, True,
                                       emit=lambda r: None)
    entry = report['configs']['s']
    assert set(entry['policies']) == {'none', 'conv', 'blocks', 'domains'}
    cheapest[name] = entry['cheapest_fitting']
  # none and conv cost the same FLOPs: the first listed that fits wins.
  assert cheapest == {'h100': 'none', 'a100-40gb': 'conv', 'l4': 'domains'}
  tiny = dataclasses.replace(deviceless.get_target('l4'), memory_bytes=10**9)
  monkeypatch.setattr(deviceless, 'get_target', lambda name: tiny)
  report, = check_target.run_targets({'s': smoke}, ['l4'], 1, True,
                                     emit=lambda r: None)
  entry = report['configs']['s']
  assert entry['cheapest_fitting'] is None
  assert entry['message'].startswith('does not fit: 8.30 GB')


def test_deviceless_compiles_skip_the_persistent_cache(tmp_path):
  # A deviceless executable cannot be read back from JAX's persistent cache;
  # compile_on keeps it out, and the cache works again for CPU compiles.
  _skip_unless('gpu')
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax.experimental.compilation_cache import compilation_cache as cc  # pylint: disable=g-import-not-at-top
  from fasjax import compilation_cache  # pylint: disable=g-import-not-at-top
  names = ('jax_enable_compilation_cache', 'jax_compilation_cache_dir')
  saved = {n: getattr(jax.config, n) for n in names}
  mesh = jax.sharding.Mesh(deviceless.target_devices('h100', 1), ('d',))
  spec = jax.ShapeDtypeStruct((64, 64), jnp.float32,
                              sharding=jax.sharding.NamedSharding(
                                  mesh, jax.sharding.PartitionSpec()))
  try:
    compilation_cache.configure(str(tmp_path))
    with check_target._persistent_cache(enabled=False):  # pylint: disable=protected-access
      jax.jit(lambda a: jnp.sin(a) @ a + 0.4242).lower(spec).compile()
    assert not list(tmp_path.iterdir())
    assert jax.config.jax_enable_compilation_cache
    jax.jit(lambda a: jnp.sin(a) @ a + 0.4343).lower(
        jnp.zeros((64, 64), jnp.float32)).compile()
    assert list(tmp_path.iterdir())
  finally:
    for name, value in saved.items():
      jax.config.update(name, value)
    cc.reset_cache()
