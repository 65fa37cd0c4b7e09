"""The journal port and its implementations, chosen by URL with ``open_journal``.

* ``memory://`` — ``MemoryJournal``, kept in this process only.
* ``sqlite:///abs/path.db`` (or ``sqlite:relative/path.db``, from the current directory)
  — ``SqliteJournal``, one file shared by the daemon and the CLI.
* ``dynamodb://TABLE?region=REGION`` (``region`` optional: else the environment's) —
  ``DynamoJournal``, one table shared by replicas and Lambda runs; ``create_table`` makes
  the table (``rotator journal init``).

Adding a backend is one entry in ``_OPENERS``: its scheme and a function from the URL (as
written, for messages) and its parsed form to an (unopened) journal. Only the schemes in
``_QUERY_SCHEMES`` take a query string.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from rotator.aws import Aws
from rotator.journal.base import Journal
from rotator.journal.dynamodb import DynamoJournal, create_table
from rotator.journal.memory import MemoryJournal
from rotator.journal.sqlite import SqliteJournal

__all__ = [
    "DynamoJournal",
    "Journal",
    "MemoryJournal",
    "SqliteJournal",
    "create_table",
    "open_journal",
]

_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")  # DynamoDB's rule for table names


def _memory(url: str, parsed: SplitResult, aws: Aws | None) -> Journal:
    if parsed.netloc or parsed.path:
        raise ValueError(f"journal URL {url!r}: memory:// takes no host or path")
    return MemoryJournal()


def _sqlite(url: str, parsed: SplitResult, aws: Aws | None) -> Journal:
    if parsed.netloc or not parsed.path or parsed.path == "/":
        raise ValueError(
            f"journal URL {url!r}: use sqlite:///absolute/path.db or sqlite:relative/path.db"
        )
    path = unquote(parsed.path)
    if path.startswith("/"):  # sqlite:////abs (SQLAlchemy's spelling) means /abs too
        path = "/" + path.lstrip("/")
    return SqliteJournal(Path.cwd() / path)  # an absolute path stays as is


def _dynamodb(url: str, parsed: SplitResult, aws: Aws | None) -> Journal:
    usage = "use dynamodb://TABLE or dynamodb://TABLE?region=REGION"
    table = parsed.netloc
    if not table or parsed.path not in ("", "/"):
        raise ValueError(f"journal URL {url!r}: {usage}")
    if not _TABLE_NAME.fullmatch(table):
        raise ValueError(
            f"journal URL {url!r}: {table!r} is not a DynamoDB table name"
            " (3-255 of A-Z a-z 0-9 _ . -)"
        )
    params = parse_qsl(parsed.query, keep_blank_values=True)
    keys = [key for key, _ in params]
    if keys not in ([], ["region"]) or any(not value for _, value in params):
        raise ValueError(f"journal URL {url!r}: the only query is region=REGION")
    return DynamoJournal(table, region=params[0][1] if params else None, aws=aws)


_OPENERS: dict[str, Callable[[str, SplitResult, Aws | None], Journal]] = {
    "dynamodb": _dynamodb,
    "memory": _memory,
    "sqlite": _sqlite,
}
_QUERY_SCHEMES = frozenset({"dynamodb"})


def open_journal(url: str, aws: Aws | None = None) -> Journal:
    """The journal a URL names, not yet opened: use it as ``async with open_journal(url)``.
    ``aws`` (clients, endpoint, retries) is used by journals that live in AWS.

    Raises ``ValueError`` naming the URL and the supported schemes if the scheme is not
    one of them, or if the URL is malformed for its scheme.
    """
    parsed = urlsplit(url)
    opener = _OPENERS.get(parsed.scheme)
    if opener is None:
        schemes = ", ".join(f"{scheme}:" for scheme in sorted(_OPENERS))
        raise ValueError(f"unsupported journal URL {url!r}: the supported schemes are {schemes}")
    if parsed.fragment or (parsed.query and parsed.scheme not in _QUERY_SCHEMES):
        raise ValueError(f"journal URL {url!r}: a query or fragment is not supported")
    return opener(url, parsed, aws)
