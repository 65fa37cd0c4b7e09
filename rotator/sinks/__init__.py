"""Where secrets go: the ``SecretSink`` port, its implementations, ``build_sink`` and ``Sinks``.

``build_sink`` turns a rule's sink settings into a sink, by the settings' ``type``::

    memory          MemorySink          in memory, as long as the sink (tests, dry runs)
    file            FileSink            a JSON document or an AWS credentials profile
    secretsmanager  SecretsManagerSink  a secret whose versions are staged like rotation
    ssm             SsmSink             SSM SecureStrings: latest version current, NAME/pending

The AWS-backed sinks take their clients from a ``rotator.aws.Clients`` and are usable while
it is open. ``Sinks`` is what a session holds: one sink per rule, built on first use on
the session's clients, so a sink lives as long as the session (one sweep or command).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rotator.aws import Clients
from rotator.errors import ConfigError
from rotator.policy import FileSinkConfig, Rule, SinkConfig
from rotator.sinks.base import SecretEntry, SecretSink, SinkDocument, SinkKey
from rotator.sinks.file import FileSink
from rotator.sinks.memory import MemorySink
from rotator.sinks.secretsmanager import SecretsManagerSink
from rotator.sinks.ssm import SsmSink

__all__ = [
    "FileSink",
    "MemorySink",
    "SecretEntry",
    "SecretSink",
    "SecretsManagerSink",
    "SinkDocument",
    "SinkKey",
    "Sinks",
    "SsmSink",
    "build_sink",
    "preflight_problems",
    "sink_problems",
    "where",
]

# Each builder receives the settings of its own ``type`` (the policy's discriminator).
_BUILDERS: Mapping[str, Callable[[Any, Clients], SecretSink]] = {
    "memory": lambda config, clients: MemorySink(config),
    "file": lambda config, clients: FileSink(config),
    "secretsmanager": SecretsManagerSink,
    "ssm": SsmSink,
}


def build_sink(config: SinkConfig, clients: Clients) -> SecretSink:
    """The sink ``config`` describes; the AWS-backed ones use ``clients`` (and work only
    while they are open)."""
    builder = _BUILDERS.get(config.type)
    if builder is None:
        raise ConfigError("sink", [f"unknown sink type {config.type!r}"])
    return builder(config, clients)


class Sinks:
    """The sinks of one session: one per rule (by name), built on first use on the
    session's ``clients``; valid while those are open. In a member account of an
    organization sweep, ``hub`` are the hub account's clients, for rules whose secrets are
    kept there (``sink_in = "hub"``)."""

    def __init__(self, clients: Clients, hub: Clients | None = None) -> None:
        self._clients = clients
        self._hub = hub
        self._built: dict[str, SecretSink] = {}

    def for_rule(self, rule: Rule) -> SecretSink:
        """The sink of ``rule``; the same object every time within this session."""
        if rule.name not in self._built:
            clients = self._hub if rule.sink_in == "hub" and self._hub else self._clients
            self._built[rule.name] = build_sink(rule.sink, clients)
        return self._built[rule.name]


def where(rule: Rule, sink: SecretSink, key: SinkKey) -> str:
    """Where ``rule``'s sink keeps ``key``'s secret, for people: the sink's type and its
    name for this holder (a path, a secret or parameter name), e.g. ``secretsmanager
    rotator/ci-app``; ``(hub account)`` when the rule keeps secrets in the hub. No secrets."""
    hub = " (hub account)" if rule.sink_in == "hub" else ""
    return f"{rule.sink.type} {sink.location(key)}{hub}"


def preflight_problems(rules: list[Rule]) -> list[str]:
    """What ``rotator validate`` finds wrong with the rules' sinks without AWS and without
    a holder: a file sink whose directory cannot be written (``FileSink.static_problems``).
    The full check of each holder's sink (``SecretSink.check``) runs in ``plan`` and before
    every create."""
    return [p for rule in rules for p in sink_problems(rule.name, rule.sink)]


def sink_problems(rule: str, sink: SinkConfig) -> list[str]:
    """``preflight_problems`` of one sink, of the rule named ``rule``."""
    if not isinstance(sink, FileSinkConfig):
        return []
    return [f"rules.{rule}.sink: {p}" for p in FileSink(sink).static_problems()]
