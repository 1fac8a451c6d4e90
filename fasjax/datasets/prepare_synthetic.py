"""Generates the built-in `synthetic_fas` benchmark into a tfds data dir.

  python -m fasjax.datasets.prepare_synthetic [--data_dir=DIR] [--domains=o,c,i,m]
  python -m fasjax.datasets.prepare_synthetic --data_dir=DIR --large  # o_large, ...

Everything is rendered locally and deterministically; nothing is fetched.
Prints each built config's build time and size on disk.
"""

import os
import time
from typing import Sequence

from absl import app
from absl import flags
from absl import logging
import tensorflow_datasets as tfds

from fasjax.datasets import synthetic_fas

DOMAINS = ('o', 'c', 'i', 'm')  # also o_smoke, ... (miniatures), o_large, ...


def _size_bytes(path: str) -> int:
  """Total size of the files under `path`."""
  return sum(os.path.getsize(os.path.join(root, f))
             for root, _, files in os.walk(path) for f in files)


def prepare(domains: Sequence[str] = DOMAINS, data_dir: str | None = None
            ) -> dict[str, tuple[float, int]]:
  """Builds each config of `synthetic_fas` that is not built yet.

  Returns {config: (build seconds, bytes on disk)} of the configs built now.
  """
  built = {}
  for domain in domains:
    builder = synthetic_fas.SyntheticFas(config=domain, data_dir=data_dir)
    if not builder.is_prepared():
      start = time.time()
      logging.info('Rendering synthetic_fas/%s into %s (procedural, nothing '
                   'is downloaded)...', domain, builder.data_dir)
      # The generator renders procedurally: this "prepare" reads nothing
      # from the network (no download manager is used by the builder). tfds
      # would print "Downloading and preparing dataset" to stdout: silenced.
      for name in ('_log_download_bytes', '_log_download_done'):
        if hasattr(builder, name):
          setattr(builder, name, lambda: None)
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(try_download_gcs=False))
      built[domain] = (time.time() - start, _size_bytes(builder.data_dir))
  return built


def main(argv: Sequence[str]) -> None:
  del argv
  from fasjax import logs  # pylint: disable=g-import-not-at-top
  logs.quiet_library_logs()
  domains = flags.FLAGS.domains
  if flags.FLAGS.large:
    domains = [d if d.endswith('_large') else f'{d}_large' for d in domains]
  for name, (seconds, size) in prepare(domains, flags.FLAGS.data_dir).items():
    print(f'synthetic_fas/{name}: built in {seconds:.0f} s, '
          f'{size / 2**20:.1f} MiB')


if __name__ == '__main__':
  flags.DEFINE_string('data_dir', None, 'tfds data dir (default: tfds default).')
  flags.DEFINE_list('domains', list(DOMAINS), 'Domains (configs) to build.')
  flags.DEFINE_bool('large', False, 'Build the `<domain>_large` configs of '
                    '--domains (the real releases\' scale, for studies).')
  app.run(main)
