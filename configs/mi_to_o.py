"""Protocol MI->O: train on M & I, test on O.

  python launch.py --config=configs/mi_to_o.py --workdir=workdirs/mi_to_o
  python launch.py --config=configs/mi_to_o.py:synthetic --workdir=workdirs/mi_to_o_synth

Arguments (comma-separated after ':'): see configs/common.py.
"""

from configs import common


def get_config(arg=None):
  """Returns the config of this protocol for the argument string."""
  return common.protocol_config('mi', 'o', arg)
