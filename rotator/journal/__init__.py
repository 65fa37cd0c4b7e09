"""The journal port and its implementations, chosen by URL with ``open_journal``.

* ``memory://`` — ``MemoryJournal``, kept in this process only.
* ``sqlite:///abs/path.db`` (or ``sqlite:relative/path.db``, from the current directory)
  — ``SqliteJournal``, one file shared by the daemon and the CLI.

Adding a backend is one entry in ``_OPENERS``: its scheme and a function from the parsed
URL to an (unopened) journal.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

from rotator.journal.base import Journal
from rotator.journal.memory import MemoryJournal
from rotator.journal.sqlite import SqliteJournal

__all__ = ["Journal", "MemoryJournal", "SqliteJournal", "open_journal"]


def _memory(url: SplitResult) -> Journal:
    if url.netloc or url.path:
        raise ValueError(f"journal URL {url.geturl()!r}: memory:// takes no host or path")
    return MemoryJournal()


def _sqlite(url: SplitResult) -> Journal:
    if url.netloc or not url.path or url.path == "/":
        raise ValueError(
            f"journal URL {url.geturl()!r}: use sqlite:///absolute/path.db"
            " or sqlite:relative/path.db"
        )
    path = unquote(url.path)
    if path.startswith("/"):  # sqlite:////abs (SQLAlchemy's spelling) means /abs too
        path = "/" + path.lstrip("/")
    return SqliteJournal(Path.cwd() / path)  # an absolute path stays as is


_OPENERS: dict[str, Callable[[SplitResult], Journal]] = {
    "memory": _memory,
    "sqlite": _sqlite,
}


def open_journal(url: str) -> Journal:
    """The journal a URL names, not yet opened: use it as ``async with open_journal(url)``.

    Raises ``ValueError`` naming the URL and the supported schemes if the scheme is not
    one of them, or if the URL is malformed for its scheme.
    """
    parsed = urlsplit(url)
    opener = _OPENERS.get(parsed.scheme)
    if opener is None:
        schemes = ", ".join(f"{scheme}:" for scheme in sorted(_OPENERS))
        raise ValueError(f"unsupported journal URL {url!r}: the supported schemes are {schemes}")
    if parsed.query or parsed.fragment:
        raise ValueError(f"journal URL {url!r}: a query or fragment is not supported")
    return opener(parsed)
