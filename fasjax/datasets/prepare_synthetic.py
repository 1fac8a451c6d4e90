"""Generates the built-in `synthetic_fas` benchmark into a tfds data dir.

  python -m fasjax.datasets.prepare_synthetic [--data_dir=DIR] [--domains=o,c,i,m]

Everything is rendered locally and deterministically; nothing is fetched.
"""

from typing import Sequence

from absl import app
from absl import flags
import tensorflow_datasets as tfds

from fasjax.datasets import synthetic_fas

DOMAINS = ('o', 'c', 'i', 'm')  # also o_smoke, c_smoke, ... (miniatures)


def prepare(domains: Sequence[str] = DOMAINS, data_dir: str | None = None
            ) -> None:
  """Builds each domain's config of `synthetic_fas` that is not built yet."""
  for domain in domains:
    builder = synthetic_fas.SyntheticFas(config=domain, data_dir=data_dir)
    if not builder.is_prepared():
      # The generator renders procedurally: this "prepare" reads nothing
      # from the network (no download manager is used by the builder).
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(try_download_gcs=False))


def main(argv: Sequence[str]) -> None:
  del argv
  prepare(flags.FLAGS.domains, flags.FLAGS.data_dir)


if __name__ == '__main__':
  flags.DEFINE_string('data_dir', None, 'tfds data dir (default: tfds default).')
  flags.DEFINE_list('domains', list(DOMAINS), 'Domains to build.')
  app.run(main)
