"""tfds builders; importing this package registers them (`tfds build --imports=fasjax.datasets`)."""

from fasjax.datasets import synthetic_fas  # pylint: disable=unused-import
