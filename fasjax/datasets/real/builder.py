"""The base of the four real builders: features, splits, Beam, build report.

A builder reads a raw release from the manual dir in its official layout
(docs/design.md §2), decodes the sampled frames of each video, crops the face
and derives pseudo depth and parsing (`fasjax.preprocess`), through Apache
Beam so that the same build runs locally or on a cluster. Subclasses only
say how their layout is parsed.

Sampling is chosen with the builder config: `default` keeps every 5th frame,
at most 25 per video; `dense` every 2nd frame, at most 100. A custom
`RealFasConfig` can be passed to `tfds.builder(name, config=...)`.
"""

import abc
import dataclasses
import json
import logging
import pathlib

from etils import epath
import tensorflow_datasets as tfds

from fasjax.datasets import features

from fasjax.datasets.real import layout
from fasjax.datasets.real import report
from fasjax.preprocess import config as config_lib

IMAGE_SIZE = 256
DEPTH_SIZE = features.DEPTH_SIZE


class RealFasConfig(tfds.core.BuilderConfig):
  """Frame sampling and preprocessing settings of a build."""

  def __init__(self, *, sampling: config_lib.Sampling = config_lib.Sampling(),
               preprocess: config_lib.ChainConfig = config_lib.ChainConfig(),
               **kwargs):
    super().__init__(**kwargs)
    if (preprocess.crop_size, preprocess.depth_size) != (IMAGE_SIZE,
                                                         DEPTH_SIZE):
      raise ValueError('The builder contract fixes crop 256 and depth 32.')
    self.sampling = sampling
    self.preprocess = preprocess


CONFIGS = (
    RealFasConfig(name='default',
                  description='Every 5th frame, at most 25 per video.'),
    RealFasConfig(name='dense', sampling=config_lib.Sampling(2, 100),
                  description='Every 2nd frame, at most 100 per video.'),
)


class RealFasBuilder(tfds.core.GeneratorBasedBuilder):
  """A real face anti-spoofing release, built from its raw videos."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  BUILDER_CONFIGS = list(CONFIGS)
  RELEASE = ''  # the dataset's usual name, for messages
  REQUIRED: tuple[str, ...] = ()  # entries that the release root must hold
  SPLITS: tuple[str, ...] = ('train', 'test')
  EXPECTED_VIDEOS = (0, 0)  # (live, spoof) in train + test, docs/design.md §2

  @abc.abstractmethod
  def parse_layout(self, root: pathlib.Path) -> layout.Listing:
    """Lists the release's videos with split, labels and subject."""

  def _info(self) -> tfds.core.DatasetInfo:
    """Feature contract shared with `synthetic_fas` (docs/design.md §2)."""
    return self.dataset_info_from_configs(
        features=features.contract_features(IMAGE_SIZE),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    """One Beam transform per official split of the release."""
    root = layout.find_root(dl_manager.manual_dir, self.REQUIRED,
                            f'{self.name} ({self.RELEASE})',
                            self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    self._listing = self.parse_layout(root)
    for item in self._listing.ignored:
      logging.warning('Ignoring %s: %s', item['video_id'], item['reason'])
    generators = {}
    for split in self.SPLITS:
      records = [r for r in self._listing.records if r.split == split]
      if not records:
        raise layout.ManualDirError(
            f'{self.name}: no videos of split {split!r} under {root}.\n'
            f'{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
      generators[split] = self._generate_examples(records, str(root), split)
    return generators

  def _generate_examples(self, records: list[layout.VideoRecord], root: str,
                         split: str):
    """A Beam transform yielding (key, example) per sampled frame."""
    # Imported here: apache-beam is needed to build, not to read.
    from fasjax.datasets.real import beam_pipeline  # pylint: disable=g-import-not-at-top
    config = self.builder_config
    return beam_pipeline.GenerateSplit(
        records, root, config.sampling, config.preprocess,
        str(beam_pipeline.report_part_path(self.data_dir, split)))

  def _download_and_prepare(self, dl_manager, download_config):
    """Builds, then merges the splits' video statuses into the build report."""
    from fasjax.datasets.real import beam_pipeline  # pylint: disable=g-import-not-at-top
    if download_config.beam_runner is None and not download_config.beam_options:
      # Beam's default DirectRunner first tries Prism, whose binary it fetches
      # from the internet; the in-process FnApiRunner needs nothing.
      download_config = dataclasses.replace(
          download_config, beam_runner=beam_pipeline.local_runner())
    super()._download_and_prepare(dl_manager, download_config)
    statuses = []
    for split in self.SPLITS:
      part = beam_pipeline.report_part_path(self.data_dir, split)
      statuses += json.loads(part.read_text())
      part.unlink()
    config = self.builder_config
    settings = {'config': config.name,
                'sampling': vars(config.sampling),
                'preprocess': vars(config.preprocess)}
    rep = report.build_report(self.name, self._listing, statuses,
                              self.EXPECTED_VIDEOS, settings)
    path = epath.Path(self.data_dir) / report.REPORT_NAME
    path.write_text(json.dumps(rep, indent=1))
    logging.warning('%s\n  written to %s beside the built data',
                    report.summary(rep), report.REPORT_NAME)
