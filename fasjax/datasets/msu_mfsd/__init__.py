"""MSU-MFSD (MSU Mobile Face Spoofing Database)."""

from fasjax.datasets.msu_mfsd.msu_mfsd import MsuMfsd
