"""``rotator.examine``: every problem of a policy in one round (one mistake never hides
another), the nearest name for a typo, warnings for rules that can never apply and for
``ROTATOR_*`` variables nothing reads, and ``offline`` checks that need none of the files
the policy names."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotator import app
from rotator.errors import ConfigError
from tests.support.certs import make_ca, write_ca_files


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rotator.toml"
    path.write_text(text)
    return path


def rule(name: str, kind: str = "access-key", extra: str = "", **select: str) -> str:
    chosen = ", ".join(f"{k} = {v}" for k, v in select.items())
    return (
        f'[[rules]]\nname = "{name}"\nkind = "{kind}"\n{extra}'
        f'select = {{ {chosen} }}\nsink = {{ type = "memory" }}\n'
    )


def cert_rule(tmp_path: Path, name: str = "web") -> str:
    """A server-certificate rule whose local CA files do not exist (yet)."""
    ca = tmp_path / "ca"
    return (
        f'[[rules]]\nname = "{name}"\nkind = "server-certificate"\n'
        f'issuer = {{ type = "local-ca", cert = "{ca}/ca.pem", key = "{ca}/ca.key" }}\n'
        'sink = { type = "memory", name = "{name}" }\n'
    )


@pytest.fixture(autouse=True)
def _no_rotator_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("ROTATOR_"):
            monkeypatch.delenv(name)


def test_every_problem_is_reported_in_one_round(tmp_path: Path) -> None:
    """Before, a field error hid the checks across sections, the certificate files and
    the sinks: each showed only once the mistakes before it were fixed."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory\n")
    path = write(
        tmp_path,
        f"""
max_concurrency = 0

[journal]
url = "sqlite:///{tmp_path}/journal.db"
lease_ttl = "10s"

[[rules]]
name = "keys"
kind = "access-key"
max_age = "9x"
accounts = ["123456789012"]
sink = {{ type = "file", path = "{blocker}/{{user}}.json" }}

[[rules]]
name = "keys"
kind = "access-key"
sink = {{ type = "memory" }}
"""
        + cert_rule(tmp_path),
    )

    examined = app.examine(path)

    assert examined.config is None and not examined.ok
    said = "\n".join(examined.problems)
    expected = [
        "max_concurrency: Input should be greater than or equal to 1",
        "rule 'keys': max_age: invalid duration '9x'",
        "rules: two rules are named 'keys'; rule names must be unique",
        "journal.lease_ttl 10s is below 1m20s",
        f"rule 'web': issuer.cert: {tmp_path}/ca/ca.pem: file not found",
        f"unusable sink: rules.keys.sink: cannot write under {blocker}",
    ]
    for line in expected:
        assert line in said, f"{line!r} not in\n{said}"
    assert len(examined.problems) == len(set(examined.problems)), "no problem twice"


def test_checks_across_sections_are_one_line_each(tmp_path: Path) -> None:
    """A policy whose fields are all valid but whose rules need [accounts]: one line per
    rule, not one line joined with '; '."""
    scoped = 'accounts = ["123456789012"]\n'
    path = write(tmp_path, rule("a", extra=scoped) + rule("b", "ssh-public-key", extra=scoped))

    problems = app.examine(path).problems

    assert problems == [
        "rule 'a': accounts, ous and account_tags need an [accounts] section",
        "rule 'b': accounts, ous and account_tags need an [accounts] section",
    ]


