"""Command-line options every command shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="ROTATOR_CONFIG",
        help="The policy file (TOML). Env: ROTATOR_CONFIG.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
AccountsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--account",
        help="Only this account (its 12-digit ID); repeatable. With --ou: either matches.",
        show_default=False,
    ),
]
OusOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ou",
        help="Only accounts in this OU (ou-… / r-… or a path such as /Workloads/Prod, "
        "nested OUs included; needs [accounts]); repeatable.",
        show_default=False,
    ),
]
