"""`synthetic_fas`: the embedded procedural four-domain benchmark.

Importing this package registers the tfds builder `synthetic_fas` (configs
`o`, `c`, `i`, `m`, their `_smoke` miniatures and `_large` versions).
"""

from fasjax.datasets.synthetic_fas.synthetic_fas import generate_examples
from fasjax.datasets.synthetic_fas.synthetic_fas import IMAGE_SIZE
from fasjax.datasets.synthetic_fas.synthetic_fas import SyntheticFas

__all__ = ['IMAGE_SIZE', 'SyntheticFas', 'generate_examples']