def test_load_reports_the_same_round_as_examine(tmp_path: Path) -> None:
    path = write(tmp_path, '[journal]\nlease_ttl = "10s"\n' + rule("a", extra='max_age = "x"\n'))

    with pytest.raises(ConfigError) as caught:
        app.load(path)

    assert caught.value.problems == app.examine(path).problems
    assert len(caught.value.problems) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            rule("a", extra='deactivate_afterr = "1d"\n'),
            "rule 'a': deactivate_afterr: unknown key; did you mean `deactivate_after`?",
        ),
        (
            "max_concurency = 4\n" + rule("a"),
            "max_concurency: unknown key; did you mean `max_concurrency`?",
        ),
        (
            '[journal]\nur1 = "memory://"\n' + rule("a"),
            "journal.ur1: unknown key; did you mean `url`?",
        ),
        (
            rule("a").replace('{ type = "memory" }', '{ type = "memory", nmae = "x/{user}" }'),
            "rule 'a': sink.nmae: unknown key; did you mean `name`?",
        ),
        (
            rule("a", extra="selct = {}\n"),
            "rule 'a': selct: unknown key; did you mean `select`?",
        ),
        (
            rule("a").replace("select = {  }", 'select = { user = ["x"] }'),
            "rule 'a': select.user: unknown key; did you mean `users`?",
        ),
        (
            rule("a", "acess-key"),
            "did you mean `access-key`?",
        ),
        (
            rule("a").replace('"memory"', '"secretmanager"'),
            "did you mean `secretsmanager`?",
        ),
        (
            '[audit]\nstream = "stdrr"\n' + rule("a"),
            "audit.stream: Input should be 'stdout', 'stderr' or 'none'; did you mean `stderr`?",
        ),
    ],
    ids=[
        "rule-key",
        "top-key",
        "section-key",
        "sink-key",
        "select",
        "select-key",
        "kind",
        "sink-type",
        "literal",
    ],
)
def test_a_typo_gets_the_nearest_name(tmp_path: Path, text: str, expected: str) -> None:
    problems = app.examine(write(tmp_path, text)).problems

    assert any(expected in p for p in problems), problems


def test_a_key_far_from_every_name_gets_no_suggestion(tmp_path: Path) -> None:
    (problem,) = app.examine(write(tmp_path, rule("a", extra="zzz = 1\n"))).problems

    assert problem == "rule 'a': zzz: unknown key"


def test_unknown_rotator_variables_are_warned_with_the_nearest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROTATOR_MAX_CONCURENCY", "4")
    monkeypatch.setenv("ROTATOR_CONFIG", "ignored here: the Lambda handler reads it")
    path = write(tmp_path, rule("a"))

    examined = app.examine(path)

    assert examined.ok, examined.problems
    assert examined.warnings == [
        "environment: ROTATOR_MAX_CONCURENCY: no setting reads this variable; did you mean "
        "`ROTATOR_MAX_CONCURRENCY`?"
    ]


def test_an_unknown_key_set_by_a_variable_is_named_by_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROTATOR_JOURNAL__URLL", "memory://")

    problems = app.examine(write(tmp_path, rule("a"))).problems

    assert problems == [
        "environment: ROTATOR_JOURNAL__URLL: journal.urll: unknown key; did you mean `url`?"
    ]


def test_a_variable_is_checked_with_the_file_in_one_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease check reads the environment's lease_ttl although a rule is invalid."""
    monkeypatch.setenv("ROTATOR_JOURNAL__LEASE_TTL", "10s")

    problems = app.examine(write(tmp_path, rule("a", extra='max_age = "x"\n'))).problems

    assert any(p.startswith("journal.lease_ttl 10s is below") for p in problems), problems
    assert any(p.startswith("rule 'a': max_age:") for p in problems), problems


@pytest.mark.parametrize(
    ("rules", "warned"),
    [
        pytest.param(rule("all") + rule("ci", path_prefix='"/ci/"'), ["ci"], id="catch-all"),
        pytest.param(
            rule("ci", path_prefix='"/ci/"')
            + rule("ci-app", users='["app"]', path_prefix='"/ci/x/"'),
            ["ci-app"],
            id="prefix-covers",
        ),
        pytest.param(
            rule("ci", users='["ci-*"]') + rule("one", users='["ci-app"]'), ["one"], id="glob"
        ),
        pytest.param(rule("ci", path_prefix='"/ci/"') + rule("all"), [], id="narrow-first"),
        pytest.param(rule("keys") + rule("ssh", "ssh-public-key"), [], id="other-kind"),
        pytest.param(rule("tagged", tags='{ team = "a" }') + rule("all"), [], id="tagged-first"),
        pytest.param(
            rule("all", extra="enabled = false\n") + rule("ci", path_prefix='"/ci/"'),
            [],
            id="disabled-first",
        ),
        pytest.param(
            rule("ci", users='["ci-?"]') + rule("star", users='["ci-*"]'), [], id="glob-not-plain"
        ),
        pytest.param(
            rule("s3", "service-credential", extra='service = "codecommit.amazonaws.com"\n')
            + rule("bedrock", "service-credential", extra='service = "bedrock.amazonaws.com"\n'),
            [],
            id="other-service",
        ),
    ],
)
def test_a_rule_an_earlier_rule_shadows_is_warned(
    tmp_path: Path, rules: str, warned: list[str]
) -> None:
    examined = app.examine(write(tmp_path, rules))

    assert examined.ok, examined.problems
    named = [w.split("'")[1] for w in examined.warnings]
    assert named == warned, examined.warnings
    for warning in examined.warnings:
        assert "never applies: the earlier rule" in warning


