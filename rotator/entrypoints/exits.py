"""Exit codes, and the one place a rotator error becomes one.

=====  =====================================================================
code   meaning
=====  =====================================================================
0      everything asked for was done (or there was nothing to do)
1      something was attempted and is not ok: a rotation failed or is blocked,
       a journal row is corrupt, AWS or the journal failed
2      bad input: the policy file, the environment (``ROTATOR_*``, ``AWS_*``),
       the command line, certificate files, an unknown rotation ID — nothing
       was changed in AWS
130    interrupted (Ctrl-C)
=====  =====================================================================
"""

from __future__ import annotations

import typer
from rich.console import Console

from rotator.errors import ConfigError, InputError, NotFound, RotatorError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
BAD_INPUT: tuple[type[RotatorError], ...] = (ConfigError, InputError, NotFound)

EPILOG = (
    "Exit codes: 0 ok; 1 a rotation failed or is blocked (or AWS/the journal failed); "
    "2 bad input (policy file, environment, arguments), nothing changed in AWS; "
    "130 interrupted."
)


def exit_code(exc: RotatorError) -> int:
    """Bad input or configuration exits 2; anything else that went wrong exits 1."""
    return EXIT_BAD_INPUT if isinstance(exc, BAD_INPUT) else EXIT_FAILED


def fail(exc: RotatorError, err: Console | None = None) -> typer.Exit:
    """Print ``exc`` on stderr for people — one line per problem, each naming its source
    and field — and return the ``typer.Exit`` (with ``exit_code``) to raise."""
    err = err or Console(stderr=True)
    lines = (
        [f"{exc.source}: {problem}" for problem in exc.problems]
        if isinstance(exc, ConfigError)
        else [str(exc)]
    )
    for line in lines:
        err.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(exit_code(exc))
