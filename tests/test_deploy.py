"""Structural checks of deploy/: the SAM template, the Kubernetes CronJob, the systemd units
and the Dockerfile parse, hold the resources rotator needs, run it unprivileged, and agree
with the code (the handler's path, the journal's table layout, the example policies and
``rotator iam-policy``)."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest

from rotator import app as application
from rotator.entrypoints.exits import EXIT_BAD_INPUT
from rotator.journal.dynamodb_table import PK, SK, TTL_ATTRIBUTE
from rotator.permissions import policy_document
from rotator.policy import parse_duration
from rotator.settings import LambdaSettings

yaml: Any = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"


@pytest.fixture(autouse=True)
def _no_rotator_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ROTATOR_"):
            monkeypatch.delenv(name)


class CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML with CloudFormation's short tags (``!Ref X`` -> ``{"Ref": "X"}``)."""


def _cfn_tag(loader: Any, suffix: str, node: Any) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load((DEPLOY / "template.yaml").read_text(), Loader=CfnLoader)
    return loaded


PARTITION = "${AWS::Partition}"  # CloudFormation's, in !Sub: the stack's own partition


def in_template(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rotator iam-policy`` statements as a template holds them: each ARN (made with
    ``PARTITION``) a ``!Sub``, so the stack works in aws-cn and aws-us-gov too."""
    return [
        {
            **statement,
            "Resource": [
                {"Fn::Sub": r} if r.startswith(f"arn:{PARTITION}:") else r
                for r in statement["Resource"]
            ],
        }
        for statement in statements
    ]


def test_no_template_hard_codes_the_aws_partition() -> None:
    """``arn:aws:`` names the commercial partition only; templates say
    ``arn:${AWS::Partition}:`` (the patterns of parameters accept every partition)."""
    for path in [*DEPLOY.glob("*.yaml"), *DEPLOY.glob("k8s/*.yaml")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "AllowedPattern" in line or "eks.amazonaws.com/role-arn" in line:
                continue  # a pattern for any partition; the k8s example's own role
            assert "arn:aws:" not in line, f"{path.name}:{number}: {line.strip()}"


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


# --- SAM ---------------------------------------------------------------------------------


def test_the_sam_template_has_the_function_its_schedule_and_the_journal_table(
    template: dict[str, Any],
) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    (function,) = resources_of(template, "AWS::Serverless::Function").values()
    props = function["Properties"]
    module, _, attribute = props["Handler"].rpartition(".")
    assert callable(getattr(import_module(module), attribute)), "the handler exists"
    assert props["Runtime"] in ("python3.12", "python3.13"), "3.11 is deprecated in 2027"
    margin = parse_duration(template["Parameters"]["LambdaMargin"]["Default"])
    assert margin < parse_duration("5m")
    assert props["Timeout"] == 900
    assert margin.total_seconds() < props["Timeout"] / 3, "most of the time is for sweeping"
    (event,) = props["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == {"Ref": "Schedule"}
    variables = props["Environment"]["Variables"]
    assert variables["ROTATOR_JOURNAL__URL"] == {"Fn::Sub": "dynamodb://${Journal}"}
    settings_fields = {f"ROTATOR_{f.upper()}" for f in LambdaSettings.model_fields}
    assert settings_fields <= set(variables), "the template sets what the handler reads"


def test_the_journal_table_is_laid_out_as_rotator_journal_init_makes_it(
    template: dict[str, Any],
) -> None:
    table = template["Resources"]["Journal"]
    props = table["Properties"]

    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["DeletionPolicy"] == "Retain", "the journal outlives the stack"
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert {k["AttributeName"]: k["KeyType"] for k in props["KeySchema"]} == {
        PK: "HASH",
        SK: "RANGE",
    }
    assert {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]} == {
        PK: "S",
        SK: "S",
    }
    assert props["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}


def test_the_function_role_is_rotator_iam_policy_scoped_to_the_table_and_its_logs(
    template: dict[str, Any],
) -> None:
    """The role is the template's own: a function with ``Policies`` and no ``Role`` gets
    a role SAM makes, with AWSLambdaBasicExecutionRole (create and write any log group)."""
    (function,) = resources_of(template, "AWS::Serverless::Function").values()
    assert "Policies" not in function["Properties"]
    assert function["Properties"]["Role"] == {"Fn::GetAtt": ["Role", "Arn"]}
    role = template["Resources"]["Role"]
    assert role["Type"] == "AWS::IAM::Role"
    assert "ManagedPolicyArns" not in role["Properties"], "nothing beyond what is listed"
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == {
        "Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    (policy,) = role["Properties"]["Policies"]
    document = policy["PolicyDocument"]
    granted = [s for s in document["Statement"] if "Sid" in s]  # the !If is the config read
    config = application.load(ROOT / "config" / "lambda.toml")
    expected = in_template(policy_document(config, partition=PARTITION)["Statement"])
    for statement in expected:
        if statement["Sid"] == "Journal":
            statement["Resource"] = [{"Fn::GetAtt": ["Journal", "Arn"]}]
    logs = {
        "Sid": "WriteLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": [{"Fn::GetAtt": ["Logs", "Arn"]}],
    }

    assert granted == [logs, *expected], "regenerate from rotator iam-policy (see the template)"
    (read_policy,) = [s for s in document["Statement"] if "Fn::If" in s]
    condition, statement, otherwise = read_policy["Fn::If"]
    assert (condition, otherwise) == ("ConfigFromSsm", {"Ref": "AWS::NoValue"})
    assert statement["Action"] == ["ssm:GetParameter"]
    # The function writes the log group the role lets it write: Lambda's own name for it.
    name = template["Resources"]["Logs"]["Properties"]["LogGroupName"]
    assert name == {"Fn::Sub": "/aws/lambda/" + function["Properties"]["FunctionName"]["Fn::Sub"]}


def test_the_audit_log_outlives_the_stack_and_lambda_failed_raises_an_alarm(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    logs = resources["Logs"]
    assert logs["DeletionPolicy"] == "Retain"
    assert logs["UpdateReplacePolicy"] == "Retain"

    (metric_filter,) = resources_of(template, "AWS::Logs::MetricFilter").values()
    props = metric_filter["Properties"]
    assert props["LogGroupName"] == {"Ref": "Logs"}
    assert props["FilterPattern"] == '{ $.event = "lambda.failed" }'
    (transform,) = props["MetricTransformations"]
    alarms = resources_of(template, "AWS::CloudWatch::Alarm").values()
    (failed,) = [a["Properties"] for a in alarms if a["Properties"]["Namespace"] == "rotator"]
    assert (failed["MetricName"], failed["Namespace"]) == (
        transform["MetricName"],
        transform["MetricNamespace"],
    )
    assert failed["Statistic"] == "Sum"
    assert (failed["Threshold"], failed["ComparisonOperator"]) == (
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert failed["TreatMissingData"] == "notBreaching"
    assert failed["AlarmActions"]["Fn::If"][0] == "AlarmsNotify"


def test_the_metric_filter_matches_the_handler_s_failure_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The line the filter pattern selects is the one the handler writes: a JSON object
    whose ``event`` is ``lambda.failed`` (CloudWatch reads ``$.event``)."""
    from rotator.entrypoints import lambda_handler

    monkeypatch.setenv("ROTATOR_CONFIG", str(ROOT / "missing.toml"))
    answer = lambda_handler.handler({}, None)
    assert answer["ok"] is False
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in (captured.out + captured.err).splitlines() if line]
    assert [line["event"] for line in lines if line.get("event") == "lambda.failed"]


def test_the_sam_template_passes_cfn_lint() -> None:
    api: Any = pytest.importorskip("cfnlint.api")

    matches = api.lint((DEPLOY / "template.yaml").read_text())

    assert [str(m) for m in matches] == []


# --- Kubernetes --------------------------------------------------------------------------


def test_the_cronjob_sweeps_unprivileged_with_the_policy_mounted() -> None:
    documents = list(yaml.safe_load_all((DEPLOY / "k8s" / "cronjob.yaml").read_text()))
    by_kind = {d["kind"]: d for d in documents}
    assert set(by_kind) == {"ServiceAccount", "CronJob"}
    cronjob = by_kind["CronJob"]
    assert cronjob["apiVersion"] == "batch/v1"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(cronjob["spec"]["schedule"].split()) == 5
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == by_kind["ServiceAccount"]["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == docker_uid()
    (container,) = pod["containers"]
    assert container["args"][0] == "run"
    hardened = container["securityContext"]
    assert hardened["readOnlyRootFilesystem"] is True
    assert hardened["allowPrivilegeEscalation"] is False
    assert hardened["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert Path(env["ROTATOR_CONFIG"]).parent == Path(mounts["policy"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["policy"]["configMap"]["name"] == "rotator-policy"


# --- systemd -----------------------------------------------------------------------------


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text(), source=name)
    return parser


@pytest.mark.parametrize(
    ("name", "command"), [("rotator.service", "run"), ("rotator-daemon.service", "daemon")]
)
def test_the_units_run_rotator_unprivileged_in_a_read_only_system(name: str, command: str) -> None:
    service = unit(name)["Service"]

    assert service["User"] not in ("", "root", "0")
    assert service["ProtectSystem"] == "strict"
    assert service["StateDirectory"] == "rotator"
    assert service["LogsDirectory"] == "rotator"
    assert service["NoNewPrivileges"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "rotator"
    assert argv[1:] == [command, "--config", "/etc/rotator/rotator.toml"]


def test_the_daemon_unit_is_notify_with_a_watchdog_and_no_restart_on_a_bad_policy() -> None:
    """An invalid policy exits 2 (EXIT_BAD_INPUT, entrypoints/exits.py): restarting every 30 s
    cannot fix it. Readiness, reload and stop are notified; the loop feeds the watchdog."""
    service = unit("rotator-daemon.service")["Service"]

    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert parse_duration(service["WatchdogSec"].replace("min", "m")) >= parse_duration("1m")
    assert service["Restart"] == "on-failure"
    assert str(EXIT_BAD_INPUT) in service["RestartPreventExitStatus"].split()
    assert "AF_UNIX" in service["RestrictAddressFamilies"].split(), "the notify socket"


def test_the_timer_starts_the_sweep_unit() -> None:
    timer = unit("rotator.timer")

    assert timer["Timer"]["Unit"] == "rotator.service"
    assert timer["Timer"]["OnCalendar"]
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_the_example_policy_writes_only_where_the_unit_lets_it() -> None:
    """config/ci-keys.toml is the policy the unit runs: its journal, audit log and secrets
    must lie in the unit's state or logs directory (everything else is read-only)."""
    config = application.load(ROOT / "config" / "ci-keys.toml")
    service = unit("rotator.service")["Service"]
    writable = [Path("/var/lib") / service["StateDirectory"]]
    writable.append(Path("/var/log") / service["LogsDirectory"])
    written = [Path(config.journal.url.removeprefix("sqlite://")), Path(str(config.audit.file))]
    written += [Path(r.sink.template.split("{", 1)[0]) for r in config.rules]

    for path in written:
        assert any(path.is_relative_to(w) for w in writable), path


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    units = [p for p in UNITS.iterdir() if p.suffix in (".service", ".timer")]
    for path in units:  # the binary is not installed here: /bin/true stands in
        text = path.read_text().replace("/opt/rotator/bin/rotator", "/bin/true")
        (tmp_path / path.name).write_text(text)

    done = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""


# --- Dockerfile --------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(p[0].upper(), p[1] if len(p) > 1 else "") for p in pairs]


def docker_uid() -> int:
    users = [args for op, args in instructions() if op == "USER"]
    return int(users[-1].split(":")[0])


def test_the_image_is_multi_stage_slim_and_runs_as_a_non_root_user() -> None:
    steps = instructions()
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG")
    stages = [a for op, a in steps if op == "FROM"]
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]

    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert len(stages) >= 2
    assert all(s.split()[0] == "${PYTHON_IMAGE}" for s in stages)
    assert [a for op, a in final if op == "COPY"] == ["--from=build /opt/rotator /opt/rotator"]
    users = [a for op, a in final if op == "USER"]
    assert users, "the final stage sets USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert docker_uid() > 0
    assert ("ENTRYPOINT", '["rotator"]') in final


def test_the_build_context_is_an_allow_list() -> None:
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()

    assert "*" in ignored
    assert {"!pyproject.toml", "!README.md", "!rotator/"} <= set(ignored)


# --- docs --------------------------------------------------------------------------------


def test_the_deploy_docs_explain_the_quarantine_policy_and_every_file() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    readme = (DEPLOY / "README.md").read_text()

    assert "AWSCompromisedKeyQuarantineV2" in guide
    assert "iam:CreateAccessKey" in guide
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert str(path.relative_to(DEPLOY)) in readme, path
