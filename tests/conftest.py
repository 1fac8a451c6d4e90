"""Test set-up: JAX on CPU, quiet TensorFlow."""
import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

# Compilation, not arithmetic, dominates a JAX test suite on a CPU.
jax.config.update('jax_disable_most_optimizations', True)
