"""The ``rotator daemon`` command. ``register(app)`` adds it to the ``rotator`` CLI; this
module imports nothing from ``cli.py`` so that ``cli.py`` can import it at the top."""

from __future__ import annotations

from typing import Annotated

import typer

from rotator.entrypoints.exits import fail
from rotator.entrypoints.options import ConfigOpt
from rotator.errors import RotatorError


def register(app: typer.Typer) -> None:
    """Add the ``daemon`` command to ``app``."""

    @app.command()
    def daemon(
        config: ConfigOpt,
        run_now: Annotated[
            bool, typer.Option("--run-now", help="Also sweep every rule once at start.")
        ] = False,
    ) -> None:
        """Sweep on the policy's schedules; serve /healthz and /metrics. SIGTERM or SIGINT
        drains (the sweep in flight finishes, exit 0); SIGHUP reloads the policy."""
        from rotator.entrypoints import daemon as entry

        try:
            code = entry.run(config, run_now=run_now)
        except RotatorError as exc:
            raise fail(exc) from None
        raise typer.Exit(code)
