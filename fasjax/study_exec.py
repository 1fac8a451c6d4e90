"""How the cells of a study run: one after another, in parallel here, or on SLURM.

Each cell is a `CellTask`: its name (protocol/variant/seedN), its sub-workdir
and the launch.py command that trains it; launch.py resumes from the latest
checkpoint when rerun in the same sub-workdir, so every executor only has to
start the unfinished cells again. `fasjax.study` decides which cells are
unfinished (no results.json) and hands them to one of:

- `LocalExecutor(slots)`: each slot is one cell at a time with its own
  environment (CUDA_VISIBLE_DEVICES, or the TPU_* variables that give a
  process a subset of a TPU host's chips) or CPU set (sched_setaffinity: XLA
  and TensorFlow size their thread pools by the CPUs a process may run on, so
  pinning also splits the threads). `sequential` is this with one unpinned
  slot, stopping at the first failure as before.
- `SlurmExecutor`: every cell a SLURM job (an sbatch job array) through
  submitit. Job ids are recorded per cell, so a rerun of the study reattaches
  to jobs that are still queued or running instead of submitting them twice.

Failures come back as a list of messages naming the cell and its log.
"""

import dataclasses
import glob
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import time
from typing import Any, Callable, Sequence

from absl import logging

try:
  import submitit
  _Checkpointable = submitit.helpers.Checkpointable
except ImportError:  # Only the slurm executor needs it.
  submitit = None
  _Checkpointable = object

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXECUTORS = ('sequential', 'local', 'slurm')
CELL_LOG = 'study_cell.log'
SLURM_RECORD = 'slurm_job.json'
# Chips per process -> TPU_CHIPS_PER_PROCESS_BOUNDS (one TPU VM host).
TPU_BOUNDS = {1: '1,1,1', 2: '1,2,1', 4: '2,2,1', 8: '2,4,1'}
_SLURM_ALIVE = ('PENDING', 'RUNNING', 'CONFIGURING', 'COMPLETING', 'REQUEUED',
                'REQUEUE_HOLD', 'REQUEUE_FED', 'RESIZING', 'SUSPENDED',
                'PREEMPTED', 'SIGNALING', 'STAGE_OUT', 'RESV_DEL_HOLD')


@dataclasses.dataclass(frozen=True)
class CellTask:
  """One cell to train: `command` run in ROOT, output to cell_dir/CELL_LOG."""
  name: str
  cell_dir: str
  command: tuple[str, ...]

  @property
  def log(self) -> str:
    return os.path.join(self.cell_dir, CELL_LOG)


def cell_env(extra: dict[str, str] | None = None) -> dict[str, str]:
  """This process's environment with fasjax importable, plus `extra`."""
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
      filter(None, [ROOT, env.get('PYTHONPATH')]))
  env.update(extra or {})
  return env


def failure_message(task: CellTask, how: str) -> str:
  return f'Cell {task.name} failed ({how}); see {task.log}.'


def train_cell(task: CellTask) -> str:
  """Trains one cell to the end in a subprocess; returns its cell_dir.

  The job function of the slurm executor (it runs inside the SLURM job).
  Raises RuntimeError naming the log when launch.py fails.
  """
  os.makedirs(task.cell_dir, exist_ok=True)
  with open(task.log, 'a') as log:
    proc = subprocess.run(list(task.command), cwd=ROOT, env=cell_env(),
                          stdout=log, stderr=subprocess.STDOUT, check=False)
  if proc.returncode != 0:
    how = f'exit {proc.returncode}'
    if proc.returncode < 0:
      how += f' = {signal.Signals(-proc.returncode).name}'
    raise RuntimeError(failure_message(task, how))
  return task.cell_dir


class SlurmCellJob(_Checkpointable):
  """A cell as a submitit job. Checkpointable: on a time limit or preemption
  submitit requeues it, and launch.py resumes from its latest checkpoint."""

  def __init__(self, task: CellTask):
    self.task = task

  def __call__(self) -> str:
    return train_cell(self.task)


# ---------------------------------------------------------------- progress


def format_duration(seconds: float) -> str:
  """'1h02m03s' style duration."""
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