def test_offline_needs_none_of_the_files_the_policy_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'[audit]\nfile = "{tmp_path}/no/such/dir/x/../audit.jsonl"\n' + cert_rule(tmp_path),
    )
    (tmp_path / "no").write_text("a file where the audit directory should be\n")

    online, offline = app.examine(path), app.examine(path, offline=True)

    assert any("issuer.cert" in p and "file not found" in p for p in online.problems)
    assert any(p.startswith("audit.file:") for p in online.problems), online.problems
    assert offline.ok, offline.problems
    assert offline.config is not None
    # iam-policy's load: only the rules.
    assert app.load(path, offline=True).rules[0].name == "web"
    # With the CA files in place, only the audit directory is left online.
    write_ca_files(tmp_path / "ca", make_ca("Team CA"))
    (left,) = app.examine(path).problems
    assert left.startswith("audit.file:"), left


def test_offline_still_checks_what_the_policy_itself_says(tmp_path: Path) -> None:
    text = cert_rule(tmp_path).replace("issuer = {", 'name_format = "{nope}"\nissuer = {')
    text += '[aws]\nregion = "narnia"\n'

    problems = app.examine(write(tmp_path, text), offline=True).problems

    assert any("name_format" in p for p in problems), problems
    assert any(p.startswith("aws.region: 'narnia'") for p in problems), problems


def test_a_valid_policy_is_ok(tmp_path: Path) -> None:
    examined = app.examine(write(tmp_path, rule("a")))

    assert examined.ok and examined.problems == [] and examined.warnings == []
    assert examined.config is not None and examined.config.rules[0].name == "a"


def test_a_rule_s_own_checks_across_fields_are_not_hidden_by_its_field_errors(
    tmp_path: Path,
) -> None:
    """pydantic runs a rule's checks across fields only once every field is valid."""
    text = (
        '[[rules]]\nname = "a"\nkind = "access-key"\nmax_age = "9x"\n'
        'sink = { type = "memory", name = "all" }\n'
        '[[rules]]\nname = "c"\nkind = "access-key"\ndeactivate_after = "9d"\n'
        'deadline = "5d"\nselct = 1\nsink = { type = "memory" }\n'
    )

    problems = app.examine(write(tmp_path, text)).problems

    assert problems[0].startswith("rule 'a': max_age: invalid duration '9x'")
    assert problems[1] == "rule 'c': selct: unknown key; did you mean `select`?"
    assert problems[2].startswith("rule 'a': (rule): sink template 'all' has no {user}")
    assert problems[3].startswith("rule 'c': (rule): deactivate_after 9d is not less than")
    assert len(problems) == 4


def test_a_check_that_would_judge_a_default_is_left_out(tmp_path: Path) -> None:
    """deactivate_after is invalid: the 7d default is not compared with the deadline."""
    text = (
        '[[rules]]\nname = "b"\nkind = "access-key"\ndeactivate_after = "bad"\n'
        'deadline = "5d"\nsink = { type = "memory" }\n'
    )

    (problem,) = app.examine(write(tmp_path, text)).problems

    assert problem.startswith("rule 'b': deactivate_after: invalid duration 'bad'")
