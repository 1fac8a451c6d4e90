"""Shared by the benchmark programs: printing a result."""

import json
from typing import Any


def print_result(result: dict[str, Any], as_json: bool) -> None:
  """Prints one JSON line, or one aligned `key: value` line per figure."""
  if as_json:
    print(json.dumps(result))
  else:
    for key, value in result.items():
      print(f'{key:>20s}: {value}')
