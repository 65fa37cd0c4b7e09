"""A policy's problems in one round: pydantic's, and then, on whatever part is valid, the
checks pydantic skips as soon as one field is invalid (those across sections, a rule's own
across its fields). ``check_text`` never raises; ``settings.load_config_text`` and
``rotator.examine`` build on it."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from rotator.accounts import AccountsSettings
from rotator.config_problems import problem
from rotator.kinds import AnyRule
from rotator.policy import Rule
from rotator.settings import (
    AuditSettings,
    AwsSettings,
    Config,
    DaemonSettings,
    JournalSettings,
    VerifySettings,
    cross_problems,
    env_problem,
    environment_values,
    from_environment,
)

_S = TypeVar("_S", bound=BaseModel)


@dataclass(frozen=True)
class Checked:
    """What pydantic and the checks across sections make of a policy text: the config if
    it is valid, else every problem found in one round, with the sections and rules that
    are valid on their own (the checks that read files or the environment run on them)."""

    config: Config | None
    problems: list[str]
    rules: list[Rule] = field(default_factory=list)
    sections: dict[str, BaseModel] = field(default_factory=dict)
    invalid: list[Any] = field(default_factory=list)  # the [[rules]] that are not valid

    def section(self, cls: type[_S], name: str) -> _S:
        """Section ``name`` as read, or its defaults if it is invalid (or the file is)."""
        if self.config is not None:
            value: object = getattr(self.config, name, None)
        else:
            value = self.sections.get(name)
        return value if isinstance(value, cls) else cls()


_SECTIONS: dict[str, type[BaseModel]] = {
    "journal": JournalSettings,
    "audit": AuditSettings,
    "aws": AwsSettings,
    "verify": VerifySettings,
    "daemon": DaemonSettings,
    "accounts": AccountsSettings,
}


def check_text(text: str) -> Checked:
    """Validate the TOML ``text`` with environment overrides; never raises."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return Checked(None, [f"not valid TOML: {exc}"])
    if not isinstance(raw.get("rules", []), list):
        return Checked(None, ["rules: must be an array of tables ([[rules]])"])
    try:
        config = Config(**raw)
    except SettingsError as exc:  # a ROTATOR_* variable that does not parse (not JSON)
        found = re.search(r'field "(\w+)"', str(exc))
        name = f"ROTATOR_{found.group(1).upper()}" if found else "a ROTATOR_* variable"
        return Checked(None, [f"environment: {name}: not valid JSON"])
    except ValidationError as exc:
        return _in_one_round(raw, exc)
    return Checked(config, [], list(config.rules))


def _in_one_round(raw: dict[str, Any], exc: ValidationError) -> Checked:
    """Every problem of an invalid policy: pydantic's, and the checks across sections
    (unique rule names, deadlines, the lease, accounts) run on the rules and sections that
    are valid on their own — pydantic skips them as soon as any field is invalid."""
    overridden = from_environment()
    problems = [
        env_problem(e, overridden[str(e["loc"][0])])
        if e["loc"] and str(e["loc"][0]) in overridden
        else problem(e, raw, Config)
        for e in exc.errors()
        if not _across(e)  # found again below, one a line
    ]
    merged = _merge(raw, environment_values())
    entries = merged.get("rules") if isinstance(merged.get("rules"), list) else None
    rules, invalid, hidden = _valid_rules(entries or [], raw)
    sections = {}
    for name, cls in _SECTIONS.items():
        value = merged.get(name)
        try:
            if isinstance(value, dict) or (value is None and name != "accounts"):
                sections[name] = cls.model_validate(value or {})
        except ValidationError:
            continue
    accounts = sections.get("accounts")
    problems += hidden + duplicate_names(entries or [])
    problems += cross_problems(
        rules,
        journal=_as(JournalSettings, sections.get("journal")),
        aws=_as(AwsSettings, sections.get("aws")),
        verify=_as(VerifySettings, sections.get("verify")),
        daemon=_as(DaemonSettings, sections.get("daemon")),
        accounts=(
            (_as(AccountsSettings, accounts),)
            if accounts is not None or merged.get("accounts") is None
            else ()
        ),
    )
    return Checked(None, list(dict.fromkeys(problems)), rules, sections, invalid)


def _as(cls: type[_S], value: object) -> _S | None:
    return value if isinstance(value, cls) else None


def _across(error: Any) -> bool:
    """An error of a check ``_in_one_round`` runs again on the valid parts."""
    return not error["loc"] or (
        tuple(error["loc"]) == ("rules",) and error["type"] == "value_error"
    )


def duplicate_names(entries: list[Any]) -> list[str]:
    """Each rule name used twice (rules may be invalid otherwise: the name is read raw)."""
    names = [e.get("name") for e in entries if isinstance(e, dict)]
    twice = [n for n in dict.fromkeys(names) if isinstance(n, str) and names.count(n) > 1]
    return [f"rules: two rules are named {n!r}; rule names must be unique" for n in twice]


def _valid_rules(
    entries: list[Any], raw: dict[str, Any]
) -> tuple[list[Rule], list[Any], list[str]]:
    """The rules of ``entries`` that validate on their own, the entries that do not, and
    the problems of the invalid ones' own checks across their fields (``_hidden``)."""
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Rule] = TypeAdapter(AnyRule)
    rules, invalid, hidden = [], [], []
    for index, entry in enumerate(entries):
        try:
            rules.append(adapter.validate_python(entry))
        except ValidationError as exc:
            invalid.append(entry)
            hidden += _hidden(adapter, entry, exc, index, raw)
    return rules, invalid, hidden


_REQUIRED = frozenset({"name", "kind", "sink"})


def _hidden(
    adapter: Any, entry: Any, exc: ValidationError, index: int, raw: dict[str, Any]
) -> list[str]:
    """The rule's checks across its fields (sink template and selection, deadline and
    deactivate_after, a kind's own), which pydantic skips while any field is invalid: run
    on the rule without its invalid keys. A check whose message names a key left out
    (each names the fields it reads) may have judged a default, and is not reported."""
    errors = exc.errors()
    if not isinstance(entry, dict) or any(len(e["loc"]) < 2 for e in errors):
        return []  # an unknown kind, or already a check across fields
    dropped = {str(e["loc"][1]) for e in errors}
    if dropped & _REQUIRED:
        return []
    try:
        adapter.validate_python({k: v for k, v in entry.items() if k not in dropped})
    except ValidationError as again:
        return [
            problem({**e, "loc": ("rules", index, *e["loc"])}, raw, Config)
            for e in again.errors()
            if len(e["loc"]) < 2 and not any(key in str(e["msg"]) for key in dropped)
        ]
    return []


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over``'s values, tables merged key by key (the environment wins)."""
    merged = dict(base)
    for key, value in over.items():
        old = merged.get(key)
        merged[key] = (
            _merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return merged
