"""CASIA-FASD (CASIA Face Anti-Spoofing Database)."""

from fasjax.datasets.casia_fasd.casia_fasd import CasiaFasd
