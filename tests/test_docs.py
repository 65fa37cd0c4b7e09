"""The docs name every option there is: each setting of the policy file (every section,
rule kind, selector, sink and issuer field), each Lambda environment variable, and each
command and ``--option`` of the CLI. A new option without docs fails here."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import typer.main
from pydantic import BaseModel

from rotator import kinds, policy
from rotator.entrypoints.cli import cli
from rotator.settings import Config, LambdaSettings

ROOT = Path(__file__).resolve().parent.parent
DOCS = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def models_in(annotation: object) -> Iterator[type[BaseModel]]:
    """The pydantic models an annotation refers to (through unions, lists, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from models_in(arg)


def settings_fields() -> Iterator[tuple[str, str]]:
    """(where, key) for every key a policy file may hold."""
    todo: list[type[BaseModel]] = [Config, *models_in(kinds.AnyRule)]
    todo += [m for m in vars(policy).values() if isinstance(m, type) and issubclass(m, BaseModel)]
    seen: set[type[BaseModel]] = set()
    while todo:
        model = todo.pop()
        if model in seen or model.__module__.startswith("pydantic"):
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            yield model.__name__, field.alias or name
            todo.extend(models_in(field.annotation))


def documented(key: str) -> bool:
    return any(form in DOCS for form in (f"`{key}`", f"`{key} ", f"{key} =", f"[{key}]"))


@pytest.mark.parametrize(("where", "key"), sorted(set(settings_fields())))
def test_every_policy_file_setting_is_documented(where: str, key: str) -> None:
    assert documented(key), f"{where}.{key} is in no doc"


@pytest.mark.parametrize("name", sorted(LambdaSettings.model_fields))
def test_every_lambda_environment_variable_is_documented(name: str) -> None:
    assert f"ROTATOR_{name.upper()}" in DOCS


def commands() -> Iterator[tuple[str, click.Command]]:
    def walk(command: click.Command, path: list[str]) -> Iterator[tuple[str, click.Command]]:
        subcommands: dict[str, click.Command] | None = getattr(command, "commands", None)
        if subcommands is not None:  # a group (typer's own click classes: no isinstance)
            for name, sub in subcommands.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(["rotator", *path]), command

    return walk(typer.main.get_command(cli), [])


@pytest.mark.parametrize(("name", "command"), list(commands()), ids=lambda v: str(v))
def test_every_command_and_option_is_documented(name: str, command: click.Command) -> None:
    assert name in DOCS
    options = [o for p in command.params for o in p.opts if o.startswith("--")]
    assert [o for o in options if o not in DOCS] == []


def test_the_walk_finds_the_nested_settings() -> None:
    keys = {key for _, key in settings_fields()}
    assert {"lease_ttl", "deactivate_after", "path_prefix", "profile", "renew_before"} <= keys
    assert {"rotator run", "rotator journal init", "rotator rotate"} <= dict(commands()).keys()
