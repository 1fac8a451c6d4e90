"""Idiap Replay-Attack database."""

from fasjax.datasets.replay_attack.replay_attack import ReplayAttack