class Progress:
  """Cells done over the whole study and an ETA.

  The ETA is the mean time of the cells finished in this session times the
  cells left, divided by how many run at once (`parallel`, capped by the
  cells left): with N slots busy, N cells finish per mean cell time.
  """

  def __init__(self, total: int, done: int, parallel: int = 1,
               on_finished: Callable[[CellTask], None] | None = None):
    self.total, self.done, self.parallel = total, done, max(1, parallel)
    self.on_finished = on_finished
    self.run_times: list[float] = []
    self.running = 0

  def eta(self) -> float | None:
    left = self.total - self.done
    if not self.run_times or left <= 0:
      return None
    return statistics.mean(self.run_times) * left / min(self.parallel, left)

  def line(self) -> str:
    line = f'study: {self.done}/{self.total} cells done'
    if self.running > 1 or self.parallel > 1:
      line += f', {self.running} running'
    eta = self.eta()
    if eta is not None:
      line += f', ETA {format_duration(eta)}'
    return line

  def finished(self, seconds: float | None,
               task: CellTask | None = None) -> None:
    """Counts a finished cell; hands its task to `on_finished` (archive)."""
    self.done += 1
    if seconds is not None:
      self.run_times.append(seconds)
    if task is not None and self.on_finished is not None:
      self.on_finished(task)


# ------------------------------------------------------ devices and slots


@dataclasses.dataclass(frozen=True)
class Slot:
  """Where one cell runs: extra environment and, on a CPU, a CPU set."""
  name: str
  env: dict[str, str] = dataclasses.field(default_factory=dict)
  cpus: tuple[int, ...] = ()


def detect_devices() -> tuple[str, list[str]]:
  """('gpu'|'tpu'|'cpu', device ids) without initialising JAX here.

  (Initialising JAX in the study process would take GPU memory away from the
  cells.) GPUs: CUDA_VISIBLE_DEVICES if set, else nvidia-smi. TPUs: the chips'
  device files (/dev/accel*, /dev/vfio/<n>). JAX_PLATFORMS=cpu means CPU.
  """
  if os.environ.get('JAX_PLATFORMS', '').strip().lower() == 'cpu':
    return 'cpu', [str(c) for c in sorted(os.sched_getaffinity(0))]
  cvd = os.environ.get('CUDA_VISIBLE_DEVICES')
  if cvd is not None and cvd.strip() not in ('', '-1'):
    return 'gpu', [d.strip() for d in cvd.split(',') if d.strip()]
  if cvd is None and shutil.which('nvidia-smi'):
    try:
      out = subprocess.run(
          ['nvidia-smi', '--query-gpu=index', '--format=csv,noheader'],
          capture_output=True, text=True, timeout=30, check=True).stdout
      ids = [line.strip() for line in out.splitlines() if line.strip()]
      if ids:
        return 'gpu', ids
    except (OSError, subprocess.SubprocessError):
      pass
  chips = glob.glob('/dev/accel[0-9]*') or [
      p for p in glob.glob('/dev/vfio/*') if os.path.basename(p).isdigit()]
  if chips:
    return 'tpu', [str(i) for i in range(len(chips))]
  return 'cpu', [str(c) for c in sorted(os.sched_getaffinity(0))]


