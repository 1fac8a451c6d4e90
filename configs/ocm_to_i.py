"""Protocol OCM->I: train on O & C & M, test on I.

  python launch.py --config=configs/ocm_to_i.py --workdir=workdirs/ocm_to_i
  python launch.py --config=configs/ocm_to_i.py:synthetic --workdir=workdirs/ocm_to_i_synth

Arguments (comma-separated after ':'): see configs/common.py.
"""

from configs import common


def get_config(arg=None):
  """Returns the config of this protocol for the argument string."""
  return common.protocol_config('ocm', 'i', arg)
