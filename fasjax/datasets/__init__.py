"""tfds builders; importing this package registers them (`tfds build --imports=fasjax.datasets`)."""

# pylint: disable=unused-import
from fasjax.datasets import casia_fasd
from fasjax.datasets import msu_mfsd
from fasjax.datasets import oulu_npu
from fasjax.datasets import replay_attack
from fasjax.datasets import synthetic_fas
