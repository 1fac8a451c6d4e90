"""Protocol OCI->M: train on O & C & I, test on M.

  python launch.py --config=configs/oci_to_m.py --workdir=workdirs/oci_to_m
  python launch.py --config=configs/oci_to_m.py:synthetic --workdir=workdirs/oci_to_m_synth

Arguments (comma-separated after ':'): see configs/common.py.
"""

from configs import common


def get_config(arg=None):
  """Returns the config of this protocol for the argument string."""
  return common.protocol_config('oci', 'm', arg)
