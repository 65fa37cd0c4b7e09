"""``rotator validate``: every problem of a policy in one round, and the warnings.

``examine`` runs every check ``load`` runs before a command's first AWS call — pydantic's,
the checks across sections, the AWS environment, the audit file, the journal URL, the
certificate inputs — plus the sinks' preflight, and runs each one on whatever part of the
policy is valid, so that one mistake never hides another. ``offline`` leaves out what
depends on the machine the policy will run on: files named by the policy (certificate
and key files, the audit file, sink directories) and the AWS environment (profiles,
``AWS_*`` variables). Warnings (an unknown ``ROTATOR_*`` variable, a rule an earlier one
shadows) never change the exit code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from rotator import issuers, sinks
from rotator.errors import ConfigError
from rotator.journal import open_journal
from rotator.model import utcnow
from rotator.policy import SinkConfig, shadowed
from rotator.settings import (
    AuditSettings,
    AwsSettings,
    Config,
    JournalSettings,
    audit_problems,
    aws_problems,
    environment_warnings,
    read_policy,
)
from rotator.settings_check import Checked, check_text


@dataclass(frozen=True)
class Examined:
    """What ``examine`` found: the config if it is valid, else None; every problem (each
    naming its field) and every warning, one line each, without the source."""

    source: str
    config: Config | None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def error(self) -> ConfigError:
        """The problems as the ``ConfigError`` a command exits 2 with."""
        return ConfigError(self.source, self.problems)


def examine(
    path: Path, *, offline: bool = False, inputs: bool = True, preflight: bool = True
) -> Examined:
    """Examine the policy file at ``path`` (see the module's docstring). ``inputs=False``
    skips the certificate inputs, ``preflight=False`` the sinks (commands that check them
    later themselves)."""
    try:
        text = read_policy(path)
    except ConfigError as exc:
        return Examined(str(path), None, list(exc.problems))
    return examine_text(text, str(path), offline=offline, inputs=inputs, preflight=preflight)


def examine_text(
    text: str,
    source: str,
    *,
    offline: bool = False,
    inputs: bool = True,
    preflight: bool = True,
) -> Examined:
    """``examine`` for a policy held in memory (an SSM parameter); ``source`` names it."""
    checked = check_text(text)
    problems = checked.problems + outside_problems(
        checked, offline=offline, inputs=inputs, preflight=preflight
    )
    problems = list(dict.fromkeys(problems))
    warnings = ([] if offline else environment_warnings()) + shadowed(checked.rules)
    return Examined(source, None if problems else checked.config, problems, warnings)


def outside_problems(
    checked: Checked, *, offline: bool = False, inputs: bool = True, preflight: bool = True
) -> list[str]:
    """What pydantic cannot check, on the valid parts of ``checked``: the AWS
    environment, the audit file, the journal URL, certificate inputs, the sinks."""
    problems = aws_problems(checked.section(AwsSettings, "aws"), environment=not offline)
    if not offline:
        problems += audit_problems(checked.section(AuditSettings, "audit"))
    if checked.config is not None or "journal" in checked.sections:
        try:
            open_journal(checked.section(JournalSettings, "journal").url)  # parse only
        except ValueError as exc:
            problems.append(f"journal.url: {exc}")
    if inputs:
        problems += issuers.config_problems(checked.rules, utcnow(), files=not offline)
    if preflight and not offline:
        problems += [f"unusable sink: {p}" for p in _sink_problems(checked)]
    return problems


def _sink_problems(checked: Checked) -> list[str]:
    """The sinks' preflight: of the valid rules, and of the valid sink of a rule that is
    invalid otherwise."""
    found = sinks.preflight_problems(checked.rules)
    adapter: TypeAdapter[SinkConfig] = TypeAdapter(SinkConfig)
    for entry in checked.invalid:
        if not isinstance(entry, dict):
            continue
        try:
            sink = adapter.validate_python(entry.get("sink"))
        except ValidationError:
            continue
        found += sinks.sink_problems(str(entry.get("name")), sink)
    return found
