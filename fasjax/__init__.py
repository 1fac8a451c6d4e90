"""fasjax: multi-task one-side meta triplet face anti-spoofing in JAX."""
