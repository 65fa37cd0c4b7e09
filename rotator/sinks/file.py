"""The file sink: one file per holder, written atomically, mode 0600.

Two formats:

* ``json``: the file holds ``SinkDocument.to_json()`` (current, previous, pending, fence).
* ``aws-credentials``: the file is an INI file like ``~/.aws/credentials``. Rotator owns two
  lines of one section, ``[profile]``: ``aws_access_key_id`` and ``aws_secret_access_key``,
  holding the *current* access key. Every other line is kept as it was: other sections, and
  in the profile's own section ``region``, ``output``, comments and any other key (an
  obsolete ``aws_session_token`` is dropped). Section headers are recognised the way
  configparser and botocore read them (``[name] # comment``); CRLF files stay CRLF; the
  file keeps its owner, group and mode. The three slots live in a sidecar,
  ``<path>.rotator.json``, in the json format. ``put_pending`` touches only the sidecar;
  ``promote`` and ``rollback`` write the sidecar first, then the profile (and repair a
  profile a crash left behind, since both are idempotent).

Each write goes to a temporary file in the same directory, is fsynced and renamed over the
old one, and the directory is fsynced: a crash leaves the old or the new file, never half of
one. Writers of one file are serialised by a lock per path in this process and by
``flock`` on ``<path>.lock`` across processes (a daemon and an emergency CLI may race); the
fence of a write is compared under that lock. Blocking I/O runs in a worker thread. Errors
name the path, never the content.

Nothing is followed through a symbolic link below the sink's *root* (the directory part of
the template before its first ``{field}``): every directory between the root and the file
is checked, and the file, its sidecar and its lock are opened with ``O_NOFOLLOW``. A planted
link is refused (``SinkError``). A holder whose fields would render a path outside the root
(a ``/``, ``.`` or ``..`` in a value) is refused too, whatever IAM allows.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
import string
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
# The section header as configparser (and so botocore) reads it, after stripping the line.
_HEADER = configparser.RawConfigParser.SECTCRE
KEY_OPTIONS = ("aws_access_key_id", "aws_secret_access_key")
OBSOLETE_OPTIONS = ("aws_session_token",)  # meaningless beside a rotated long-term key
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def permissions(config: FileSinkConfig, partition: str = "aws") -> list[dict[str, object]]:
    """No AWS permissions: the file sink writes local files (for ``rotator iam-policy``)."""
    return []


class FileSink:
    """Secrets in a file per holder; the path is the template rendered with the key."""

    def __init__(self, config: FileSinkConfig) -> None:
        self._config = config
        self._profile = config.profile if config.format == "aws-credentials" else None
        self._root = sink_root(config.path)
        self._fields = {name for _, name, _, _ in string.Formatter().parse(config.path) if name}

    def location(self, key: SinkKey) -> str:
        """The file's path (and profile, for the aws-credentials format)."""
        path = str(self._path(key))
        return f"{path} [{self._profile}]" if self._profile else path

    async def read(self, key: SinkKey) -> SinkDocument:
        """The holder's document; an empty one if the file does not exist.

        For aws-credentials without a sidecar, an existing profile is reported as current
        (its ``CredentialId`` is the access key ID, its ``CreatedAt`` the file's mtime).
        """
        path = self._path(key)
        return await asyncio.to_thread(self._read_checked, path)

    def _read_checked(self, path: Path) -> SinkDocument:
        _no_links(self._root, path.parent)
        return self._read(path)

    async def check(self, key: SinkKey) -> None:
        """Preflight: no link below the root, the file's directory (or the nearest one that
        exists) takes a new file, an existing file is a rotator document (or, for
        aws-credentials, a file whose profile can be rewritten keeping its owner). Raises
        ``SinkError`` naming the path. Leaves nothing behind."""
        await asyncio.to_thread(self._check_sync, self._path(key))

    def _check_sync(self, path: Path) -> None:
        _no_links(self._root, path.parent)
        directory = path.parent
        while not _exists(directory) and directory != directory.parent:
            directory = directory.parent
        try:
            if not directory.is_dir():
                raise SinkError(f"cannot write {path}: {directory} is not a directory")
            _probe(directory)
            self._read(path)  # a corrupt document or profile is found now, not at promote
            for name in (f"{path}{LOCK_SUFFIX}", self._document_path(path)):
                _readable(Path(name))
            if self._profile and _exists(path):
                _keepable_owner(path)
                values = dict.fromkeys(KEY_OPTIONS, "preflight")
                with_profile(_read_text(path) or "", self._profile, values, path)
        except OSError as exc:
            raise SinkError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None

    def static_problems(self) -> list[str]:
        """What ``rotator validate`` can tell without a holder: the sink's root (or the
        nearest directory above it that exists) must take new files; a template with no
        fields is checked like a holder's file (``check``)."""
        template = self._config.path
        try:
            if not self._fields:
                self._check_sync(Path(template).expanduser())
                return []
            directory = self._root
            while not _exists(directory) and directory != directory.parent:
                directory = directory.parent
            if not directory.is_dir():
                return [f"cannot write under {self._root}: {directory} is not a directory"]
            _probe(directory)
        except SinkError as exc:
            return [str(exc)]
        except OSError as exc:
            return [f"cannot write under {self._root}: {exc.strerror or type(exc).__name__}"]
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
        """The holder's file. A field value that would lead out of the sink's root (a path
        separator, ``.`` or ``..``) is refused, even where IAM would not allow it."""
        fields = key.fields()
        for name in sorted(self._fields):
            value = fields.get(name, "")
            if value in (".", "..") or any(c in value for c in ("/", "\\", "\0")):
                raise SinkError(
                    f"holder {key}: its {{{name}}} {value!r} would render a path outside the "
                    f"sink's directory {self._root}; refused"
                )
        path = Path(os.path.abspath(Path(self._config.path.format(**fields)).expanduser()))
        if not _below(path, self._root):
            raise SinkError(f"holder {key} would render {path}, outside {self._root}; refused")
        return path

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
        try:
            _no_links(self._root, path.parent)
            _make_parents(path.parent)
            _no_links(self._root, path.parent)  # what was just made, too
            owner = _stat(path) if self._profile else None  # the application's file
            with _locked(path, owner):
                old = self._read(path)
                fence.check(old.fence, where)  # under the lock: no writer can slip in
                new = change(old).fenced(fence)
                document = self._document_path(path)
                if new != old or new.fence != old.fence:
                    kept = _stat(document) or owner
                    write_atomic(document, new.to_json(), owner=kept)
                if sync_profile and self._profile and new.current is not None:
                    self._sync_profile(path, self._profile, new.current)
                elif sync_profile and new.current is not None:
                    sync_pem_files(path, new.current, write_atomic)
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
            before = _stat(path)
            write_atomic(path, updated, owner=before, keep_mode=before is not None)


