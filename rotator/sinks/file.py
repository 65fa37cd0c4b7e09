"""The file sink: one file per holder, written atomically, mode 0600.

Two formats:

* ``json``: the file holds ``SinkDocument.to_json()`` (current, previous, pending).
* ``aws-credentials``: the file is an INI file like ``~/.aws/credentials``. Rotator owns one
  section, ``[profile]``, holding the *current* access key; every other line is kept as it
  was. The three slots live in a sidecar, ``<path>.rotator.json``, in the json format.
  ``put_pending`` touches only the sidecar; ``promote`` and ``rollback`` write the sidecar
  first, then the profile (and repair a profile a crash left behind, since both are
  idempotent).

Each write goes to a temporary file in the same directory, is fsynced and renamed over the
old one, and the directory is fsynced: a crash leaves the old or the new file, never half of
one. Writers of one file are serialised by a lock per path in this process and by
``flock`` on ``<path>.lock`` across processes (a daemon and an emergency CLI may race).
Blocking I/O runs in a worker thread. Errors name the path, never the content.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import fcntl
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from rotator.errors import SinkError
from rotator.model import Kind
from rotator.policy import FileSinkConfig
from rotator.sinks.base import Fence, SecretEntry, SinkDocument, SinkKey
from rotator.sinks.file_pem import sync_pem_files
from rotator.sinks.memory import next_promote, next_put_pending, next_rollback

ACCESS_KEY_ID = "AccessKeyId"
SECRET_ACCESS_KEY = "SecretAccessKey"  # noqa: S105 (a field name, not a secret)
SIDECAR_SUFFIX = ".rotator.json"
LOCK_SUFFIX = ".lock"
FILE_MODE = 0o600
DIR_MODE = 0o700

_Change = Callable[[SinkDocument], SinkDocument]
_HEADER = re.compile(r"\[(?P<name>.+)\]")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def permissions(config: FileSinkConfig) -> list[dict[str, object]]:
    """No AWS permissions: the file sink writes local files (for ``rotator iam-policy``)."""
    return []


class FileSink:
    """Secrets in a file per holder; the path is the template rendered with the key."""

    def __init__(self, config: FileSinkConfig) -> None:
        self._config = config
        self._profile = config.profile if config.format == "aws-credentials" else None

    def location(self, key: SinkKey) -> str:
        """The file's path (and profile, for the aws-credentials format)."""
        path = str(self._path(key))
        return f"{path} [{self._profile}]" if self._profile else path

    async def read(self, key: SinkKey) -> SinkDocument:
        """The holder's document; an empty one if the file does not exist.

        For aws-credentials without a sidecar, an existing profile is reported as current
        (its ``CredentialId`` is the access key ID, its ``CreatedAt`` the file's mtime).
        """
        return await asyncio.to_thread(self._read, _resolved(self._path(key)))

    async def check(self, key: SinkKey) -> None:
        """Preflight: the file's directory (or the nearest one that exists) takes a new
        file, an existing file is a rotator document (or, for aws-credentials, a file whose
        profile can be rewritten). Raises ``SinkError`` naming the path."""
        await asyncio.to_thread(self._check_sync, self._path(key))

    def _check_sync(self, path: Path) -> None:
        target = _resolved(path)
        directory = target.parent
        while not directory.exists() and directory != directory.parent:
            directory = directory.parent
        try:
            if not directory.is_dir():
                raise SinkError(f"cannot write {path}: {directory} is not a directory")
            _probe(directory)
            self._read(target)  # a corrupt document or profile is found now, not at promote
            if self._profile and target.exists():
                values = {"aws_access_key_id": "AKIA", "aws_secret_access_key": "x"}
                with_profile(_read_text(target) or "", self._profile, values, path)
        except OSError as exc:
            raise SinkError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None

    def static_problems(self) -> list[str]:
        """What ``rotator validate`` can tell without a holder: the fixed part of the
        template (up to its first ``{``) must lead to a directory this process can write
        in; a template with no fields is checked like a holder's file (``check``)."""
        template = self._config.path
        try:
            if "{" not in template:
                self._check_sync(Path(template).expanduser())
                return []
            fixed = Path(template.split("{", 1)[0] + "x").expanduser().parent
            directory = _resolved(fixed)
            while not directory.exists() and directory != directory.parent:
                directory = directory.parent
            if not directory.is_dir():
                return [f"cannot write under {fixed}: {directory} is not a directory"]
            _probe(directory)
        except SinkError as exc:
            return [str(exc)]
        except OSError as exc:
            return [f"cannot write under {template}: {exc.strerror or type(exc).__name__}"]
        return []

    async def put_pending(self, key: SinkKey, entry: SecretEntry, fence: Fence) -> None:
        """Store ``entry`` as pending (in the sidecar for aws-credentials)."""
        if self._profile:
            _profile_values(entry, self.location(key))
        await self._update(key, fence, lambda doc: next_put_pending(doc, entry), sync_profile=False)

    async def promote(self, key: SinkKey, credential_id: str, fence: Fence) -> None:
        """Make pending ``credential_id`` current (and write it to the profile)."""
        where = self.location(key)
        await self._update(
            key, fence, lambda doc: next_promote(doc, credential_id, where), sync_profile=True
        )

    async def rollback(self, key: SinkKey, credential_id: str, fence: Fence) -> None:
        """Make previous ``credential_id`` current again (and write it to the profile)."""
        where = self.location(key)
        await self._update(
            key, fence, lambda doc: next_rollback(doc, credential_id, where), sync_profile=True
        )

    def _path(self, key: SinkKey) -> Path:
        fields = key.fields()
        if any(value in (".", "..") for value in fields.values()):
            raise SinkError(f"holder {key} would render a path outside the sink's directory")
        return Path(self._config.path.format(**fields)).expanduser()

    def _document_path(self, path: Path) -> Path:
        return Path(f"{path}{SIDECAR_SUFFIX}") if self._profile else path

    async def _update(
        self, key: SinkKey, fence: Fence, change: _Change, *, sync_profile: bool
    ) -> None:
        where = self.location(key)
        await asyncio.to_thread(
            self._update_sync, self._path(key), where, fence, change, sync_profile
        )

    def _update_sync(
        self, path: Path, where: str, fence: Fence, change: _Change, sync_profile: bool
    ) -> None:
        target = _resolved(path)
        try:
            _make_parents(target.parent)
            with _locked(target):
                old = self._read(target)
                fence.check(old.fence, where)  # under the lock: no writer can slip in
                new = change(old).fenced(fence)
                if new != old or new.fence != old.fence:
                    write_atomic(self._document_path(target), new.to_json())
                if sync_profile and self._profile and new.current is not None:
                    self._sync_profile(target, self._profile, new.current)
                elif sync_profile and new.current is not None:
                    sync_pem_files(target, new.current, write_atomic)
        except OSError as exc:
            raise SinkError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None

    def _read(self, path: Path) -> SinkDocument:
        document_path = self._document_path(path)
        text = _read_text(document_path)
        if text is not None:
            return _parse_document(text, document_path)
        if self._profile is None:
            return SinkDocument()
        return _document_from_profile(path, self._profile)

    def _sync_profile(self, path: Path, profile: str, entry: SecretEntry) -> None:
        values = _profile_values(entry, f"{path} [{profile}]")
        text = _read_text(path) or ""
        updated = with_profile(text, profile, values, path)
        if updated != text:
            write_atomic(path, updated)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (mode 0600): temp file, fsync, rename, fsync the dir."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)  # exactly 0600, whatever the umask
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)


