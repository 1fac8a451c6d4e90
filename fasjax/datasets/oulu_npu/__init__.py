"""OULU-NPU face presentation attack database."""

from fasjax.datasets.oulu_npu.oulu_npu import OuluNpu
