"""The Step Functions fan-out over an organization, in-process: the ``list-accounts``
handler's batches, each fed to the handler as the Distributed Map would, and the
``summarize`` of their results; the state machine's definition checked structurally."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotator.entrypoints.lambda_handler import (
    ListAccountsCommand,
    SummarizeCommand,
    SweepAccountsCommand,
    handler,
    parse_event,
)
from rotator.errors import InputError
from rotator.journal import create_table
from tests.support.moto import MotoSandbox
from tests.support.org import ROLE, Org, assume_role_needs_the_role
from tests.test_deploy import CfnLoader

yaml: Any = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
TABLE = "rotator-org-journal"
POLICY = """\
[journal]
url = "dynamodb://{table}"
[audit]
stream = "none"
file = "{tmp}/audit.jsonl"
[verify]
attempts = 3
initial_delay = "1s"
[accounts]
role_name = "{role}"
[accounts.organization]
[[rules]]
name = "ci-keys"
kind = "access-key"
max_age = "90d"
select = {{ path_prefix = "/ci/" }}
sink = {{ type = "ssm", name = "/rotator/{{account}}/{{user}}" }}
"""


@pytest.fixture
def org(sandbox: MotoSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Org]:
    assert asyncio.run(create_table(TABLE, region=None))
    org = Org(sandbox).create()
    org.account("prod", "/Workloads/Prod")
    org.account("dev", "/Workloads")
    org.account("stage", "/Workloads")
    org.account("norole", "/Workloads/Old", role=False)
    for account in org.accounts.values():
        org.user(account, "ci-app")
    path = tmp_path / "rotator.toml"
    path.write_text(POLICY.format(table=TABLE, tmp=tmp_path, role=ROLE))
    monkeypatch.setenv("ROTATOR_CONFIG", str(path))
    with assume_role_needs_the_role():
        yield org


def test_list_then_sweep_each_batch_then_summarize(org: Org) -> None:
    listed = handler({"rotator": {"action": "list-accounts", "batch_size": 3}})
    assert listed["mode"] == "list-accounts", listed
    assert listed["count"] == 4  # the hub's own account is not included
    assert [len(b["rotator"]["accounts"]) for b in listed["batches"]] == [3, 1]
    assert json.loads(json.dumps(listed)) == listed

    results = []
    for item in listed["batches"]:  # what the Map passes: the item itself ("Payload.$": "$")
        assert isinstance(parse_event(item), SweepAccountsCommand)
        results.append(handler(item))
    swept = {a["id"]: a for r in results for a in r["accounts"]}
    assert set(swept) == set(org.accounts.values())
    assert swept[org.accounts["norole"]]["outcome"] == "account-failed"
    assert swept[org.accounts["norole"]]["error"] == "AccessDenied"
    ssm = org.sandbox.client("ssm")
    for name in ("prod", "dev", "stage"):
        account = org.accounts[name]
        assert swept[account]["ok"] and swept[account]["counts"]["rotated"] == 1
        keys = org.keys(account, "ci-app")
        assert len(keys) == 2  # the new key beside the old one (deactivated after 7 days)
        # The SSM sink lives in the member account (sink_in = "member").
        member_ssm = org.in_account(account, "ssm")
        value = member_ssm.get_parameter(Name=f"/rotator/{account}/ci-app", WithDecryption=True)
        secret = json.loads(value["Parameter"]["Value"])
        arn = org.sandbox.caller_arn(secret["AccessKeyId"], secret["SecretAccessKey"])
        assert arn == f"arn:aws:iam::{account}:user/ci/ci-app"
        with pytest.raises(ssm.exceptions.ParameterNotFound):  # not in the hub
            ssm.get_parameter(Name=f"/rotator/{account}/ci-app")

    summary = handler({"rotator": {"action": "summarize", "results": results}})
    assert summary["mode"] == "summarize"
    assert (summary["ok"], summary["accounts"], summary["accounts_not_ok"]) == (False, 4, 1)
    assert summary["failed"] == [
        {"id": org.accounts["norole"], "outcome": "account-failed", "error": "AccessDenied"}
    ]
    assert summary["counts"]["rotated"] == 3

    again = [handler(item) for item in listed["batches"]]  # an overlapping/repeated run
    assert all(a["counts"].get("rotated", 0) == 0 for r in again for a in r["accounts"])


def test_the_plain_schedule_sweeps_every_account(org: Org) -> None:
    # A whole EventBridge scheduled event (one without "source" is refused as bad input).
    event = {"version": "0", "source": "aws.events", "detail-type": "Scheduled Event"}
    result = handler({**event, "detail": {}})
    assert result["mode"] == "sweep-accounts" and result["ok"] is False
    assert result["counts"]["accounts"] == 4 and result["counts"]["accounts_failed"] == 1


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"rotator": {"action": "list-accounts", "batch_size": 0}}, "batch_size"),
        ({"rotator": {"action": "list-accounts", "ous": ["Prod"]}}, "ous"),
        ({"rotator": {"action": "sweep-accounts", "accounts": []}}, "accounts"),
        ({"rotator": {"action": "sweep-accounts", "accounts": [{"id": "12"}]}}, "accounts.0.id"),
        ({"rotator": {"action": "sweep-accounts", "accounts": [{"ID": "1"}]}}, "accounts.0"),
        ({"rotator": {"action": "summarize"}}, "results"),
    ],
)
def test_malformed_org_events_name_the_field(event: Any, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        parse_event(event)


# --- the state machine ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    text = (ROOT / "deploy" / "org-template.yaml").read_text()
    loaded: dict[str, Any] = yaml.load(text, Loader=CfnLoader)
    return loaded


def substituted(value: Any, template: dict[str, Any]) -> Any:
    """``value`` with ``${BatchSize}``-style substitutions replaced by the parameters'
    defaults (numbers as numbers, as Step Functions sees them)."""
    text = json.dumps(value)
    for name, spec in template["Parameters"].items():
        if "Default" in spec:
            text = text.replace(f'"${{{name}}}"', json.dumps(spec["Default"]))
    loaded: Any = json.loads(text)
    return loaded


def test_the_state_machine_fans_out_on_a_distributed_map(template: dict[str, Any]) -> None:
    machine = template["Resources"]["OrgSweep"]["Properties"]
    assert machine["Events"]["Sweep"]["Type"] == "Schedule"
    substitutions = {"Partition", "RotatorArn", "BatchSize", "MaxConcurrency"}
    assert set(machine["DefinitionSubstitutions"]) == substitutions
    assert machine["DefinitionSubstitutions"]["Partition"] == {"Ref": "AWS::Partition"}
    states = machine["Definition"]["States"]
    assert machine["Definition"]["StartAt"] == "ListAccounts"

    listing = substituted(states["ListAccounts"]["Parameters"]["Payload"], template)
    command = parse_event(listing)
    assert isinstance(command, ListAccountsCommand) and command.batch_size == 5

    sweep = states["SweepAccounts"]
    assert sweep["Type"] == "Map" and sweep["ItemsPath"] == "$.batches"
    assert sweep["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert sweep["MaxConcurrency"] == "${MaxConcurrency}"
    assert template["Parameters"]["MaxConcurrency"]["Type"] == "Number"
    batch = sweep["ItemProcessor"]["States"]["SweepBatch"]
    # The item is the handler's event as is: the list-accounts batches (tested above).
    assert batch["Parameters"]["Payload.$"] == "$"

    summarize = states["Summarize"]["Parameters"]["Payload"]
    assert summarize == {"rotator": {"action": "summarize", "results.$": "$.results"}}
    assert isinstance(
        parse_event({"rotator": {"action": "summarize", "results": []}}), SummarizeCommand
    )
    assert sweep["ResultPath"] == "$.results"

    tasks = [states["ListAccounts"], batch, states["Summarize"]]
    for task in tasks:
        assert task["Resource"] == "arn:${Partition}:states:::lambda:invoke"
        (retry,) = task["Retry"]
        assert "Lambda.TooManyRequestsException" in retry["ErrorEquals"]
        assert "Lambda.ServiceException" in retry["ErrorEquals"]
        assert retry["BackoffRate"] > 1 and retry["MaxAttempts"] >= 3
        assert retry["JitterStrategy"] == "FULL"


def test_the_org_templates_pass_cfn_lint() -> None:
    api: Any = pytest.importorskip("cfnlint.api")
    for name in ("org-template.yaml", "member-role-stackset.yaml"):
        matches = api.lint((ROOT / "deploy" / name).read_text())
        assert [str(m) for m in matches] == [], name


# --- an exposed key, org-wide ------------------------------------------------------------


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local webhook recording what it is sent."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", seen
    finally:
        server.shutdown()


def test_a_health_event_rotates_the_exposed_key_in_its_account_deactivating_it_first(
    org: Org, tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, seen = webhook
    policy = tmp_path / "rotator.toml"
    policy.write_text(
        policy.read_text().replace("[accounts]\n", f'[notify]\nwebhook_url = "{url}"\n[accounts]\n')
    )
    account = org.accounts["dev"]
    (leaked,) = org.keys(account, "ci-app")
    iam = org.in_account(account, "iam")
    quarantine = iam.create_policy(
        PolicyName="AWSCompromisedKeyQuarantineV3",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Deny", "Action": "iam:CreateAccessKey", "Resource": "*"}],
            }
        ),
    )["Policy"]["Arn"]
    iam.attach_user_policy(UserName="ci-app", PolicyArn=quarantine)
    event = {
        "version": "0",
        "source": "aws.health",
        "detail-type": "AWS Health Event",
        "account": account,
        "detail": {
            "service": "RISK",
            "eventTypeCode": "AWS_RISK_CREDENTIALS_EXPOSED",
            "eventTypeCategory": "issue",
            "affectedEntities": [{"entityValue": leaked}],
        },
    }

    result = handler(event)

    assert result["mode"] == "exposed-keys" and result["ok"], result
    (one,) = result["results"]
    assert one["account"] == account and one["user"] == "ci-app"
    assert one["sink"] == "ssm:/rotator/{account}/{user}" and one["sink_in"] == "member"
    steps = [(s["step"], s["outcome"]) for s in one["steps"]]
    assert steps[0] == ("deactivate", "done") and ("create", "done") in steps  # first
    keys = org.keys(account, "ci-app")
    assert leaked not in keys  # deleted at once (hold 0s)
    (new,) = keys
    assert keys[new] == "Active"
    value = org.in_account(account, "ssm").get_parameter(
        Name=f"/rotator/{account}/ci-app", WithDecryption=True
    )
    secret = json.loads(value["Parameter"]["Value"])
    assert secret["AccessKeyId"] == new
    arn = org.sandbox.caller_arn(secret["AccessKeyId"], secret["SecretAccessKey"])
    assert arn == f"arn:aws:iam::{account}:user/ci/ci-app"
    attached = iam.list_attached_user_policies(UserName="ci-app")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [quarantine]  # left in place, as AWS asks
    assert seen, "a notification was sent"
    assert account in json.dumps(seen) and "ci-app" in json.dumps(seen)
    assert secret["SecretAccessKey"] not in json.dumps(seen) + json.dumps(result)


def test_a_health_event_for_a_key_outside_the_accounts_fails_as_a_result(org: Org) -> None:
    me = org.sandbox.account()  # the hub's own account: not covered (include_self off)
    org.user(me, "ci-hub")
    (key,) = org.keys(me, "ci-hub")
    event = {
        "source": "aws.health",
        "detail": {
            "eventTypeCode": "AWS_RISK_CREDENTIALS_EXPOSED",
            "affectedEntities": [{"entityValue": key}],
        },
    }
    result = handler(event)
    assert result["mode"] == "exposed-keys" and result["ok"] is False
    assert "not among the accounts" in result["results"][0]["message"]
    assert org.keys(me, "ci-hub") == {key: "Active"}


# --- the state machine, run by moto's Step Functions interpreter --------------------------


@pytest.fixture
def interpreter(org: Org, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's Amazon States Language interpreter (its ``execute_state_machine`` mode),
    with its Lambda invocations answered by rotator's handler in this process (moto runs
    Lambda code only in Docker). Yields the function's ARN."""
    import io
    import urllib.parse
    import urllib.request
    import zipfile

    from moto.awslambda.models import LambdaBackend

    url = org.sandbox.url

    def configure(on: bool) -> None:
        body = json.dumps({"stepfunctions": {"execute_state_machine": on}}).encode()
        request = urllib.request.Request(f"{url}/moto-api/config", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def invoke(self: Any, function_name: str, qualifier: Any, body: Any, *args: Any) -> str:
        return json.dumps(handler(json.loads(body or "{}")))

    monkeypatch.setattr(LambdaBackend, "invoke", invoke)
    monkeypatch.setenv("MOTO_PORT", str(urllib.parse.urlsplit(url).port))
    role = org.sandbox.iam.create_role(
        RoleName="rotator-lambda",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    function = org.sandbox.client("lambda").create_function(
        FunctionName="rotator",
        Runtime="python3.13",
        Role=role,
        Handler="rotator.entrypoints.lambda_handler.handler",
        Code={"ZipFile": code.getvalue()},
    )["FunctionArn"]
    configure(True)
    try:
        yield function
    finally:
        configure(False)


def test_the_state_machine_sweeps_the_organization_end_to_end(
    org: Org, interpreter: str, template: dict[str, Any]
) -> None:
    import time

    machine = template["Resources"]["OrgSweep"]["Properties"]
    definition = (
        json.dumps(substituted(machine["Definition"], template))
        .replace("${RotatorArn}", interpreter)
        .replace("${Partition}", "aws")
    )
    sfn = org.sandbox.client("stepfunctions")
    arn = sfn.create_state_machine(
        name="org-sweep",
        definition=definition,
        roleArn=f"arn:aws:iam::{org.sandbox.account()}:role/rotator-states",
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    deadline = time.monotonic() + 240
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not finish"
        time.sleep(0.5)
    # The account without the member role fails the execution, after the others are swept.
    assert described["status"] == "FAILED", described
    history = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
    failed = [e for e in history if e["type"] == "ExecutionFailed"]
    assert failed and failed[0]["executionFailedEventDetails"]["error"] == "AccountsNotSwept"
    for name in ("prod", "dev", "stage"):
        assert len(org.keys(org.accounts[name], "ci-app")) == 2, name
    assert len(org.keys(org.accounts["norole"], "ci-app")) == 1
