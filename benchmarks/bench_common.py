"""Shared by the benchmark programs: the step's shape options, printing a result."""

import argparse
import json
from typing import Any


def add_step_shape_args(parser: argparse.ArgumentParser) -> None:
  """--size, --width, --batch, --domains: the meta step's shapes."""
  parser.add_argument('--size', type=int, default=64, help='input side S')
  parser.add_argument('--width', type=float, default=1.0,
                      help='channel multiplier')
  parser.add_argument('--batch', type=int, default=20,
                      help='images per domain (half live, half spoof)')
  parser.add_argument('--domains', type=int, default=3, help='source domains')


def print_result(result: dict[str, Any], as_json: bool) -> None:
  """Prints one JSON line, or one aligned `key: value` line per figure."""
  if as_json:
    print(json.dumps(result))
  else:
    for key, value in result.items():
      print(f'{key:>20s}: {value}')
