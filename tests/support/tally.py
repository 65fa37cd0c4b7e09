"""Counts the robustness tests add up (cases run, crashes survived, faults injected), printed
at the end of the run by ``tests/conftest.py`` so the figures can be quoted."""

from __future__ import annotations

from collections import Counter

TALLY: Counter[str] = Counter()


def add(**counts: int) -> None:
    TALLY.update(counts)