def with_profile(text: str, profile: str, values: Mapping[str, str], path: Path) -> str:
    """``text`` (an INI file) with section ``[profile]`` holding exactly ``values``.

    Only the lines of that section change (comments and blank lines after its last option
    are kept); it is appended if missing. The result is checked with configparser: if any
    other section or the defaults would read differently, ``SinkError`` is raised instead.
    """
    before = _parse_ini(text, path)
    newline = "\r\n" if "\r\n" in text else "\n"
    section = [f"[{profile}]{newline}"] + [f"{k} = {v}{newline}" for k, v in values.items()]
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == f"[{profile}]"), None)
    if start is None:
        head = text if not text or text.endswith("\n") else text + newline
        result = head + (newline if head.strip() else "") + "".join(section)
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i].strip())),
            len(lines),
        )
        while end > start + 1 and lines[end - 1].strip()[:1] in ("", "#", ";"):
            end -= 1
        result = "".join(lines[:start] + section + lines[end:])
    after = _parse_ini(result, path)
    others = [name for name in before.sections() if name != profile]
    unchanged = (
        [name for name in after.sections() if name != profile] == others
        and dict(after.defaults()) == dict(before.defaults())
        and all(dict(after.items(name)) == dict(before.items(name)) for name in others)
        and all(after.get(profile, k, fallback=None) == v for k, v in values.items())
    )
    if not unchanged:
        raise SinkError(
            f"{path}: cannot rewrite profile [{profile}] without changing other sections; "
            "check the file's layout"
        )
    return result


