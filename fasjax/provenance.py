"""What a run records about itself: config, git commit and library versions."""

import importlib.metadata
import json
import os
import platform
import subprocess
from typing import Any

import ml_collections

PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint',
            'tensorflow-datasets', 'tensorflow-cpu', 'tensorflow', 'clu',
            'numpy', 'ml-collections')


def git_commit() -> str:
  """The source tree's commit (with '+dirty' if modified), or 'unknown'."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root, text=True,
                            capture_output=True, check=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                           cwd=root, text=True, capture_output=True,
                           check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'
  return commit + ('+dirty' if dirty else '')


def versions() -> dict[str, str]:
  """Installed versions of the libraries a result depends on."""
  found = {'python': platform.python_version()}
  for name in PACKAGES:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      continue
  return found


def write_json(path: str, value: Any) -> None:
  """Writes JSON atomically (a crash leaves the old file or the new one)."""
  write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + '\n')
              .encode())


def write_bytes(path: str, value: bytes) -> None:
  """Writes bytes atomically (a crash leaves the old file or the new one)."""
  tmp = f'{path}.tmp'
  with open(tmp, 'wb') as f:
    f.write(value)
  os.replace(tmp, path)


def record(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes WORKDIR/config.json and WORKDIR/provenance.json."""
  os.makedirs(workdir, exist_ok=True)
  write_json(os.path.join(workdir, 'config.json'), config.to_dict())
  write_json(os.path.join(workdir, 'provenance.json'),
             {'git_commit': git_commit(), 'versions': versions(),
              'machine': platform.platform()})
