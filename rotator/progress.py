"""How far a long piece of work has got, for whoever shows it (the CLI's progress bar).

A ``ProgressFn`` is called as ``fn(phase, done, total)`` each time one more item of
``phase`` is finished (and once with ``done = 0`` when the phase starts). The engine
reports two phases: ``INVENTORY`` (users read) and ``WORK`` (decisions carried out).
Reporting never changes what the work does; ``NO_PROGRESS`` reports nothing.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[str, int, int], None]

INVENTORY = "reading users"
WORK = "rotating"


def no_progress(phase: str, done: int, total: int) -> None:
    """Report nothing."""


NO_PROGRESS: ProgressFn = no_progress


class Counter:
    """Counts the finished items of one phase and reports each."""

    def __init__(self, report: ProgressFn, phase: str, total: int) -> None:
        self._report, self._phase, self._total, self._done = report, phase, total, 0
        report(phase, 0, total)

    def tick(self) -> None:
        self._done += 1
        self._report(self._phase, self._done, self._total)
