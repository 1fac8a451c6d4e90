"""One video of a release -> its tfds examples and a status for the report."""

import functools
import logging
import pathlib
from typing import Any

from fasjax.datasets.real import layout
from fasjax.datasets.real import report
from fasjax.preprocess import chain
from fasjax.preprocess import config as config_lib
from fasjax.preprocess import video


@functools.cache
def _preprocessor(config: config_lib.ChainConfig) -> chain.Preprocessor:
  # One per worker process: the models behind it load once.
  return chain.Preprocessor(config)


def process_video(record: layout.VideoRecord, root: str,
                  sampling: config_lib.Sampling,
                  config: config_lib.ChainConfig
                  ) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
  """Returns ((key, example) per sampled frame, status) of one video.

  Unreadable videos and videos without any face give no examples, a warning
  naming the file, and a status saying why.
  """
  status = {'video_id': record.video_id, 'split': record.split,
            'label': record.label, 'attack_type': record.attack_type,
            'kind': report.BUILT, 'frames': 0, 'frames_without_face': 0,
            'frames_doubtful_mesh': 0, 'videos_turned180': 0}
  path = pathlib.Path(root) / record.video_id
  try:
    frames = video.read_frames(path, sampling, record.rotate180)
    labelled = _preprocessor(config).video(frames, live=record.label == 1)
  except video.VideoError as e:  # its message starts with the path
    logging.warning('Skipping unreadable video %s', e)
    return [], dict(status, kind=report.UNREADABLE, reason=str(e))
  except chain.NoFaceError as e:
    logging.warning('Skipping video without a face %s: %s', path, e)
    return [], dict(status, kind=report.NO_FACE, reason=f'{path}: {e}')
  examples = []
  for f in labelled:
    examples.append((f'{record.video_id}#{f.frame_index}', {
        'image': f.image,
        'depth': f.depth,
        'parsing': f.parsing,
        'label': record.label,
        'video_id': record.video_id,
        'attack_type': record.attack_type,
        'subject': record.subject,
        'frame_index': f.frame_index,
    }))
  status.update(frames=len(labelled),
                frames_without_face=sum(not f.detected for f in labelled),
                videos_turned180=int(labelled[0].turned180),
                frames_doubtful_mesh=sum(f.mesh_score < report.MESH_DOUBT
                                         for f in labelled))
  return examples, status
