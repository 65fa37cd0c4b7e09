"""Start-up: ``rotator --help`` and ``--version`` answer without loading AWS, pydantic or
the app (the speed itself is measured in ``benchmarks/startup.py``), and a command
still loads what it needs when it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import rotator

HEAVY = ("aioboto3", "aiobotocore", "botocore", "pydantic", "rotator.app", "rotator.settings")


def _loaded_after(argv: list[str]) -> set[str]:
    """The heavy modules loaded once the CLI has handled ``argv`` (in a fresh process)."""
    code = (
        "import sys\n"
        "from rotator.entrypoints.cli import cli\n"
        f"sys.argv = ['rotator', *{argv!r}]\n"
        "try:\n"
        "    cli()\n"
        "except SystemExit:\n"
        "    pass\n"
        # A module bound by rotator.entrypoints.lazy is in sys.modules before it runs.
        "def ran(m):\n"
        "    mod = sys.modules.get(m)\n"
        "    return mod is not None and type(mod).__name__ != '_LazyModule'\n"
        f"print(' '.join(m for m in {HEAVY!r} if ran(m)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(out.stdout.split()[-len(HEAVY) :]) & set(HEAVY) if out.stdout.strip() else set()


def test_help_and_version_load_nothing_heavy() -> None:
    assert _loaded_after(["--help"]) == set()
    assert _loaded_after(["--version"]) == set()
    # typer itself loads pydantic to read a command's parameters (its pydantic support).
    assert _loaded_after(["run", "--help"]) <= {"pydantic"}


def test_a_command_that_runs_loads_what_it_needs(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    loaded = _loaded_after(["validate", "--config", str(missing)])
    assert {"pydantic", "rotator.app"} <= loaded


def test_version_prints_the_package_version() -> None:
    bin_dir = Path(sys.executable).parent
    out = subprocess.run(
        [str(bin_dir / "rotator"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert out.stdout.startswith(f"rotator {rotator.__version__} ")


def test_the_lambda_handler_needs_no_cli_only_package() -> None:
    """The Lambda package leaves out typer and rich (benchmarks/lambda_package.py): the
    handler imports and answers without them, and loads no CLI module."""
    code = (
        "import sys\n"
        "for name in ('typer', 'rich', 'click', 'pygments'):\n"
        "    sys.modules[name] = None  # import fails, as in the lean package\n"
        "from rotator.entrypoints.lambda_handler import handler\n"
        "out = handler({'action': 'no-such-action'})\n"
        "cli = sorted(m for m in sys.modules if m.startswith('rotator.entrypoints.')\n"
        "             and m != 'rotator.entrypoints.lambda_handler')\n"
        "print(out['ok'], out['error'], cli)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split("\n")[-2] == "False InputError []", out.stdout + out.stderr
