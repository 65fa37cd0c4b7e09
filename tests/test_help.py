"""``rotator <command> --help`` at 80 columns, for every command: plain text a person can
read — no ``<bool>`` placeholders, the environment variable named once, every paragraph
wrapped whole (no line break in the middle of a sentence), and policy section names such
as ``[accounts]`` printed as written rather than eaten as rich markup."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.core import TyperGroup

from rotator.entrypoints.cli import cli

WIDTH = 80
FILL = WIDTH - 2  # click fills text to the terminal width less a margin of two


def _commands() -> list[tuple[str, ...]]:
    """Every command path of the CLI: (), ("plan",), ("journal", "init"), ..."""
    found: list[tuple[str, ...]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        found.append(path)
        if isinstance(command, TyperGroup):
            for name in command.list_commands(None):  # type: ignore[arg-type]
                walk(command.commands[name], (*path, name))

    walk(typer.main.get_command(cli), ())
    return found


COMMANDS = _commands()


def _help(path: tuple[str, ...]) -> str:
    """The help a person sees in an 80-column terminal (a real subprocess)."""
    done = subprocess.run(
        [sys.executable, "-m", "rotator", *path, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": str(WIDTH), "PATH": "/usr/bin:/bin", "TERM": "dumb"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _docstring(path: tuple[str, ...]) -> str:
    command: Any = typer.main.get_command(cli)
    for name in path:
        assert isinstance(command, TyperGroup)
        command = command.commands[name]
    return str(command.help or "")


def _paragraphs(text: str) -> list[list[str]]:
    """The description's paragraphs: blocks of lines indented by two spaces, between the
    usage line and the first section heading ("Options:", "Arguments:"...)."""
    body = text.split("\n\n", 1)[1]
    body = re.split(r"^\S[^\n]*:$", body, maxsplit=1, flags=re.MULTILINE)[0]
    return [block.splitlines() for block in body.strip("\n").split("\n\n") if block.strip()]


def test_every_command_is_covered() -> None:
    names = {p[-1] for p in COMMANDS if p}
    assert {"validate", "plan", "run", "rotate", "iam-policy", "journal", "init"} <= names
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "rotator")
def test_help_reads_as_plain_text_at_80_columns(path: tuple[str, ...]) -> None:
    shown = _help(path)

    assert shown.startswith("Usage: "), shown
    assert "<bool>" not in shown, shown
    # An option's value is named for what it is (ID, USER, DURATION...), not its type.
    options = [line for line in shown.splitlines() if line.lstrip().startswith("-")]
    assert not [line for line in options if re.search(r"--[a-z-]+ <", line)], shown
    assert "╭" not in shown and "│" not in shown, "no boxes: plain text"
    for line in shown.splitlines():
        assert len(line) <= WIDTH, f"wider than {WIDTH} columns: {line!r}"
    # The environment variable is named once, by click's own note.
    assert shown.count("ROTATOR_CONFIG") <= 1, shown
    # Section names of the policy file (and other bracketed words) are printed as written.
    for word in re.findall(r"\[[a-z][a-z_.]*\]", _docstring(path)):
        assert word in shown, f"{word} missing from the help of {path}"
    # Paragraphs are filled greedily: no line ends where the next word would still fit.
    for paragraph in _paragraphs(shown):
        for line, following in itertools.pairwise(paragraph):
            first = following.split()[0]
            assert len(line) + 1 + len(first) > FILL, (
                f"line break in the middle of a sentence:\n{line}\n{following}"
            )


@pytest.mark.parametrize(
    ("path", "metavars"),
    [
        (("plan",), ("--config FILE", "--account ID", "--ou OU")),
        (("validate",), ("--config FILE",)),
        (("rotate-profile",), ("--keep-old DURATION", "PROFILE")),
    ],
)
def test_options_name_what_they_take(path: tuple[str, ...], metavars: tuple[str, ...]) -> None:
    shown = _help(path)
    for metavar in metavars:
        assert metavar in shown, shown


def test_plan_help_keeps_the_accounts_section_name() -> None:
    """The old rich markup mode ate "[accounts]" and printed "With : in every account"."""
    shown = " ".join(_help(("plan",)).split())
    assert "With [accounts]: in every account" in shown
    assert "With :" not in shown