def _profile_values(entry: SecretEntry, where: str) -> dict[str, str]:
    access_key_id = entry.public.get(ACCESS_KEY_ID)
    secret = entry.secret.get(SECRET_ACCESS_KEY)
    if not access_key_id or secret is None:
        raise SinkError(
            f"{where}: the aws-credentials format holds access keys only; the {entry.kind} "
            f"entry {entry.credential_id!r} has no {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY}"
        )
    return {"aws_access_key_id": access_key_id, "aws_secret_access_key": secret.get_secret_value()}


def _document_from_profile(path: Path, profile: str) -> SinkDocument:
    text = _read_text(path)
    if text is None:
        return SinkDocument()
    parser = _parse_ini(text, path)
    access_key_id = parser.get(profile, "aws_access_key_id", fallback="")
    secret = parser.get(profile, "aws_secret_access_key", fallback="")
    if not (access_key_id and secret):
        return SinkDocument()
    current = SecretEntry(
        kind=Kind.ACCESS_KEY,
        credential_id=access_key_id,
        created_at=datetime.fromtimestamp(path.stat().st_mtime, UTC),
        public={ACCESS_KEY_ID: access_key_id},
        secret={SECRET_ACCESS_KEY: SecretStr(secret)},
    )
    return SinkDocument(current=current)


def _parse_document(text: str, path: Path) -> SinkDocument:
    try:
        return SinkDocument.from_json(text)
    except (ValueError, KeyError, TypeError, AttributeError):
        # ``from None``: a JSON error carries the whole text, secrets included.
        raise SinkError(f"{path} is not a rotator sink document (corrupt or not JSON)") from None


def _parse_ini(text: str, path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error:
        # configparser quotes the offending lines, which may hold secrets.
        raise SinkError(f"{path} is not a valid INI credentials file") from None
    return parser


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise SinkError(f"cannot read {path}: not UTF-8 text") from None
    except OSError as exc:
        raise SinkError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None


def _resolved(path: Path) -> Path:
    """``path`` with symlinks resolved: a symlinked credentials file is written through."""
    return Path(os.path.realpath(path))


def _make_parents(directory: Path) -> None:
    """Create ``directory`` and missing ancestors with mode 0700; existing ones are left as is."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(created, DIR_MODE)


def _probe(directory: Path) -> None:
    """Create and remove a file in ``directory``: the only sure test that a write will work
    there (``os.access`` says yes to root on a read-only mount, and knows no sandboxes)."""
    probe = directory / f".rotator-probe.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    os.close(os.open(probe, flags, FILE_MODE))
    os.unlink(probe)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive use of ``path``: a lock per path in this process, ``flock`` across them."""
    with _locks_guard:
        lock = _locks.setdefault(str(path), threading.Lock())
    with lock:
        fd = os.open(f"{path}{LOCK_SUFFIX}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock
