"""The audit log: JSON lines with the schema's fields, and no secret in any of them."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from rotator import audit
from rotator.errors import AwsError
from rotator.model import Kind
from rotator.sinks.base import SecretEntry

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def entry() -> SecretEntry:
    return SecretEntry(
        kind=Kind.ACCESS_KEY,
        credential_id="AKIAEXAMPLE",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        public={"AccessKeyId": "AKIAEXAMPLE"},
        secret={"SecretAccessKey": SecretStr(SECRET)},
    )


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "logs" / "audit.jsonl"
    close = audit.configure(stream="none", file=path)
    yield path
    close()


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_events_are_json_lines_with_the_schema_first(log_file: Path) -> None:
    audit.bind(run_id="run-1", account="123456789012")
    audit.get_logger().info(
        audit.ROTATION_STEP,
        step="create",
        outcome="done",
        user="u",
        kind="access-key",
        credential_id="AKIA1",
        rotation_id="rot-1",
    )
    (line,) = lines(log_file)
    assert list(line)[:3] == ["ts", "level", "event"]
    assert line["event"] == "rotation.step"
    assert line["run_id"] == "run-1"
    assert str(line["ts"]).endswith("Z")
    assert oct(log_file.stat().st_mode & 0o777) == "0o640"


def test_a_registered_secret_is_scrubbed_from_every_field_and_traceback(log_file: Path) -> None:
    entry()  # building an entry registers its secret
    log = audit.get_logger()
    log.info("x", reason=f"weird upstream text {SECRET} here", nested={"a": [SECRET]})
    try:
        raise AwsError("CreateAccessKey", "Oops", f"echoed {SECRET}")
    except AwsError:
        log.exception("failed")
    text = log_file.read_text()
    assert SECRET not in text
    assert text.count("[REDACTED]") >= 3


def test_fields_named_like_secrets_are_hidden_even_if_unregistered(log_file: Path) -> None:
    audit.get_logger().info("x", SecretAccessKey="short", password="hunter2", Password="p")
    (line,) = lines(log_file)
    assert line["SecretAccessKey"] == line["password"] == line["Password"] == "[REDACTED]"


def test_repr_and_str_of_secret_material_hide_the_value() -> None:
    e = entry()
    assert SECRET not in repr(e)
    assert SECRET not in str(e)
    assert SECRET not in repr(e.secret)


def test_at_a_terminal_the_stream_shows_lines_for_people_and_the_file_keeps_json(
    tmp_path: Path,
) -> None:
    """``format = "auto"``: a terminal gets structlog's console lines, the file JSON lines;
    a registered secret is scrubbed from both."""
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    from rotator import redaction

    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    redaction.register(secret)
    terminal = Terminal()
    saved = sys.stderr
    sys.stderr = terminal
    try:
        close = audit.configure(stream="stderr", file=tmp_path / "a.jsonl", console="auto")
        audit.get_logger().info("rotation.step", user="alice", reason=f"oops {secret}")
        close()
    finally:
        sys.stderr = saved
    shown = terminal.getvalue()
    assert "rotation.step" in shown and "alice" in shown
    assert not shown.lstrip().startswith("{"), "not JSON at a terminal"
    (line,) = (tmp_path / "a.jsonl").read_text().splitlines()
    assert json.loads(line)["user"] == "alice"
    assert secret not in shown + line


def test_a_pipe_gets_json_lines_with_format_auto() -> None:
    import io

    pipe = io.StringIO()
    saved = sys.stderr
    sys.stderr = pipe
    try:
        close = audit.configure(stream="stderr", console="auto")
        audit.get_logger().info("rotation.step", user="bob")
        close()
    finally:
        sys.stderr = saved
    assert json.loads(pipe.getvalue())["user"] == "bob"
