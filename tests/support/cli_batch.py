"""Run many ``rotator`` command lines, each in its own process, fast.

``python -m tests.support.cli_batch`` reads a JSON list of runs from stdin, each
``{"argv": [...], "env": {...}, "cwd": "..."}``, imports the CLI once, and then, for each
run, forks a child that takes the run's environment, working directory and argv, points
its stdin at /dev/null and its stdout and stderr at files, and calls the console script's
entry point (``rotator.entrypoints.cli:main``) exactly as ``rotator`` does. An exception
that escapes is printed with its traceback and exits 1, as the interpreter would. The
parent writes a JSON list of ``{"code", "stdout", "stderr"}`` to stdout.

Each run is a real process with the real entry point; only the interpreter's start-up
and the imports are shared (about a second each on a small machine), which is what makes a
corpus of a hundred command lines cheap. ``run_batch`` is the test side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any


def _child(run: dict[str, Any], out: Path, err: Path) -> None:
    os.environ.clear()
    os.environ.update(run["env"])
    os.chdir(run["cwd"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
    os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
    sys.argv = ["rotator", *run["argv"]]
    sys.modules["__main__"].__spec__ = None  # click names the program after argv[0]
    code = 0
    try:
        from rotator.entrypoints.cli import main

        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    runs = json.load(sys.stdin)
    import rotator.app
    import rotator.entrypoints.cli  # noqa: F401

    results = []
    with tempfile.TemporaryDirectory() as scratch:
        out, err = Path(scratch, "out"), Path(scratch, "err")
        for run in runs:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(run, out, err)
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            results.append(
                {
                    "code": code,
                    "stdout": out.read_text(errors="replace"),
                    "stderr": err.read_text(errors="replace"),
                }
            )
    json.dump(results, sys.stdout)


def run_batch(runs: list[dict[str, Any]], *, timeout: float = 300) -> list[dict[str, Any]]:
    """Run ``runs`` (see the module) in one batch; their results, in order."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.cli_batch"],
        input=json.dumps(runs),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    if done.returncode != 0:
        raise RuntimeError(f"the batch runner failed ({done.returncode}): {done.stderr}")
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


if __name__ == "__main__":
    main()
