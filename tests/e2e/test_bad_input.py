"""The bad-input corpus: every case runs the real ``rotator`` CLI against the moto server
behind the fault proxy and must exit 2 with one ``error: SOURCE: FIELD: ...`` line per
problem, print no traceback, and make no mutating AWS call.

"Mutating" is decided by ``tests.support.faults.is_mutating``: anything but ``Get*``,
``List*``, ``Describe*``, DynamoDB's ``Query``/``Scan``/``BatchGetItem``, ``Simulate*``
and ``GenerateCredentialReport``. Each case signs with its own access key ID, so the proxy
attributes every request to its case.

The cases run in one batch (``tests.support.cli_batch``: one process per case, forked from
a runner that imported the CLI once); ``test_cold_start_agrees`` runs a sample of them
through ``python -m rotator`` to show the batch changes nothing. ``ROTATOR_CORPUS_COLD=1``
runs every case that way. The Lambda handler's bad events run in-process (a Lambda is not
a command line) with the same checks; SIGHUP is in ``test_daemon.py``'s style at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.support import tally
from tests.support.cli_batch import run_batch
from tests.support.faults import FaultProxy, is_mutating
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e

SECRET_LIKE = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # what an operator may paste by mistake
HUGE = "99999999999999d"

POLICY = """\
[journal]
url = "sqlite:///{tmp}/journal.db"
{journal}
[audit]
file = "{tmp}/audit.jsonl"
{audit}
{sections}
[[rules]]
name = "ci-keys"
kind = "access-key"
max_age = "0s"
deactivate_after = "0s"
delete_after = "0s"
select = {{ path_prefix = "/ci/", users = ["*"] }}
sink = {{ type = "file", path = "{tmp}/secrets/{{account}}/{{user}}/{{kind}}.json" }}
{rule}
"""


@dataclass(frozen=True)
class Case:
    """One bad input: the command line (``--config`` is added unless ``config`` is
    False), how the policy differs from ``POLICY``, the environment set or removed, and
    what the error line must name (every string in ``names``)."""

    id: str
    argv: tuple[str, ...]
    names: tuple[str, ...]
    journal: str = ""
    audit: str = ""
    sections: str = ""
    rule: str = ""
    replace: tuple[tuple[str, str], ...] = ()
    raw: str | None = None  # the whole policy file, with {tmp}
    binary: bytes | None = None  # the policy file's bytes, when not text
    env: dict[str, str | None] = field(default_factory=dict)
    config: bool = True
    usage: bool = False  # click's own usage error (several lines, still exit 2)

    def policy(self, tmp: Path) -> str:
        if self.raw is not None:
            return self.raw.format(tmp=tmp)
        text = POLICY.format(
            tmp=tmp, journal=self.journal, audit=self.audit, sections=self.sections, rule=""
        )
        for old, new in self.replace:
            assert old in text, old
            text = text.replace(old, new)
        return text + self.rule.format(tmp=tmp)


def validate(id: str, names: tuple[str, ...], **kw: Any) -> Case:
    return Case(id=id, argv=("validate",), names=names, **kw)


def rule_value(key: str, value: str) -> tuple[tuple[str, str], ...]:
    return ((f'{key} = "0s"', f"{key} = {value}"),)


CASES: list[Case] = []

# Durations: absurd, negative, malformed, in every place one is read.
for key in ("max_age", "deactivate_after", "delete_after"):
    for value in (f'"{HUGE}"', '"3000000d"', '"ten days"', '"-1d"'):
        CASES.append(
            validate(
                f"rule-{key}-{value.strip(chr(34))}",
                ("ci-keys", key),
                replace=rule_value(key, value),
            )
        )
for section, key, value in [
    ("journal", "lease_ttl", HUGE),
    ("journal", "lease_ttl", "2d"),
    ("verify", "initial_delay", HUGE),
    ("verify", "max_delay", "3000000d"),
    ("retry", "initial_delay", "1h"),
    ("retry", "max_delay", HUGE),
    ("daemon", "interval", HUGE),
    ("daemon", "interval", "400d"),
    ("daemon", "jitter", "3000000d"),
    ("daemon", "misfire_grace_time", HUGE),
    ("daemon", "drain_timeout", "9" * 60 + "s"),
    ("notify", "timeout", "1d"),
]:
    text = f'{key} = "{value}"'
    kw: dict[str, str] = (
        {"journal": text} if section == "journal" else {"sections": f"[{section}]\n{text}\n"}
    )
    CASES.append(validate(f"{section}-{key}-{value[:20]}", (section, key), **kw))
for command in ("run", "plan", "status", "history", "daemon", "journal init"):
    CASES.append(
        Case(
            id=f"{command.replace(' ', '-')}-huge-duration",
            argv=tuple(command.split()),
            names=("ci-keys", "delete_after"),
            replace=rule_value("delete_after", f'"{HUGE}"'),
        )
    )

# The shape of the rules.
NO_RULE = POLICY.split("[[rules]]")[0].replace("{journal}", "").replace("{audit}", "")
NO_RULE = NO_RULE.replace("{sections}", "")
for id_, rules, names in [
    ("rules-int", "rules = [1]", ("rules[0]",)),
    ("rules-str", 'rules = ["x"]', ("rules[0]",)),
    ("rules-not-list", 'rules = "x"', ("rules",)),
    ("rules-empty", "rules = []", ("rules",)),
    ("rules-table", "[rules]\nname = 'x'", ("rules",)),
]:
    CASES.append(validate(id_, names, raw=rules + "\n" + NO_RULE))  # top-level keys first
CASES += [
    validate("rule-missing-kind", ("ci-keys", "kind"), replace=(('kind = "access-key"\n', ""),)),
    validate("rule-unknown-kind", ("ci-keys", "kind"), replace=(('"access-key"', '"api-key"'),)),
    validate("rule-name-int", ("rules[0]", "name"), replace=(('name = "ci-keys"', "name = 5"),)),
    validate("rule-name-empty", ("rules[0]", "name"), replace=(('name = "ci-keys"', 'name = ""'),)),
    validate("rule-missing-sink", ("ci-keys", "sink"), replace=(("sink = {", "# sink = {"),)),
    validate(
        "rule-sink-type", ("ci-keys", "sink"), replace=(('type = "file"', 'type = "floppy"'),)
    ),
    validate("rule-sink-field", ("ci-keys", "sink", "nope"), replace=(("{kind}.json", "{nope}"),)),
    validate("rule-unknown-key", ("ci-keys", "max_agee"), rule='max_agee = "1d"\n'),
    validate("rule-enabled-str", ("ci-keys", "enabled"), rule='enabled = "maybe"\n'),
    validate(
        "rule-duplicate-name",
        ("rules", "ci-keys"),
        rule='[[rules]]\nname = "ci-keys"\nkind = "access-key"\nsink = {{ type = "memory" }}\n',
    ),
    validate("rule-select-path", ("ci-keys", "path_prefix"), replace=(('"/ci/"', '"ci/"'),)),
    validate("rule-cron", ("ci-keys", "schedule"), rule='schedule = "61 * * * *"\n'),
    validate(
        "max-concurrency-zero",
        ("max_concurrency",),
        raw="max_concurrency = 0\n"
        + POLICY.replace("{journal}", "")
        .replace("{audit}", "")
        .replace("{sections}", "")
        .replace("{rule}", ""),
    ),
    validate("unknown-section", ("frobnicate",), sections="[frobnicate]\nx = 1\n"),
    validate("journal-url", ("journal", "url"), replace=(('"sqlite:///', '"postgres:///'),)),
    validate(
        "daemon-timezone", ("daemon", "timezone"), sections='[daemon]\ntimezone = "Mars/Olympus"\n'
    ),
    validate("daemon-port", ("daemon", "listen_port"), sections="[daemon]\nlisten_port = 70000\n"),
    validate(
        "notify-webhook", ("notify", "webhook_url"), sections='[notify]\nwebhook_url = "ftp://x"\n'
    ),
    validate("notify-sns", ("notify", "sns_topic_arn"), sections='[notify]\nsns_topic_arn = "x"\n'),
]

# The file itself.
CASES += [
    validate("toml-syntax", ("rotator.toml", "TOML"), raw="[[rules]\nname = \n"),
    validate("toml-empty", ("rotator.toml", "rules"), raw=""),
    validate("toml-binary", ("rotator.toml", "cannot read"), binary=b"\xff\xfe\x00garbage"),
    Case(
        id="file-missing",
        argv=("validate", "--config", "/nonexistent/rotator.toml"),
        names=("/nonexistent/rotator.toml", "not found"),
        config=False,
    ),
    Case(id="file-is-dir", argv=("validate", "--config", "/tmp"), names=("/tmp",), config=False),
]

# How rotator would reach AWS: the [aws] section and the standard environment.
CASES += [
    validate("aws-region", ("aws.region",), sections='[aws]\nregion = "narnia"\n'),
    validate("aws-region-upper", ("aws.region",), sections='[aws]\nregion = "US-EAST-1"\n'),
    validate("env-aws-region", ("AWS_REGION",), env={"AWS_REGION": "moon-base-x"}),
    validate("env-default-region", ("AWS_DEFAULT_REGION",), env={"AWS_DEFAULT_REGION": "x y"}),
    validate("aws-endpoint", ("aws.endpoint_url",), sections='[aws]\nendpoint_url = "localhost"\n'),
    validate("env-endpoint", ("AWS_ENDPOINT_URL",), env={"AWS_ENDPOINT_URL": "ftp://x"}),
    validate(
        "env-endpoint-iam", ("AWS_ENDPOINT_URL_IAM",), env={"AWS_ENDPOINT_URL_IAM": "http://:99999"}
    ),
    validate("env-profile", ("AWS_PROFILE", "nosuch"), env={"AWS_PROFILE": "nosuch"}),
    validate("aws-profile", ("aws.profile", "nosuch"), sections='[aws]\nprofile = "nosuch"\n'),
    validate("env-key-no-secret", ("AWS_SECRET_ACCESS_KEY",), env={"AWS_SECRET_ACCESS_KEY": None}),
    validate("env-secret-no-key", ("AWS_ACCESS_KEY_ID",), env={"AWS_ACCESS_KEY_ID": None}),
    validate("aws-max-attempts", ("aws", "max_attempts"), sections="[aws]\nmax_attempts = 0\n"),
    validate("aws-timeout", ("aws", "connect_timeout"), sections="[aws]\nconnect_timeout = -1\n"),
    validate("aws-retry-mode", ("aws", "retry_mode"), sections='[aws]\nretry_mode = "yolo"\n'),
    validate(
        "one-round",
        ("AWS_PROFILE", "max_age", "audit.file"),
        env={"AWS_PROFILE": "nosuch"},
        replace=(*rule_value("max_age", '"9x"'), ('/audit.jsonl"', '/"')),
    ),
    Case(
        id="run-env-profile", argv=("run",), names=("AWS_PROFILE",), env={"AWS_PROFILE": "nosuch"}
    ),
    Case(
        id="plan-env-region", argv=("plan",), names=("AWS_REGION",), env={"AWS_REGION": "nowhere"}
    ),
]

NO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}
NO_CREDENTIALS |= {"AWS_EC2_METADATA_DISABLED": "true"}
CASES += [
    Case(
        id="run-no-credentials",
        argv=("run",),
        names=("AWS credentials", "aws configure"),
        env=NO_CREDENTIALS,
    ),
    Case(id="plan-no-credentials", argv=("plan",), names=("AWS credentials",), env=NO_CREDENTIALS),
    Case(
        id="rotate-no-credentials",
        argv=(*("rotate", "--yes"), "--user", "ci-a"),
        names=("AWS credentials",),
        env=NO_CREDENTIALS,
    ),
]

# ROTATOR_* variables.
CASES += [
    validate("env-rules-not-json", ("ROTATOR_RULES",), env={"ROTATOR_RULES": "not json"}),
    validate("env-rules-int", ("ROTATOR_RULES",), env={"ROTATOR_RULES": "[1]"}),
    validate(
        "env-concurrency-str", ("ROTATOR_MAX_CONCURRENCY",), env={"ROTATOR_MAX_CONCURRENCY": "lots"}
    ),
    validate(
        "env-concurrency-zero", ("ROTATOR_MAX_CONCURRENCY",), env={"ROTATOR_MAX_CONCURRENCY": "0"}
    ),
    validate(
        "env-lease-huge",
        ("ROTATOR_JOURNAL__LEASE_TTL", "lease_ttl"),
        env={"ROTATOR_JOURNAL__LEASE_TTL": HUGE},
    ),
    validate(
        "env-journal-url", ("ROTATOR_JOURNAL__URL",), env={"ROTATOR_JOURNAL__URL": "postgres://x"}
    ),
    validate(
        "env-audit-stream", ("ROTATOR_AUDIT__STREAM",), env={"ROTATOR_AUDIT__STREAM": "printer"}
    ),
    Case(id="run-env-rules", argv=("run",), names=("ROTATOR_RULES",), env={"ROTATOR_RULES": "{"}),
]

# The audit log file.
CASES += [
    validate("audit-dir", ("audit.file", "directory"), replace=(('/audit.jsonl"', '/"'),)),
    validate(
        "audit-under-file",
        ("audit.file", "not a directory"),
        replace=(('/audit.jsonl"', '/weak/ca.pem/audit.jsonl"'),),
    ),
    validate("audit-level", ("audit", "level"), audit='level = "loud"\n'),
    Case(
        id="run-audit-dir", argv=("run",), names=("audit.file",), replace=(('/audit.jsonl"', '/"'),)
    ),
]

# The command line.
ROTATE = ("rotate", "--yes")
CASES += [
    Case(id="key-empty", argv=(*ROTATE, "--access-key-id", ""), names=("--access-key-id", "empty")),
    Case(
        id="key-garbage", argv=(*ROTATE, "--access-key-id", "garbage"), names=("--access-key-id",)
    ),
    Case(
        id="key-lower",
        argv=(*ROTATE, "--access-key-id", "akia0000000000000000"),
        names=("--access-key-id",),
    ),
    Case(
        id="key-secret",
        argv=(*ROTATE, "--emergency", "--access-key-id", SECRET_LIKE),
        names=("--access-key-id",),
    ),
    Case(id="key-long", argv=(*ROTATE, "--access-key-id", "A" * 200), names=("--access-key-id",)),
    Case(
        id="hold-no-emergency",
        argv=(*ROTATE, "--user", "ci-a", "--hold", "1h"),
        names=("--hold", "--emergency"),
    ),
    Case(
        id="hold-huge",
        argv=(*ROTATE, "--emergency", "--user", "ci-a", "--hold", HUGE),
        names=("--hold",),
    ),
    Case(
        id="hold-3000000d",
        argv=(*ROTATE, "--emergency", "--user", "ci-a", "--hold", "3000000d"),
        names=("--hold",),
    ),
    Case(
        id="hold-words",
        argv=(*ROTATE, "--emergency", "--user", "ci-a", "--hold", "soon"),
        names=("--hold",),
    ),
    Case(id="rotate-no-yes", argv=("rotate", "--user", "ci-a"), names=("--yes",)),
    Case(id="rotate-unknown-user", argv=(*ROTATE, "--user", "nobody-here"), names=("nobody-here",)),
    Case(
        id="rotate-unknown-key",
        argv=(*ROTATE, "--emergency", "--access-key-id", "AKIA0000000000000000"),
        names=("AKIA0000000000000000",),
    ),
    Case(id="rotate-no-target", argv=ROTATE, names=("--access-key-id",)),
    Case(
        id="rotate-kind",
        argv=(*ROTATE, "--user", "ci-a", "--kind", "api-key"),
        names=("--kind",),
        usage=True,
    ),
    Case(id="history-limit", argv=("history", "--limit", "0"), names=("--limit",), usage=True),
    Case(id="rollback-unknown", argv=("rollback", "rot-nosuch", "--yes"), names=("rot-nosuch",)),
    Case(id="rollback-no-yes", argv=("rollback", "rot-nosuch"), names=("--yes",)),
    Case(
        id="key-of-another-user",
        argv=(*ROTATE, "--emergency", "--user", "ci-b", "--access-key-id", "{ci-a-key}"),
        names=("ci-a", "ci-b"),
    ),
    Case(
        id="status-no-journal",
        argv=("status",),
        names=("journal.url", "no journal"),
        replace=(("/journal.db", "/nosuch/journal.db"),),
    ),
    Case(
        id="history-no-journal",
        argv=("history",),
        names=("journal.url", "no journal"),
        replace=(("/journal.db", "/nosuch/journal.db"),),
    ),
]

# Certificates: a weak key, a missing file.
SERVER_RULE = """
[[rules]]
name = "web"
kind = "server-certificate"
issuer = {{ type = "local-ca", cert = "{tmp}/weak/ca.pem", key = "{tmp}/weak/{key}" }}
select = {{ path_prefix = "/lb/", names = ["*"] }}
sink = {{ type = "file", path = "{tmp}/certs/{{name}}.json" }}
"""
CASES += [
    validate("cert-rsa-1024", ("web", "RSA-1024"), rule=SERVER_RULE.replace("{key}", "ca.key")),
    validate(
        "cert-key-missing", ("web", "nosuch.key"), rule=SERVER_RULE.replace("{key}", "nosuch.key")
    ),
    Case(
        id="run-cert-rsa-1024",
        argv=("run",),
        names=("web", "RSA-1024"),
        rule=SERVER_RULE.replace("{key}", "ca.key"),
    ),
]

COLD = {
    "rules-int",
    "rule-delete_after-3000000d",
    "env-rules-not-json",
    "key-garbage",
    "hold-no-emergency",
}


def _weak_ca(directory: Path) -> None:
    """A CA certificate and its RSA-1024 key (weak: refused)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (the point)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Weak CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "ca.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _key_id(index: int) -> str:
    return f"AKIACORPUS{index:010d}"


def _environment(case: Case, index: int, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROTATOR_"))}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID=_key_id(index),
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        COLUMNS="200",
        NO_COLOR="1",
    )
    for name, value in case.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _run(case: Case, index: int, tmp: Path, endpoint: str, key: str) -> dict[str, Any]:
    config = tmp / f"case-{index:03d}" / "rotator.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    if case.binary is not None:
        config.write_bytes(case.binary)
    else:
        config.write_text(case.policy(tmp))
    argv = [a.replace("{ci-a-key}", key) for a in case.argv]
    argv = [*argv, "--config", str(config)] if case.config else argv
    return {"argv": argv, "env": _environment(case, index, endpoint), "cwd": str(tmp)}


@pytest.fixture(scope="module")
def corpus(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Every case's result and the actions its key signed at the proxy."""
    sandbox = MotoSandbox(moto_server)
    sandbox.reset()
    key = sandbox.create_user("ci-a", path="/ci/", keys=1)[0]["AccessKeyId"]
    sandbox.create_user("ci-b", path="/ci/", keys=1)
    tmp = tmp_path_factory.mktemp("corpus")
    _weak_ca(tmp / "weak")
    with FaultProxy(moto_server) as proxy:
        runs = [_run(case, i, tmp, proxy.url, key) for i, case in enumerate(CASES)]
        if os.environ.get("ROTATOR_CORPUS_COLD"):
            results = [_cold(run) for run in runs]
        else:
            results = run_batch(runs)
        yield runs, results, proxy
    sandbox.reset()


def _cold(run: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "rotator", *run["argv"]],
        env=run["env"],
        cwd=run["cwd"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def _count(*, code_ok: bool, traceback: bool, actions: list[str]) -> None:
    """Add one case to the robustness tally, before its assertions (failures count too)."""
    tally.add(
        bad_input_cases=1,
        bad_input_wrong_exit=int(not code_ok),
        bad_input_tracebacks=int(traceback),
        bad_input_mutating_calls=sum(map(is_mutating, actions)),
        bad_input_read_calls=sum(not is_mutating(a) for a in actions),
    )


def _check(case: Case, result: dict[str, Any], actions: list[str]) -> None:
    out, err = result["stdout"], result["stderr"]
    _count(code_ok=result["code"] == 2, traceback="Traceback" in out + err, actions=actions)
    assert "Traceback" not in out + err, err
    assert result["code"] == 2, (result["code"], out, err)
    assert SECRET_LIKE not in out + err
    assert [a for a in actions if is_mutating(a)] == [], actions
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "no error message"
    if not case.usage:
        assert all(line.startswith("error: ") for line in lines), err
    text = err if case.usage else "\n".join(lines)
    for name in case.names:
        assert name in text, (name, err)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(index: int, corpus: Any) -> None:
    _, results, proxy = corpus
    case = CASES[index]
    actions = proxy.actions_signed_by(_key_id(index))
    _check(case, results[index], actions)


@pytest.mark.parametrize("case_id", sorted(COLD))
def test_cold_start_agrees(case_id: str, corpus: Any) -> None:
    """The batch runner changes nothing: the same run through ``python -m rotator``."""
    runs, results, _ = corpus
    index = next(i for i, c in enumerate(CASES) if c.id == case_id)
    cold = _cold(runs[index])
    assert (cold["code"], cold["stderr"]) == (results[index]["code"], results[index]["stderr"])


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 80
    assert len({c.id for c in CASES}) == len(CASES)
    json.dumps([c.id for c in CASES])


# --- the Lambda handler: bad events and settings (in-process, as Lambda runs it) ---------

LAMBDA_POLICY = """\
[journal]
url = "dynamodb://rotator-journal"

[audit]
stream = "none"

[[rules]]
name = "ci-keys"
kind = "access-key"
max_age = "90d"
deactivate_after = "0s"
delete_after = "{delete_after}"
select = {{ path_prefix = "/ci/" }}
sink = {{ type = "ssm", name = "/rotator/{{account}}/{{user}}/{{kind}}" }}
"""
EMERGENCY = {"action": "rotate", "access_key_id": "AKIA0000000000000000", "emergency": True}
SCHEDULE = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
LAMBDA_CASES: list[tuple[str, Any, dict[str, str], str]] = [  # id, event, env, error
    ("misspelt-key", {"Rotator": EMERGENCY}, {}, "InputError"),
    ("extra-key", {"rotator": EMERGENCY, "dry_run": True}, {}, "InputError"),
    ("half-schedule", {"detail-type": "Scheduled Event"}, {}, "InputError"),
    ("list", [EMERGENCY], {}, "InputError"),
    ("string", "sweep", {}, "InputError"),
    ("command-not-object", {"rotator": "sweep"}, {}, "InputError"),
    ("empty-key", {"rotator": {**EMERGENCY, "access_key_id": ""}}, {}, "InputError"),
    ("garbage-key", {"rotator": {**EMERGENCY, "access_key_id": "garbage"}}, {}, "InputError"),
    ("secret-as-key", {"rotator": {**EMERGENCY, "access_key_id": SECRET_LIKE}}, {}, "InputError"),
    (
        "hold-no-emergency",
        {"rotator": {**EMERGENCY, "emergency": False, "hold": "1h"}},
        {},
        "InputError",
    ),
    ("hold-huge", {"rotator": {**EMERGENCY, "hold": HUGE}}, {}, "InputError"),
    ("hold-3000000d", {"rotator": {**EMERGENCY, "hold": "3000000d"}}, {}, "InputError"),
    ("dry-run-str", {"rotator": {"action": "sweep", "dry_run": "maybe"}}, {}, "InputError"),
    ("margin-huge", SCHEDULE, {"ROTATOR_LAMBDA_MARGIN": HUGE}, "ConfigError"),
    ("policy-huge", SCHEDULE, {"DELETE_AFTER": HUGE}, "ConfigError"),
    ("policy-3000000d", SCHEDULE, {"DELETE_AFTER": "3000000d"}, "ConfigError"),
]


@pytest.fixture
def lambda_proxy(
    aws_env: str, sandbox: MotoSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FaultProxy]:
    """The Lambda's environment against moto behind the proxy, with a journal table and a
    user whose key is due: a bad event run as a sweep would rotate it."""
    import asyncio

    from rotator.journal import create_table

    assert asyncio.run(create_table("rotator-journal", region=None))
    sandbox.create_user("ci-due", path="/ci/", keys=1)
    sandbox.age_keys("ci-due", days=100)
    with FaultProxy(aws_env) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        yield proxy


@pytest.mark.parametrize(
    ("event", "env", "error"),
    [case[1:] for case in LAMBDA_CASES],
    ids=[case[0] for case in LAMBDA_CASES],
)
def test_a_bad_lambda_event_is_a_bad_request_and_never_a_sweep(
    lambda_proxy: FaultProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    event: Any,
    env: dict[str, str],
    error: str,
) -> None:
    from rotator.entrypoints.lambda_handler import handler

    policy = tmp_path / "lambda.toml"
    policy.write_text(LAMBDA_POLICY.format(delete_after=env.get("DELETE_AFTER", "0s")))
    monkeypatch.setenv("ROTATOR_CONFIG", str(policy))
    for name, value in env.items():
        if name.startswith("ROTATOR_"):
            monkeypatch.setenv(name, value)

    result = handler(event)

    captured = capsys.readouterr()
    actions = lambda_proxy.actions_seen()
    traceback = "Traceback" in captured.out + captured.err
    _count(code_ok=result.get("error") == error, traceback=traceback, actions=actions)
    assert (result["ok"], result["error"]) == (False, error), result
    assert "Transient" not in json.dumps(result)
    assert "Traceback" not in captured.out + captured.err
    assert SECRET_LIKE not in json.dumps(result) + captured.out + captured.err
    assert [a for a in actions if is_mutating(a)] == [], actions


def test_the_lambda_control_a_good_schedule_does_rotate(
    lambda_proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control for the cases above: the same set-up with a well-formed scheduled event
    changes IAM, so their 0 mutating calls mean something."""
    from rotator.entrypoints.lambda_handler import handler

    policy = tmp_path / "lambda.toml"
    policy.write_text(LAMBDA_POLICY.format(delete_after="0s"))
    monkeypatch.setenv("ROTATOR_CONFIG", str(policy))

    result = handler(SCHEDULE)

    assert result["ok"], result
    assert "CreateAccessKey" in lambda_proxy.actions_seen()
