"""Where secrets go: the ``SecretSink`` port, its implementations, and ``build_sink``.

``build_sink`` turns a rule's sink settings into a sink, by the settings' ``type``::

    memory          MemorySink          this process only (tests, dry runs)
    file            FileSink            a JSON document or an AWS credentials profile
    secretsmanager  SecretsManagerSink  a secret whose versions are staged like rotation
    ssm             SsmSink             SSM SecureStrings: latest version current, NAME/pending
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rotator.aws import Aws
from rotator.errors import ConfigError
from rotator.policy import SinkConfig
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
    "SsmSink",
    "build_sink",
]

# Each builder receives the settings of its own ``type`` (the policy's discriminator).
_BUILDERS: Mapping[str, Callable[[Any, Aws], SecretSink]] = {
    "memory": lambda config, aws: MemorySink(config),
    "file": lambda config, aws: FileSink(config),
    "secretsmanager": SecretsManagerSink,
    "ssm": SsmSink,
}


def build_sink(config: SinkConfig, aws: Aws) -> SecretSink:
    """The sink ``config`` describes; ``aws`` opens clients for the AWS-backed ones."""
    builder = _BUILDERS.get(config.type)
    if builder is None:
        raise ConfigError("sink", [f"unknown sink type {config.type!r}"])
    return builder(config, aws)
