"""Composition: build the engine and its ports from a validated config.

Entry points (CLI, daemon, Lambda handler) call ``load`` and ``open_engine`` and nothing
else, so every mode runs the same engine the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from rotator import audit, issuers
from rotator.aws import Aws
from rotator.errors import ConfigError
from rotator.journal import DynamoJournal, Journal, create_table, open_journal
from rotator.model import utcnow
from rotator.rotation.engine import Engine
from rotator.settings import (
    Config,
    audit_problems,
    aws_problems,
    load_config,
    load_config_text,
)


def load(path: Path, *, inputs: bool = True) -> Config:
    """The validated config at ``path``; raises ``ConfigError`` (exit code 2). With
    ``inputs=False`` the rules' input files (certificate issuers) are not checked: for
    commands that only read the journal (``status``, ``history``)."""
    return check(load_config(path), str(path), inputs=inputs)


def load_text(text: str, source: str) -> Config:
    """``load`` for a policy held in memory (an SSM parameter); ``source`` names it."""
    return check(load_config_text(text, source), source)


def check(config: Config, source: str, *, inputs: bool = True) -> Config:
    """What pydantic cannot check: certificate inputs, the journal URL. Raises
    ``ConfigError`` (exit code 2) before any AWS call."""
    # Certificate inputs (issuer files, subjects, name formats) fail here, before any AWS call.
    problems = issuers.config_problems(config.rules, utcnow()) if inputs else []
    problems += aws_problems(config.aws) + audit_problems(config.audit)
    try:
        open_journal(config.journal.url)  # parse only: nothing is opened
    except ValueError as exc:
        problems.append(f"journal.url: {exc}")
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
        stream=config.audit.stream, file=config.audit.file, level=config.audit.level
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
    """An engine with its journal open; everything is closed when the block ends."""
    async with open_journal_for(config) as journal:
        yield Engine(config=config, journal=journal, aws=make_aws(config), owner=owner)
