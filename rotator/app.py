"""Composition: build the engine and its ports from a validated config.

Entry points (CLI, daemon, Lambda handler) call ``load`` and ``open_engine`` and nothing
else, so every mode runs the same engine the same way; ``rotator validate`` calls
``examine`` (``rotator/examine.py``), which ``load`` is built on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from rotator import audit
from rotator.aws import Aws
from rotator.errors import ConfigError
from rotator.examine import Examined, examine, examine_text, outside_problems
from rotator.journal import DynamoJournal, Journal, create_table, open_journal
from rotator.rotation.engine import Engine
from rotator.settings import Config
from rotator.settings_check import Checked

__all__ = ["Examined", "check", "examine", "load", "load_text", "open_engine"]


def load(path: Path, *, inputs: bool = True, offline: bool = False) -> Config:
    """The validated config at ``path``, every problem found in one round; raises
    ``ConfigError`` (exit code 2). With ``inputs=False`` the rules' input files
    (certificate issuers) are not checked: for commands that only read the journal
    (``status``, ``history``). ``offline`` checks only what the policy itself says (no
    file it names, no AWS environment): ``iam-policy`` needs only the rules."""
    return _valid(examine(path, inputs=inputs, offline=offline, preflight=False))


def load_text(text: str, source: str) -> Config:
    """``load`` for a policy held in memory (an SSM parameter); ``source`` names it."""
    return _valid(examine_text(text, source, preflight=False))


def _valid(examined: Examined) -> Config:
    if examined.config is None:
        raise examined.error()
    return examined.config


def check(config: Config, source: str, *, inputs: bool = True) -> Config:
    """What pydantic cannot check, for a config already built: the AWS environment, the
    audit file, certificate inputs, the journal URL. Raises ``ConfigError`` (exit code 2)
    before any AWS call."""
    checked = Checked(config, [], list(config.rules))
    problems = outside_problems(checked, inputs=inputs, preflight=False)
    if problems:
        raise ConfigError(source, problems)
    return config


def make_aws(config: Config) -> Aws:
    s = config.aws
    return Aws(
        region=s.region,
        endpoint_url=s.endpoint_url,
        profile=s.profile,
        max_attempts=s.max_attempts,
        retry_mode=s.retry_mode,
        connect_timeout=s.connect_timeout,
        read_timeout=s.read_timeout,
        # Every worker may have a call in flight, plus the sweep's own listing.
        max_connections=max(10, config.max_concurrency + 2),
        max_iam_calls_per_second=s.max_iam_calls_per_second,
    )


def configure_audit(config: Config) -> Callable[[], None]:
    """Point the audit log where the config says; returns a function closing the file."""
    return audit.configure(
        stream=config.audit.stream,
        file=config.audit.file,
        level=config.audit.level,
        console=config.audit.format,
    )


@asynccontextmanager
async def open_journal_for(config: Config) -> AsyncIterator[Journal]:
    async with open_journal(config.journal.url, make_aws(config)) as journal:
        yield journal


async def init_journal(config: Config) -> str:
    """Create the journal's storage (the DynamoDB table, or the SQLite file and schema);
    idempotent. Returns what it did, for people."""
    journal = open_journal(config.journal.url, make_aws(config))
    if isinstance(journal, DynamoJournal):
        created = await create_table(journal.table, region=journal.region, aws=make_aws(config))
        what = "created" if created else "already exists"
        return f"DynamoDB table {journal.table} {what} (on-demand billing, TTL on expires_at)"
    async with journal:
        return f"journal ready: {config.journal.url}"


@asynccontextmanager
async def open_engine(config: Config, *, owner: str | None = None) -> AsyncIterator[Engine]:
    """An engine with its journal open; everything is closed when the block ends. The
    journal's clients (DynamoDB) and the engine's share one ``Aws``: when rotator rotates
    the key it signs with, all of them switch to the new key (``rotation.own_key``)."""
    aws = make_aws(config)
    async with open_journal(config.journal.url, aws) as journal:
        yield Engine(config=config, journal=journal, aws=aws, owner=owner)