def make_slots(kind: str, devices: Sequence[str], max_parallel: int,
               devices_per_cell: int) -> list[Slot]:
  """Disjoint device groups, one per cell running at once.

  On accelerators a cell gets `devices_per_cell` devices and there are at most
  len(devices) // devices_per_cell slots. On a CPU `devices_per_cell` is CPU
  cores per cell, each cell pinned to its own (0: unpinned processes sharing
  the cores; pinning changes XLA's CPU thread count and so the numbers).
  max_parallel=0 means as many as the devices allow (on a CPU: one cell per
  4 cores, at least one).
  """
  if devices_per_cell < 0 or max_parallel < 0:
    raise ValueError('--max_parallel and --devices_per_cell must be >= 0.')
  n_dev = len(devices)
  if kind == 'cpu':
    if max_parallel == 0:
      max_parallel = (n_dev // devices_per_cell if devices_per_cell
                      else max(1, n_dev // 4))
    # Pinned only on request: XLA's CPU results depend on its thread count
    # (measured: a smoke cell pinned to 1 of 2 cores ends with other scores
    # than unpinned), so by default cells match a sequential study.
    per = devices_per_cell
    if per == 0 or per * max_parallel > n_dev:
      # More cells than cores: plain processes sharing the CPUs.
      return [Slot(f'cpu-shared{i}') for i in range(max(1, max_parallel))]
    return [Slot(f'cpus{",".join(devices[i * per:(i + 1) * per])}',
                 cpus=tuple(int(c) for c in devices[i * per:(i + 1) * per]))
            for i in range(max_parallel)]
  per = devices_per_cell or 1
  n = n_dev // per
  if n == 0:
    raise ValueError(f'--devices_per_cell={per} but only {n_dev} {kind}(s) '
                     f'are visible ({",".join(devices)}).')
  if max_parallel:
    if max_parallel > n:
      logging.warning('--max_parallel=%d but %d %s(s) give only %d slots of '
                      '%d; running %d at once.', max_parallel, n_dev, kind, n,
                      per, n)
    n = min(n, max_parallel)
  slots = []
  for i in range(n):
    group = list(devices[i * per:(i + 1) * per])
    ids = ','.join(group)
    if kind == 'gpu':
      env = {'CUDA_VISIBLE_DEVICES': ids}
    else:
      if per not in TPU_BOUNDS:
        raise ValueError(f'--devices_per_cell on a TPU host must be one of '
                         f'{sorted(TPU_BOUNDS)}, not {per}.')
      port = str(8476 + i)
      env = {'TPU_VISIBLE_CHIPS': ids, 'TPU_VISIBLE_DEVICES': ids,
             'TPU_CHIPS_PER_PROCESS_BOUNDS': TPU_BOUNDS[per],
             'TPU_PROCESS_BOUNDS': '1,1,1', 'TPU_PROCESS_PORT': port,
             'TPU_PROCESS_ADDRESSES': f'localhost:{port}',
             'TPU_MESH_CONTROLLER_ADDRESS': f'localhost:{port}',
             'TPU_MESH_CONTROLLER_PORT': port, 'CLOUD_TPU_TASK_ID': '0'}
    slots.append(Slot(f'{kind}{ids}', env=env))
  return slots


def _child_setup(cpus: tuple[int, ...]) -> Callable[[], None]:
  """Runs in the child before exec: CPU pinning, and death with the study.

  PR_SET_PDEATHSIG: a cell whose study process dies (even by SIGKILL) is
  killed too, instead of training on, holding its workdir lock and racing
  the rerun. It resumes from its checkpoint in the rerun.
  """
  def setup():
    if cpus:
      os.sched_setaffinity(0, cpus)
    try:
      import ctypes  # pylint: disable=g-import-not-at-top
      ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PDEATHSIG
    except (OSError, AttributeError):
      pass
  return setup


# ------------------------------------------------------------- executors


class LocalExecutor:
  """Runs cells as subprocesses of this process, one per free slot."""

  def __init__(self, slots: Sequence[Slot], stop_on_failure: bool = True,
               poll_s: float = 0.5):
    self.slots = list(slots)
    self.stop_on_failure = stop_on_failure
    self.poll_s = poll_s

  @property
  def parallel(self) -> int:
    return len(self.slots)

  def run(self, tasks: Sequence[CellTask], progress: Progress) -> list[str]:
    """Runs `tasks`; returns failure messages (empty when all succeeded).

    After a failure no further cell starts (the running ones finish, their
    work is kept); the cells not started are reported as such.
    """
    queue = list(tasks)
    free = list(self.slots)
    running: dict[subprocess.Popen, tuple[CellTask, Slot, float, Any]] = {}
    failures: list[str] = []
    old_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
      del signum, frame
      raise KeyboardInterrupt('SIGTERM')

    if old_term in (signal.SIG_DFL, None):
      signal.signal(signal.SIGTERM, on_term)
    try:
      while queue or running:
        while queue and free and not (failures and self.stop_on_failure):
          task, slot = queue.pop(0), free.pop(0)
          os.makedirs(task.cell_dir, exist_ok=True)
          log = open(task.log, 'a')
          where = f' on {slot.name}' if len(self.slots) > 1 else ''
          logging.info('Running cell %s%s.', task.name, where)
          proc = subprocess.Popen(
              list(task.command), cwd=ROOT, env=cell_env(slot.env),
              stdout=log, stderr=subprocess.STDOUT,
              preexec_fn=_child_setup(slot.cpus))
          running[proc] = (task, slot, time.time(), log)
          progress.running = len(running)
        if not running:
          break
        time.sleep(self.poll_s)
        for proc in [p for p in running if p.poll() is not None]:
          task, slot, t0, log = running.pop(proc)
          log.close()
          free.insert(0, slot)
          progress.running = len(running)
          if proc.returncode == 0:
            progress.finished(time.time() - t0, task)
            logging.info('%s (cell %s took %s)', progress.line(), task.name,
                         format_duration(time.time() - t0))
          else:
            failures.append(failure_message(task, f'exit {proc.returncode}'))
            logging.error(failures[-1])
    finally:
      for proc, (task, _, _, log) in running.items():
        proc.terminate()
      for proc, (task, _, _, log) in running.items():
        try:
          proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
          proc.kill()
          proc.wait()
        log.close()
      if old_term in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if queue:
      failures.append(f'{len(queue)} cell(s) not started after the failure: '
                      + ', '.join(t.name for t in queue) + '.')
    return failures


def parse_slurm_time(value: str) -> int:
  """SLURM time ('MM', 'HH:MM:SS', 'D-HH:MM[:SS]') -> whole minutes."""
  m = re.fullmatch(r'(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?', value.strip())
  if not m:
    raise ValueError(f'Bad --slurm_time {value!r}: use minutes, HH:MM:SS or '
                     'D-HH:MM:SS.')
  days, a, b, c = m.groups()
  if days is None and b is None:
    minutes = int(a)  # Plain minutes.
  elif c is None and days is None:
    minutes = int(a) + int(b) / 60  # MM:SS
  else:
    h, mi, s = int(a), int(b or 0), int(c or 0)
    minutes = (int(days or 0) * 24 + h) * 60 + mi + s / 60
  return max(1, math.ceil(minutes))


def parse_additional(items: Sequence[str]) -> dict[str, str]:
  """['key=value', ...] -> {key: value} for extra sbatch options."""
  out = {}
  for item in items:
    key, sep, value = item.partition('=')
    key = key.strip().lstrip('-').replace('-', '_')
    if not sep or not key:
      raise ValueError(f'Bad --slurm_additional {item!r}: use key=value, e.g. '
                       'account=myproject or constraint=a100.')
    out[key] = value
  return out


def slurm_missing() -> str | None:
  """Why the slurm executor cannot run here, with the fix; None if it can."""
  problems = []
  if submitit is None:
    problems.append('the Python package submitit is not installed (pip '
                    'install submitit, or pip install ".[slurm]")')
  if not shutil.which('sbatch'):
    problems.append('sbatch is not on the PATH (run the study on a SLURM '
                    'login node, or load the cluster\'s slurm module, e.g. '
                    '`module load slurm`)')
  if not problems:
    return None
  return ('--executor=slurm cannot run: ' + '; and '.join(problems) + '.')


def squeue_states(job_ids: Sequence[str]) -> dict[str, str] | None:
  """{job id: state} of this user's queued/running jobs among job_ids.

  squeue works without SLURM accounting (sacct, which submitit asks, needs
  slurmdbd). None when squeue itself fails (then nothing is judged gone).
  """
  try:
    out = subprocess.run(
        ['squeue', '--noheader', '--array', '--user', str(os.getuid()),
         '--format=%i|%T'], capture_output=True, text=True, timeout=60,
        check=True).stdout
  except (OSError, subprocess.SubprocessError) as e:
    logging.warning('squeue failed (%s); retrying later.', e)
    return None
  wanted = set(job_ids)
  states = {}
  for line in out.splitlines():
    jid, _, state = line.strip().partition('|')
    if jid in wanted:
      states[jid] = state
  return states


class SlurmExecutor:
  """Each cell a SLURM job; all unfinished cells are one sbatch job array.

  `cluster='local'` runs the same code on submitit's local executor (tests,
  no SLURM), judging a job gone by submitit instead of squeue.
  """

  def __init__(self, workdir: str, *, partition: str | None = None,
               time_min: int = 240, gpus_per_job: int = 0,
               cpus_per_job: int = 0, mem: str | None = None,
               array_parallelism: int = 0,
               additional: dict[str, str] | None = None,
               poll_s: float = 15.0, cluster: str = 'slurm'):
    if submitit is None:
      raise RuntimeError(slurm_missing())
    self.workdir = workdir
    self.cluster = cluster
    self.poll_s = poll_s
    self.array_parallelism = array_parallelism
    params: dict[str, Any] = {'timeout_min': time_min, 'name': 'fasjax-study'}
    if cluster == 'slurm':
      params['slurm_additional_parameters'] = dict(additional or {})
      if partition:
        params['slurm_partition'] = partition
      if gpus_per_job:
        params['slurm_gpus_per_node'] = gpus_per_job
      if cpus_per_job:
        params['slurm_cpus_per_task'] = cpus_per_job
      if mem:
        params['slurm_mem'] = mem
      if array_parallelism:
        params['slurm_array_parallelism'] = array_parallelism
      # The job unpickles fasjax.study_exec.SlurmCellJob: make fasjax
      # importable there whatever the job's working directory is.
      params['slurm_setup'] = [
          f'export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}']
    self.params = params

  @property
  def parallel(self) -> int:
    return self.array_parallelism or 0

  def _folder(self) -> str:
    return os.path.join(self.workdir, 'slurm_jobs')

  def _record_path(self, task: CellTask) -> str:
    return os.path.join(task.cell_dir, SLURM_RECORD)

  def _reattach(self, task: CellTask, alive: dict[str, str] | None):
    """A still queued/running job of this cell from an earlier session."""
    try:
      with open(self._record_path(task)) as f:
        rec = json.load(f)
    except (OSError, ValueError):
      return None
    if self.cluster != 'slurm' or alive is None:
      return None
    if alive.get(rec['job_id']) not in _SLURM_ALIVE:
      return None
    logging.info('Cell %s: reattaching to SLURM job %s (%s).', task.name,
                 rec['job_id'], alive[rec['job_id']])
    return submitit.SlurmJob(folder=rec['folder'], job_id=rec['job_id'])

  def _link_logs(self, task: CellTask, job) -> None:
    with open(self._record_path(task), 'w') as f:
      json.dump({'job_id': str(job.job_id), 'folder': self._folder(),
                 'stdout': str(job.paths.stdout),
                 'stderr': str(job.paths.stderr)}, f, indent=2)
    for name, target in (('slurm_job.out', job.paths.stdout),
                         ('slurm_job.err', job.paths.stderr)):
      link = os.path.join(task.cell_dir, name)
      if os.path.lexists(link):
        os.remove(link)
      os.symlink(str(target), link)

  def run(self, tasks: Sequence[CellTask], progress: Progress) -> list[str]:
    jobs: dict[str, tuple[CellTask, Any]] = {}
    alive = None
    if self.cluster == 'slurm':
      ids = []
      for task in tasks:
        try:
          with open(self._record_path(task)) as f:
            ids.append(json.load(f)['job_id'])
        except (OSError, ValueError, KeyError):
          pass
      alive = squeue_states(ids) if ids else {}
    to_submit = []
    for task in tasks:
      os.makedirs(task.cell_dir, exist_ok=True)
      job = self._reattach(task, alive)
      if job is None:
        to_submit.append(task)
      else:
        jobs[str(job.job_id)] = (task, job)
    if to_submit:
      executor = submitit.AutoExecutor(folder=os.path.join(self._folder(),
                                                           '%j'),
                                       cluster=self.cluster)
      executor.update_parameters(**self.params)
      with executor.batch():
        submitted = [executor.submit(SlurmCellJob(t)) for t in to_submit]
      for task, job in zip(to_submit, submitted):
        self._link_logs(task, job)
        jobs[str(job.job_id)] = (task, job)
        logging.info('Cell %s: SLURM job %s, logs %s and %s.', task.name,
                     job.job_id, task.log, job.paths.stderr)
    return self._wait(jobs, progress)

  def _wait(self, jobs: dict[str, tuple[CellTask, Any]],
            progress: Progress) -> list[str]:
    failures: list[str] = []
    started: dict[str, float] = {}
    gone_since: dict[str, float] = {}
    t_submit = time.time()
    while jobs:
      states = (squeue_states(list(jobs)) if self.cluster == 'slurm'
                else None)
      for jid, (task, job) in list(jobs.items()):
        state = states.get(jid) if states is not None else None
        if state == 'RUNNING' and jid not in started:
          started[jid] = time.time()
        result_ready = os.path.exists(job.paths.result_pickle)
        if self.cluster == 'slurm':
          if not result_ready and states is not None and state is None:
            # Gone from the queue without a result: cancelled, timed out or
            # killed. Wait one more poll for a slow shared file system.
            gone_since.setdefault(jid, time.time())
            if time.time() - gone_since[jid] < max(2 * self.poll_s, 5):
              continue
          elif not result_ready:
            gone_since.pop(jid, None)
            continue
        elif not job.done():
          continue
        del jobs[jid]
        try:
          if not result_ready and not os.path.exists(job.paths.result_pickle):
            raise RuntimeError(f'SLURM job {jid} ended without a result '
                               f'({_scontrol_state(jid)})')
          job.result()
        except Exception as e:  # pylint: disable=broad-except
          how = _failure_reason(e)
          if self.cluster == 'slurm':
            how += f', {_scontrol_state(jid)}'
          failures.append(f'Cell {task.name} failed in SLURM job {jid} '
                          f'({how[:300]}); see {task.log} and '
                          f'{job.paths.stderr}.')
          logging.error(failures[-1])
          continue
        t0 = started.get(jid, t_submit)
        progress.finished(time.time() - t0, task)
        logging.info('%s (cell %s, job %s)', progress.line(), task.name, jid)
      if states is not None:
        progress.running = sum(1 for j in jobs if states.get(j) == 'RUNNING')
      if jobs:
        time.sleep(self.poll_s)
    return failures


def _failure_reason(error: Exception) -> str:
  """'exit 3' from the job function's error, else the error's last line."""
  text = str(error)
  m = re.search(r'failed \((exit [^)]*)\)', text)
  if m:
    return m.group(1)
  lines = [ln.strip() for ln in text.splitlines() if 'Error' in ln]
  return lines[-1] if lines else (text.strip().splitlines() or
                                  [type(error).__name__])[-1]


# States of a job SLURM has not finished with yet.
_ACTIVE_STATES = ('PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING',
                  'SUSPENDED', 'REQUEUED', 'RESIZING', 'SIGNALING',
                  'STAGE_OUT')


def _scontrol_state(job_id: str, settle_s: float = 60.0) -> str:
  """'state CANCELLED', 'state TIMEOUT', ... once SLURM has finished the job.

  A cancelled job's function may write its (failed) result before SLURM
  marks the job CANCELLED, so the state is read again until it is final or
  `settle_s` has passed.
  """
  deadline = time.time() + settle_s
  while True:
    try:
      out = subprocess.run(['scontrol', '-o', 'show', 'job', job_id],
                           capture_output=True, text=True, timeout=30,
                           check=False).stdout
    except (OSError, subprocess.SubprocessError):
      return 'state unknown'
    m = re.search(r'JobState=(\S+)', out)
    if not m:
      return 'state no longer known to SLURM'
    if m.group(1) not in _ACTIVE_STATES or time.time() > deadline:
      return f'state {m.group(1)}'
    time.sleep(1)


def cell_failure_summary(failures: Sequence[str]) -> str:
  return ('\n'.join(failures) +
          '\nRerun the same command to resume the study: finished cells are '
          'kept, unfinished ones resume from their latest checkpoint.')


def make_executor(name: str, workdir: str, **kw: Any):
  """The executor for --executor=name (flags in `kw`)."""
  if name == 'sequential':
    return LocalExecutor([Slot('sequential')], stop_on_failure=True)
  if name == 'local':
    kind, devices = detect_devices()
    slots = make_slots(kind, devices, kw.get('max_parallel', 0),
                       kw.get('devices_per_cell', 0))
    logging.info('Local executor: %d cell(s) at once on %s: %s.', len(slots),
                 kind, ', '.join(s.name for s in slots))
    return LocalExecutor(slots, stop_on_failure=True)
  if name == 'slurm':
    return SlurmExecutor(
        workdir, partition=kw.get('slurm_partition'),
        time_min=parse_slurm_time(kw.get('slurm_time', '4:00:00')),
        gpus_per_job=kw.get('slurm_gpus_per_job', 0),
        cpus_per_job=kw.get('slurm_cpus_per_job', 0),
        mem=kw.get('slurm_mem'),
        array_parallelism=kw.get('slurm_array_parallelism', 0),
        additional=parse_additional(kw.get('slurm_additional', [])),
        poll_s=kw.get('slurm_poll_s', 15.0))
  raise ValueError(f'Unknown executor {name!r}; valid: {", ".join(EXECUTORS)}.')
