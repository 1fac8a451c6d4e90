"""A real one-node SLURM cluster on this host, for tests.

Starts munged (or falls back to auth/none), slurmctld and slurmd from Debian's
slurm-wlm with a generated slurm.conf in a temporary directory, and stops
them. Client commands (sbatch, squeue, scancel) find the cluster through the
SLURM_CONF environment variable, which `env()` returns and `start()` sets in
os.environ while the cluster runs.

    cluster = slurm_cluster.start(tmp_dir)   # raises ClusterUnavailable
    ...
    cluster.stop()

`.ci/run` installs the packages (apt-get install slurm-wlm munge); where they
are missing or the daemons cannot start, ClusterUnavailable says why, with the
daemon's log, and the tests skip with that reason.
"""

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import time


class ClusterUnavailable(RuntimeError):
  """The daemons are not installed or did not start."""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _tail(path: str, n: int = 1500) -> str:
  try:
    with open(path, errors='replace') as f:
      return f.read()[-n:]
  except OSError:
    return '(no log)'


def _memory_mb() -> int:
  with open('/proc/meminfo') as f:
    for line in f:
      if line.startswith('MemTotal:'):
        return int(line.split()[1]) // 1024 // 2
  return 1024


@dataclasses.dataclass
class Cluster:
  root: str
  conf: str
  procs: list[subprocess.Popen]
  logs: dict[str, str]
  auth: str

  def env(self) -> dict[str, str]:
    return {'SLURM_CONF': self.conf}

  def stop(self) -> None:
    subprocess.run(['scancel', '--full', '--user', str(os.getuid())],
                   env=dict(os.environ, **self.env()),
                   capture_output=True, check=False, timeout=30)
    for proc in reversed(self.procs):
      if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    for proc in reversed(self.procs):
      try:
        proc.wait(timeout=15)
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if os.environ.get('SLURM_CONF') == self.conf:
      del os.environ['SLURM_CONF']


def _start_munge(root: str, procs: list, logs: dict) -> str | None:
  """Starts a private munged; returns its socket, or None if it cannot run."""
  munged = shutil.which('munged') or (
      '/usr/sbin/munged' if os.path.exists('/usr/sbin/munged') else None)
  if not munged:
    return None
  mdir = os.path.join(root, 'munge')
  os.makedirs(mdir, mode=0o700, exist_ok=True)
  key = os.path.join(mdir, 'munge.key')
  with open(key, 'wb') as f:
    f.write(os.urandom(128))
  os.chmod(key, 0o400)
  sock = os.path.join(mdir, 'munge.socket')
  logs['munged'] = os.path.join(mdir, 'munged.log')
  proc = subprocess.Popen(
      [munged, '--foreground', '--force', f'--socket={sock}',
       f'--key-file={key}', f'--pid-file={mdir}/munged.pid',
       f'--seed-file={mdir}/munged.seed', f'--log-file={logs["munged"]}'],
      stdout=open(logs['munged'] + '.out', 'w'), stderr=subprocess.STDOUT,
      start_new_session=True)
  procs.append(proc)
  deadline = time.time() + 10
  while not os.path.exists(sock):
    if proc.poll() is not None or time.time() > deadline:
      return None
    time.sleep(0.1)
  return sock


def start(root: str, cpus: int = 2, timeout: float = 40) -> Cluster:
  """Starts the cluster in `root`; raises ClusterUnavailable with the reason."""
  missing = [b for b in ('slurmctld', 'slurmd', 'sbatch', 'squeue', 'scancel')
             if not (shutil.which(b) or os.path.exists(f'/usr/sbin/{b}'))]
  if missing:
    raise ClusterUnavailable(
        f'SLURM is not installed (missing {", ".join(missing)}); install it '
        'with apt-get install slurm-wlm munge (.ci/run does).')
  os.makedirs(root, exist_ok=True)
  procs: list[subprocess.Popen] = []
  logs: dict[str, str] = {}
  sock = _start_munge(root, procs, logs)
  if sock:
    auth = f'AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={sock}'
  else:
    auth = 'AuthType=auth/none\nCredType=cred/none'
  host = socket.gethostname().split('.')[0]
  state = os.path.join(root, 'state')
  spool = os.path.join(root, 'spool')
  os.makedirs(state, exist_ok=True)
  os.makedirs(spool, exist_ok=True)
  logs['slurmctld'] = os.path.join(root, 'slurmctld.log')
  logs['slurmd'] = os.path.join(root, 'slurmd.log')
  conf = os.path.join(root, 'slurm.conf')
  with open(conf, 'w') as f:
    f.write(f"""\
ClusterName=fasjaxtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
{auth}
StateSaveLocation={state}
SlurmdSpoolDir={spool}/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={logs['slurmctld']}
SlurmdLogFile={logs['slurmd']}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
MinJobAge=600
KillWait=5
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={_memory_mb()} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
  env = dict(os.environ, SLURM_CONF=conf)
  cluster = Cluster(root, conf, procs, logs, 'munge' if sock else 'none')
  try:
    for daemon, args in (('slurmctld', ['-D', '-i']),
                         ('slurmd', ['-D', '-N', host])):
      binary = shutil.which(daemon) or f'/usr/sbin/{daemon}'
      out = os.path.join(root, f'{daemon}.out')
      proc = subprocess.Popen([binary, '-f', conf] + args, env=env,
                              stdout=open(out, 'w'), stderr=subprocess.STDOUT,
                              start_new_session=True)
      procs.append(proc)
      time.sleep(1)
      if proc.poll() is not None:
        raise ClusterUnavailable(
            f'{daemon} exited with {proc.returncode}: {_tail(out)} '
            f'{_tail(logs[daemon])}')
    deadline = time.time() + timeout
    while True:
      info = subprocess.run(['sinfo', '-h', '-o', '%T'], env=env,
                            capture_output=True, text=True, check=False)
      if info.returncode == 0 and info.stdout.strip() in ('idle', 'mixed'):
        break
      for proc, daemon in zip(procs[-2:], ('slurmctld', 'slurmd')):
        if proc.poll() is not None:
          raise ClusterUnavailable(
              f'{daemon} exited with {proc.returncode}: '
              f'{_tail(logs[daemon])}')
      if time.time() > deadline:
        raise ClusterUnavailable(
            f'the node did not become idle within {timeout:.0f} s (sinfo: '
            f'{info.stdout.strip() or info.stderr.strip()}); slurmd log: '
            f'{_tail(logs["slurmd"])}')
      time.sleep(0.5)
  except BaseException:
    cluster.stop()
    raise
  os.environ['SLURM_CONF'] = conf
  return cluster