def sink_root(template: str) -> Path:
    """The directory a file sink never leaves: the template's directory part before its
    first field (the file's own directory for a template without fields)."""
    fixed = template.split("{", 1)[0]
    if fixed == template:
        return Path(os.path.abspath(Path(template).expanduser())).parent
    return Path(os.path.abspath(Path(fixed + "x").expanduser())).parent


def write_atomic(
    path: Path, text: str, *, owner: os.stat_result | None = None, keep_mode: bool = False
) -> None:
    """Replace ``path`` with ``text``: temp file, fsync, rename, fsync the dir. The file is
    mode 0600 (``keep_mode``: ``owner``'s mode) and, when ``owner`` is given, gets its
    owner and group (``SinkError`` if this process may not give them)."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    mode = stat.S_IMODE(owner.st_mode) if owner is not None and keep_mode else FILE_MODE
    fd = os.open(temp, flags, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            if owner is not None:
                _chown(handle.fileno(), owner, path)
            os.fchmod(handle.fileno(), mode)  # exactly, whatever the umask
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)


def _chown(fd: int, owner: os.stat_result, path: Path) -> None:
    """Give the file ``fd`` the owner and group of ``owner``: the application reading
    ``path`` must still be able to."""
    mine = os.fstat(fd)
    if (mine.st_uid, mine.st_gid) == (owner.st_uid, owner.st_gid):
        return
    try:
        os.fchown(fd, owner.st_uid, owner.st_gid)
    except PermissionError:
        raise SinkError(
            f"cannot write {path}: it belongs to uid {owner.st_uid} gid {owner.st_gid}, and "
            "this process may not give a file that owner; run rotator as that user"
        ) from None


def with_profile(text: str, profile: str, values: Mapping[str, str], path: Path) -> str:
    """``text`` (an INI file) with section ``[profile]``'s key lines holding ``values``.

    In the profile's section only the ``aws_access_key_id`` and ``aws_secret_access_key``
    lines change (written where the first of them stood, or right after the header) and an
    obsolete ``aws_session_token`` goes; every other line of the file is kept byte for
    byte. The section is appended if missing. Headers are found the way configparser reads
    them (``[name] # comment``). The result is checked with configparser: if any other
    section, the defaults or the profile's other keys would read differently, ``SinkError``
    is raised instead.
    """
    before = _parse_ini(text, path)
    newline = "\r\n" if "\r\n" in text else "\n"
    keys = [f"{k} = {v}{newline}" for k, v in values.items()]
    lines = text.splitlines(keepends=True)
    headers = [i for i, line in enumerate(lines) if _section_of(line) is not None]
    start = next((i for i in headers if _section_of(lines[i]) == profile), None)
    if start is None:
        head = text if not text or text.endswith("\n") else text + newline
        result = head + (newline if head.strip() else "") + f"[{profile}]{newline}" + "".join(keys)
    else:
        end = next((i for i in headers if i > start), len(lines))
        header = lines[start] if lines[start].endswith("\n") else lines[start] + newline
        body: list[str] = []
        at: int | None = None
        dropping = False
        for line in lines[start + 1 : end]:
            option = _option_of(line)
            if dropping and option is None and line[:1] in (" ", "\t") and line.strip():
                continue  # a continuation of a dropped value
            dropping = option in KEY_OPTIONS + OBSOLETE_OPTIONS
            if option in KEY_OPTIONS and at is None:
                at = len(body)
            if not dropping:
                body.append(line)
        if body and not body[-1].endswith("\n"):
            body[-1] += newline
        at = 0 if at is None else at
        result = "".join([*lines[:start], header, *body[:at], *keys, *body[at:], *lines[end:]])
    after = _parse_ini(result, path)
    others = [name for name in before.sections() if name != profile]
    kept = {
        k: v
        for k, v in (
            before.items(profile) if before.has_section(profile) else before.defaults().items()
        )
        if k not in KEY_OPTIONS + OBSOLETE_OPTIONS
    }
    unchanged = (
        [name for name in after.sections() if name != profile] == others
        and dict(after.defaults()) == dict(before.defaults())
        and all(dict(after.items(name)) == dict(before.items(name)) for name in others)
        and dict(after.items(profile)) == {**kept, **values}
    )
    if not unchanged:
        raise SinkError(
            f"{path}: cannot rewrite profile [{profile}] without changing other lines; "
            "check the file's layout"
        )
    return result


def _section_of(line: str) -> str | None:
    """The section a header line opens, as configparser reads it; None for other lines.
    An indented line is a value's continuation, never a header, to configparser too."""
    if line[:1] in (" ", "\t"):
        return None
    match = _HEADER.match(line.strip())
    return match.group("header") if match else None


def _option_of(line: str) -> str | None:
    """The (lower-cased) option a line sets, or None (comment, blank, continuation)."""
    stripped = line.strip()
    if not stripped or stripped[0] in "#;" or line[:1] in (" ", "\t"):
        return None
    name = re.split(r"[=:]", stripped, maxsplit=1)[0]
    return name.strip().lower() if name != stripped else None


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
    found = _stat(path)
    current = SecretEntry(
        kind=Kind.ACCESS_KEY,
        credential_id=access_key_id,
        created_at=datetime.fromtimestamp(found.st_mtime if found else 0, UTC),
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
    """The file's text (None if it does not exist); a symbolic link is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        _refuse_link(exc, path)
        raise SinkError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        with os.fdopen(fd, "r", encoding="utf-8", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError:
        raise SinkError(f"cannot read {path}: not UTF-8 text") from None
    except OSError as exc:
        raise SinkError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None


def _refuse_link(exc: OSError, path: Path) -> None:
    """``SinkError`` if ``exc`` is ``O_NOFOLLOW`` meeting a symbolic link at ``path``."""
    if exc.errno == errno.ELOOP:
        raise SinkError(
            f"{path} is a symbolic link; rotator does not follow links for the files it "
            "writes: remove it"
        ) from None


def _readable(path: Path) -> None:
    """Preflight of a file rotator opens: no link, and openable if it exists."""
    with contextlib.suppress(FileNotFoundError):
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC))
        except OSError as exc:
            _refuse_link(exc, path)
            raise


def _keepable_owner(path: Path) -> None:
    """Preflight: a rewrite of ``path`` can keep its owner (root can give any owner)."""
    found = _stat(path)
    if found is None or os.geteuid() == 0 or found.st_uid == os.geteuid():
        return
    raise SinkError(
        f"cannot write {path}: it belongs to uid {found.st_uid}, and this process (uid "
        f"{os.geteuid()}) could not keep that owner; run rotator as that user"
    )


def _below(path: Path, root: Path) -> bool:
    return path == root or str(path).startswith(str(root).rstrip(os.sep) + os.sep)


def _no_links(root: Path, directory: Path) -> None:
    """Refuse a symbolic link (or a non-directory) among the directories from ``root``
    (exclusive: the operator chose it) down to ``directory``; missing ones are fine."""
    if not _below(directory, root):
        raise SinkError(f"{directory} is outside the sink's directory {root}; refused")
    parts = directory.relative_to(root).parts
    current = root
    for part in parts:
        current = current / part
        found = _stat(current)
        if found is None:
            return
        if stat.S_ISLNK(found.st_mode):
            raise SinkError(
                f"{current} is a symbolic link; rotator does not follow links below the "
                f"sink's directory {root}: remove it"
            )
        if not stat.S_ISDIR(found.st_mode):
            raise SinkError(f"cannot write below {current}: not a directory")


def _stat(path: Path) -> os.stat_result | None:
    """``lstat`` of ``path``, None if it does not exist (or cannot: a file on its way)."""
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _exists(path: Path) -> bool:
    return _stat(path) is not None


def _make_parents(directory: Path) -> None:
    """Create ``directory`` and missing ancestors with mode 0700; existing ones are left as is."""
    missing: list[Path] = []
    while not _exists(directory):
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
def _locked(path: Path, owner: os.stat_result | None = None) -> Iterator[None]:
    """Exclusive use of ``path``: a lock per path in this process, ``flock`` across them.
    The lock file is never followed through a link; a new one gets ``owner``'s owner."""
    with _locks_guard:
        lock = _locks.setdefault(str(path), threading.Lock())
    lock_path = Path(f"{path}{LOCK_SUFFIX}")
    with lock:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(lock_path, flags | os.O_EXCL, FILE_MODE)
            if owner is not None:
                with contextlib.suppress(PermissionError):  # best effort: only a lock
                    os.fchown(fd, owner.st_uid, owner.st_gid)
        except FileExistsError:
            try:
                fd = os.open(lock_path, flags, FILE_MODE)
            except OSError as exc:
                _refuse_link(exc, lock_path)
                raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock
