"""tfds builders; importing this package registers them (`tfds build --imports=fasjax.datasets`)."""
