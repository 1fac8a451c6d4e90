"""Shared by the benchmark programs: the step's shape and model options, the
paper config they map onto, printing a result."""

import argparse
import json
from typing import Any

import repo_root  # pylint: disable=unused-import  # checkout root on sys.path

from configs import ocm_to_i
from fasjax.models import layers

_CONV_IMPLS = getattr(layers, 'CONV_IMPLS_AND_AUTO',
                      ('auto',) + layers.CONV_IMPLS)


def add_step_shape_args(parser: argparse.ArgumentParser) -> None:
  """--size, --width, --batch, --domains: the meta step's shapes."""
  parser.add_argument('--size', type=int, default=64, help='input side S')
  parser.add_argument('--width', type=float, default=1.0,
                      help='channel multiplier')
  parser.add_argument('--batch', type=int, default=20,
                      help='images per domain (half live, half spoof)')
  parser.add_argument('--domains', type=int, default=3, help='source domains')


def add_model_args(parser: argparse.ArgumentParser) -> None:
  """--conv-impl, --remat, --dtype: model fields (default: the config's)."""
  parser.add_argument('--conv-impl', default=None, choices=_CONV_IMPLS,
                      help="model.conv_impl (default: the paper config's)")
  parser.add_argument('--remat', default=None, choices=layers.REMAT_POLICIES,
                      help="model.remat policy (default: the paper config's)")
  parser.add_argument('--dtype', default=None,
                      choices=('float32', 'bfloat16'),
                      help="model.dtype (default: the paper config's)")


def paper_config(size: int = 64, width: float = 1.0, batch: int = 20,
                 conv_impl: str | None = None, remat: str | None = None,
                 dtype: str | None = None):
  """configs/ocm_to_i.py's paper config with the benchmark's shapes.

  `batch` is the images per domain (2 x data.per_class_batch); None for
  conv_impl, remat or dtype keeps the config's value.
  """
  if batch % 2:
    raise ValueError(f'--batch={batch}: images per domain are half live, half '
                     'spoof (2 x data.per_class_batch); use an even number')
  config = ocm_to_i.get_config(None)
  with config.unlocked():
    config.model.image_size = size
    config.model.width = width
    config.data.per_class_batch = batch // 2
    if conv_impl is not None:
      config.model.conv_impl = conv_impl
    if remat is not None:
      config.model.remat = remat
    if dtype is not None:
      config.model.dtype = dtype
  return config


def print_result(result: dict[str, Any], as_json: bool) -> None:
  """Prints one JSON line, or one aligned `key: value` line per figure."""
  if as_json:
    print(json.dumps(result))
  else:
    for key, value in result.items():
      print(f'{key:>20s}: {value}')
