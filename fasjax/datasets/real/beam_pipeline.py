"""The Beam transform that builds one split (imported only when building)."""

import json

import apache_beam as beam
from etils import epath

from fasjax.datasets.real import layout
from fasjax.datasets.real import process
from fasjax.preprocess import config as config_lib


def report_part_path(data_dir: str, split: str) -> epath.Path:
  """Where a split's video statuses are written before the report is merged."""
  return epath.Path(data_dir) / f'build_report.{split}.part.json'


def local_runner() -> beam.runners.PipelineRunner:
  """Beam's in-process runner (no Prism binary to fetch, unlike DirectRunner)."""
  from apache_beam.runners.portability import fn_api_runner  # pylint: disable=g-import-not-at-top
  return fn_api_runner.FnApiRunner()


def _process(record, root, sampling, config):
  examples, status = process.process_video(record, root, sampling, config)
  yield from examples
  yield beam.pvalue.TaggedOutput('status', status)


def _write_statuses(statuses: list[dict], path: str):
  epath.Path(path).write_text(json.dumps(statuses))


class GenerateSplit(beam.PTransform):
  """Videos of one split -> (key, example) per sampled frame.

  A side branch collects every video's status into a file beside the built
  data, from which the builder writes the build report.
  """

  def __init__(self, records: list[layout.VideoRecord], root: str,
               sampling: config_lib.Sampling, config: config_lib.ChainConfig,
               status_path: str):
    super().__init__()
    self._records = records
    self._root = root
    self._sampling = sampling
    self._config = config
    self._status_path = status_path

  def expand(self, pbegin):
    """Builds the split's part of the pipeline."""
    outputs = (
        pbegin
        | 'Videos' >> beam.Create(self._records)
        # Spreads videos over workers (Create alone may keep them on one).
        | 'Spread' >> beam.Reshuffle()
        | 'Process' >> beam.FlatMap(_process, self._root, self._sampling,
                                    self._config).with_outputs(
                                        'status', main='examples'))
    _ = (outputs.status
         | 'Collect' >> beam.combiners.ToList()
         | 'Write' >> beam.Map(_write_statuses, self._status_path))
    return outputs.examples
