"""Protocol MI->C: train on M & I, test on C.

  python launch.py --config=configs/mi_to_c.py --workdir=workdirs/mi_to_c
  python launch.py --config=configs/mi_to_c.py:synthetic --workdir=workdirs/mi_to_c_synth

Arguments (comma-separated after ':'): see configs/common.py.
"""

from configs import common


def get_config(arg=None):
  """Returns the config of this protocol for the argument string."""
  return common.protocol_config('mi', 'c', arg)
