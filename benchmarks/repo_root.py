"""Puts the checkout root on sys.path, so benchmarks run without PYTHONPATH.

Python puts a script's own folder (benchmarks/) first on sys.path, so every
benchmark finds this module and imports it before `configs` or `fasjax`; the
root goes right after benchmarks/, ahead of any installed fasjax, so the
benchmarks always measure the checkout they sit in.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(1, ROOT)
