"""Run the real ``rotator`` CLI as a subprocess and read what it left behind."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import schemas

# Style and title codes a terminal shows as nothing.
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")

POLICY = """\
[journal]
url = "sqlite:///{tmp}/journal.db"

[audit]
file = "{tmp}/audit.jsonl"

[verify]
attempts = 3
initial_delay = "1s"

[[rules]]
name = "ci-keys"
kind = "access-key"
max_age = "{max_age}"
deactivate_after = "{deactivate_after}"
delete_after = "{delete_after}"
select = {{ path_prefix = "/ci/", users = ["*"] }}
exclude = {{ users = ["break-glass"], tags = {{ "rotator:skip" = "true" }} }}
sink = {sink}
"""


def file_sink(tmp: Path) -> str:
    return f'{{ type = "file", path = "{tmp}/secrets/{{account}}/{{user}}/{{kind}}.json" }}'


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout as JSON; a rotator document (``schema_version``, ``kind``) is checked
        against the schema the package ships for its kind first."""
        doc = json.loads(self.stdout)
        if isinstance(doc, dict) and "schema_version" in doc:
            schemas.validate(doc["kind"], doc)
        return doc

    def items(self) -> list[Any]:
        """The ``items`` of a listing (plan, status, history), checked as ``json`` is."""
        return self.json()["items"]  # type: ignore[no-any-return]


@dataclass
class Cli:
    """A policy file in ``tmp`` and a way to run ``rotator`` against the moto server."""

    tmp: Path
    endpoint: str
    env: dict[str, str] = field(default_factory=dict)
    unset: set[str] = field(default_factory=set)  # variables the subprocess must not see

    @property
    def config(self) -> Path:
        return self.tmp / "rotator.toml"

    def write_policy(
        self,
        *,
        max_age: str = "0s",
        deactivate_after: str = "0s",
        delete_after: str = "0s",
        sink: str | None = None,
        extra: str = "",
    ) -> Path:
        self.config.write_text(
            POLICY.format(
                tmp=self.tmp,
                max_age=max_age,
                deactivate_after=deactivate_after,
                delete_after=delete_after,
                sink=sink or file_sink(self.tmp),
            )
            + extra
        )
        return self.config

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROTATOR_"))}
        env.update(
            AWS_ENDPOINT_URL=self.endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            COLUMNS="200",
            NO_COLOR="1",
        )
        env.update(self.env)
        for name in self.unset:
            env.pop(name, None)
        return env

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "rotator", *args],
            env=self.environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kwargs,
        )

    def __call__(self, *args: str, config: bool = True, timeout: float = 120) -> Result:
        argv = [*args, "--config", str(self.config)] if config else list(args)
        done = subprocess.run(
            [sys.executable, "-m", "rotator", *argv],
            env=self.environ(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def on_terminal(self, *args: str, timeout: float = 120) -> Result:
        """Run with stderr on a pseudo-terminal, as an operator at a shell sees it (stdout
        stays a pipe). ``stderr`` is everything written to the terminal, control codes
        and all."""
        main, side = pty.openpty()
        written: list[bytes] = []
        # Keep reading, or the child blocks on a full terminal.
        reader = threading.Thread(target=_drain, args=(main, written), daemon=True)
        reader.start()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "rotator", *args, "--config", str(self.config)],
                env=self.environ(),
                stdout=subprocess.PIPE,
                stderr=side,
                text=True,
                timeout=timeout,
                check=False,
            )
        finally:
            os.close(side)
            reader.join(timeout=10)
            os.close(main)
        return Result(done.returncode, done.stdout, b"".join(written).decode(errors="replace"))

    def on_screen(self, *args: str, columns: int = 80, rows: int = 40) -> Result:
        """Run with stdout on a pseudo-terminal ``columns`` x ``rows`` (stderr: a pipe), as
        an operator at a shell sees a table: rich sizes it from the terminal, not from
        COLUMNS. ``stdout`` is what the terminal showed, without control codes."""
        main, side = pty.openpty()
        fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.unset.add("COLUMNS")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "rotator", *args, "--config", str(self.config)],
                env={**self.environ(), "TERM": "xterm-256color"},
                stdin=subprocess.DEVNULL,
                stdout=side,
                stderr=subprocess.PIPE,
            )
            os.close(side)
            shown: list[bytes] = []
            _drain(main, shown)
            _, stderr = proc.communicate(timeout=120)
        finally:
            os.close(main)
            self.unset.discard("COLUMNS")
        text = _CONTROL.sub("", b"".join(shown).decode(errors="replace")).replace("\r", "")
        return Result(proc.returncode, text, stderr.decode(errors="replace"))

    # -- what the run left behind ----------------------------------------------------------

    def audit_events(self) -> list[dict[str, Any]]:
        path = self.tmp / "audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def steps(self, user: str) -> list[tuple[str, str]]:
        return [
            (e["step"], e["outcome"])
            for e in self.audit_events()
            if e["event"] == "rotation.step" and e.get("user") == user
        ]

    def sink_document(self, account: str, user: str, kind: str = "access-key") -> Any:
        return json.loads((self.tmp / "secrets" / account / user / f"{kind}.json").read_text())

    def journal_rows(self) -> list[dict[str, Any]]:
        with sqlite3.connect(self.tmp / "journal.db") as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM rotations")]

    def journal_bytes(self) -> bytes:
        out = b""
        for path in self.tmp.glob("journal.db*"):
            out += path.read_bytes()
        return out


def _drain(fd: int, into: list[bytes]) -> None:
    """Read the terminal ``fd`` until the child closes it, appending each chunk to ``into``."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return
        if not chunk:
            return
        into.append(chunk)
