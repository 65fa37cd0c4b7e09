"""The policy file: the documented example is accepted; every mistake is named precisely."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from rotator.errors import ConfigError
from rotator.kinds import REGISTRY
from rotator.model import Kind
from rotator.policy import format_duration, parse_duration
from rotator.settings import load_config

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rotator.toml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.source == str(path)
    return caught.value.problems


def test_the_documented_example_is_accepted_as_written() -> None:
    config = load_config(ROOT / "config" / "ci-keys.toml")
    (rule,) = config.rules
    assert config.journal.url == "sqlite:///var/lib/rotator/journal.db"
    assert config.audit.file == Path("/var/log/rotator/audit.jsonl")
    assert (rule.name, str(rule.kind)) == ("ci-keys", "access-key")
    assert (rule.max_age, rule.deactivate_after, rule.delete_after) == (
        timedelta(days=90),
        timedelta(days=7),
        timedelta(days=7),
    )
    assert rule.select.tags == {"team": "platform"}
    assert rule.exclude.tags == {"rotator:skip": "true"}
    assert rule.sink.type == "file"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0),
        ("45s", 45),
        ("5m", 300),
        ("12h", 43200),
        ("90d", 7776000),
        ("2w", 1209600),
        ("1h30m", 5400),
        ("1d12h", 129600),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(timedelta(seconds=seconds))) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["90", "d", "1y", "-1d", "1.5d", "", "90 days", 90])
def test_bad_durations_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


RULE = """
[[rules]]
name = "ci-keys"
kind = "access-key"
sink = {{ type = "file", path = "/tmp/{{user}}.json" }}
{extra}
"""


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('max_age = "9x"', "rule 'ci-keys': max_age: invalid duration '9x'"),
        ("colour = 1", "rule 'ci-keys': colour: unknown key"),
        ("select = { path = '/ci/' }", "rule 'ci-keys': select.path: unknown key"),
        (
            "select = { path_prefix = 'ci/' }",
            "rule 'ci-keys': select.path_prefix: path_prefix 'ci/' must start with '/'",
        ),
    ],
)
def test_rule_mistakes_name_the_rule_and_field(tmp_path: Path, extra: str, expected: str) -> None:
    found = problems(write(tmp_path, RULE.format(extra=extra)))
    assert any(p.startswith(expected) for p in found), found


def test_unknown_kind_and_sink_type(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[rules]]
name = "a"
kind = "acess-key"
sink = { type = "file", path = "/x/{user}" }
[[rules]]
name = "b"
kind = "access-key"
sink = { type = "vault", path = "/x/{user}" }
""",
    )
    found = problems(path)
    assert any(p.startswith("rule 'a': kind: unknown kind 'acess-key'") for p in found), found
    assert any(p.startswith("rule 'b': sink: unknown type 'vault'") for p in found), found


def test_every_kind_a_policy_file_can_name_is_implemented() -> None:
    """A kind outside ``Kind`` is refused when the file is read (above); every member has
    an implementation, so no rule can name a kind rotator cannot rotate."""
    assert set(REGISTRY) == set(Kind)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[journal]\nurl = 'postgres://x'\n", "journal.url: unsupported journal url"),
        ("[journl]\n", "journl: unknown key"),
        ("rules = [", "not valid TOML"),
        ("", "rules: Field required"),
    ],
)
def test_file_level_mistakes(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(write(tmp_path, text))
    assert any(expected in p for p in found), found


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.toml") == ["file not found"]


def test_sink_template_must_separate_users(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[rules]]
name = "shared"
kind = "access-key"
sink = { type = "file", path = "/tmp/all.json" }
""",
    )
    assert any("would overwrite each other" in p for p in problems(path))


def test_sink_template_fields_are_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path, RULE.format(extra="").replace("{{user}}", "{usr}").replace("{user}", "{usr}")
    )
    assert any("unknown field(s) usr" in p for p in problems(path))


def test_duplicate_rule_names(tmp_path: Path) -> None:
    path = write(tmp_path, RULE.format(extra="") + RULE.format(extra=""))
    assert any("two rules are named 'ci-keys'" in p for p in problems(path))


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATOR_JOURNAL__URL", "memory://")
    monkeypatch.setenv("ROTATOR_MAX_CONCURRENCY", "3")
    config = load_config(
        write(tmp_path, "[journal]\nurl = 'sqlite:///x.db'\n" + RULE.format(extra=""))
    )
    assert (config.journal.url, config.max_concurrency) == ("memory://", 3)


def test_the_oidc_example_is_accepted_as_written() -> None:
    config = load_config(ROOT / "config" / "oidc.toml")
    (rule,) = config.rules
    assert (rule.name, str(rule.kind)) == ("oidc-providers", "oidc-thumbprint")
    assert rule.timings() == (timedelta(0), timedelta(days=7))
    assert rule.selects("token.actions.githubusercontent.com", "/", {})
    assert not rule.selects("accounts.google.com", "/", {})


DEADLINE_RULE = """
[[rules]]
name = "ci-keys"
kind = "access-key"
deadline = "{deadline}"
deactivate_after = "{deactivate}"
sink = {{ type = "file", path = "/tmp/{{user}}.json" }}
{extra}
"""


def test_a_deadline_learns_verification_and_the_wait_for_a_sweep(tmp_path: Path) -> None:
    text = "[verify]\nattempts = 4\nmax_delay = '15s'\n" + DEADLINE_RULE.format(
        deadline="90d", deactivate="7d", extra='schedule = "0 3 * * *"'
    )
    (rule,) = load_config(write(tmp_path, text)).rules
    assert rule.deadline_lead == timedelta(days=7, minutes=1) + timedelta(days=1) + timedelta(
        days=1
    ), "deactivate_after + 4 x 15s + a day between daily sweeps + the margin"
    assert rule.start_age == timedelta(days=81) - timedelta(minutes=1)


@pytest.mark.parametrize(
    ("deadline", "deactivate", "extra", "expected"),
    [
        ("6d", "6d", "", "deactivate_after 6d is not less than deadline 6d"),
        ("6d", "10d", "", "deactivate_after 10d is not less than deadline 6d"),
        ("8d", "7d", "", "rule 'ci-keys': deadline 8d cannot be met: deactivate_after 1w"),
        ("9d", "7d", 'schedule = "@weekly"', "deadline 9d cannot be met"),
    ],
)
def test_a_deadline_that_cannot_be_met_is_refused_with_why(
    tmp_path: Path, deadline: str, deactivate: str, extra: str, expected: str
) -> None:
    text = DEADLINE_RULE.format(deadline=deadline, deactivate=deactivate, extra=extra)
    found = problems(write(tmp_path, text))
    assert any(expected in p for p in found), found
